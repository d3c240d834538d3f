"""Authentication for both faces of the API, in one place.

* ``BearerTokenAuthentication``: management API, ``Authorization: Bearer <token>``.
* ``WriteKeyAuthentication``: tracking API, HTTP Basic with the source write key as username
  (what Segment and RudderStack SDKs send), or ``writeKey`` in the JSON body.

Both find the secret by digest and compare digests in constant time. ``request.user`` stays
``None``; ``request.auth`` is the ``ApiToken`` or the ``SourcePrincipal``.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from cdp.api import keys
from cdp.api.models import ApiToken
from cdp.api.services import api_token_touch


class BearerTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[None, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid token.") from exc
        token_digest = keys.digest(plaintext)
        token = ApiToken.objects.filter(digest=token_digest).first()
        if token is None or not keys.same(token_digest, token.digest) or not token.is_active:
            raise AuthenticationFailed("Invalid or revoked token.")
        api_token_touch(token=token)
        return (None, token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="cdp"'


@dataclass(frozen=True)
class SourcePrincipal:
    """What a valid write key authenticates as: the source, without loading the model."""

    source_id: int
    name: str


class _WriteKeyCache:
    """Digest -> source for a few seconds, so the hot ingest path skips the database lookup.

    A disabled or rotated key stops working within ``WRITE_KEY_CACHE_SECONDS``.
    """

    max_entries = 10_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[SourcePrincipal, float]] = {}

    def get(self, key_digest: str) -> SourcePrincipal | None:
        hit = self._entries.get(key_digest)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def put(self, key_digest: str, principal: SourcePrincipal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        ttl = settings.CDP_INGEST["WRITE_KEY_CACHE_SECONDS"]
        self._entries[key_digest] = (principal, time.monotonic() + ttl)

    def clear(self) -> None:
        self._entries.clear()


write_key_cache = _WriteKeyCache()


def source_for_write_key(plaintext: str) -> SourcePrincipal | None:
    from cdp.ingestion.selectors import source_by_write_key_digest

    key_digest = keys.digest(plaintext)
    principal = write_key_cache.get(key_digest)
    if principal is not None:
        return principal
    source = source_by_write_key_digest(key_digest)
    if source is None or not keys.same(key_digest, source.write_key_digest):
        return None
    principal = SourcePrincipal(source_id=source.pk, name=source.name)
    write_key_cache.put(key_digest, principal)
    return principal


class WriteKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, SourcePrincipal] | None:
        write_key = _basic_username(request) or _body_write_key(request)
        if not write_key:
            raise AuthenticationFailed(
                "Missing write key: send it as the HTTP Basic username or as 'writeKey'."
            )
        principal = source_for_write_key(write_key)
        if principal is None:
            raise AuthenticationFailed("Invalid write key.")
        return (None, principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="cdp"'


def _basic_username(request: Request) -> str | None:
    parts = get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationFailed("Malformed HTTP Basic credentials.") from exc
    username, _, _password = decoded.partition(":")
    return username or None


def _body_write_key(request: Request) -> str | None:
    data: Any = request.data
    if isinstance(data, dict):
        value = data.get("writeKey")
        if isinstance(value, str) and value:
            return value
    return None
