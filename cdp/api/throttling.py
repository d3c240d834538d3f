"""Rate limits: per API token for the management API, per source for the tracking API, per client
and per link for the unsubscribe pages (which need no login).

Counters live in the Django cache: shared across processes when ``CACHE_URL`` points at Redis,
per process otherwise. Exceeding a limit answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from cdp.api.models import ApiToken
from cdp.ingestion.selectors import SourcePrincipal


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            return f"throttle:token:{request.auth.pk}"
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class SourceRateThrottle(BaseThrottle):
    """Fixed one-second windows per source: one atomic cache increment per request."""

    def __init__(self) -> None:
        self._wait = 1.0

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = settings.CDP_INGEST["RATE_LIMIT_PER_SOURCE"]
        principal = request.auth
        if not limit or not isinstance(principal, SourcePrincipal):
            return True
        now = time.time()
        window = int(now)
        key = f"throttle:source:{principal.source_id}:{window}"
        if cache.add(key, 1, timeout=2):
            return True
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add() and incr(): a new window
            cache.add(key, 1, timeout=2)
            return True
        if count <= limit:
            return True
        self._wait = window + 1 - now
        return False

    def wait(self) -> float:
        return self._wait


class _SettingRateThrottle(SimpleRateThrottle):
    """A rate read from a setting at each request (so tests and operators can change it)."""

    setting: tuple[str, str] = ("", "")

    def get_rate(self) -> str | None:
        group, name = self.setting
        rate: str | None = getattr(settings, group)[name]
        return rate


class UnsubscribeClientThrottle(_SettingRateThrottle):
    """Unsubscribe pages (no login) per client address. Behind a proxy, set DRF's
    ``NUM_PROXIES`` so the address is the client's, not the proxy's."""

    scope = "unsubscribe"
    setting = ("CDP_CONSENT", "UNSUBSCRIBE_RATE_LIMIT")

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return f"throttle:unsubscribe:client:{self.get_ident(request)}"


class UnsubscribeLinkThrottle(_SettingRateThrottle):
    """Requests per unsubscribe link (keyed by a digest of the token in the URL): hammering one
    link gets nowhere even from many addresses."""

    scope = "unsubscribe_link"
    setting = ("CDP_CONSENT", "UNSUBSCRIBE_LINK_RATE_LIMIT")

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = str(view.kwargs.get("token", ""))
        digest = hashlib.sha256(token.encode()).hexdigest()[:32]
        return f"throttle:unsubscribe:link:{digest}"
