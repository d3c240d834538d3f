"""Purposes people consent to, and what holds when they have said nothing.

``settings.CDP_CONSENT["PURPOSES"]`` maps each purpose name to its configuration:

* ``default``: the state of a person who has recorded no choice, ``"granted"`` for purposes run
  on legitimate interest or as opt-out (``analytics``; ``sale_or_share`` under CCPA, where the
  person must opt out), ``"denied"`` for opt-in purposes (marketing e-mail under GDPR/ePrivacy);
* ``channel``: the identifier kind an address-bound opt-out of this purpose is tied to
  (``marketing_email`` -> ``email``): an unsubscribed address stays unsubscribed whatever else
  the person grants later;
* ``aliases``: the category names consent-management tools use for it (OneTrust's
  ``C0004``, Segment's ``Advertising``), matched case-insensitively.

This module must stay importable while settings load (``cdp/settings.py`` validates the
configuration at start-up): standard library and Django's exceptions only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

GRANTED = "granted"
DENIED = "denied"
WITHDRAWN = "withdrawn"
STATUSES = (GRANTED, DENIED, WITHDRAWN)
# Global Privacy Control (Sec-GPC: 1, context.gpc) is an opt-out of these (CCPA regulations
# 7025; Colorado's universal opt-out).
GPC_PURPOSES = ("sale_or_share", "advertising")

DEFAULT_PURPOSES: dict[str, dict[str, Any]] = {
    "analytics": {"default": GRANTED, "aliases": ["performance", "statistics", "C0002"]},
    "personalization": {"default": GRANTED, "aliases": ["functional", "C0003"]},
    "marketing_email": {"default": DENIED, "channel": "email", "aliases": ["email"]},
    "marketing_sms": {"default": DENIED, "channel": "phone", "aliases": ["sms"]},
    "advertising": {"default": DENIED, "aliases": ["marketing", "targeting", "C0004"]},
    "sale_or_share": {"default": GRANTED, "aliases": ["sale", "do_not_sell", "C0005"]},
}


@dataclass(frozen=True)
class Purpose:
    name: str
    default: str
    channel: str | None
    aliases: tuple[str, ...]

    @property
    def allowed_by_default(self) -> bool:
        return self.default == GRANTED


@dataclass(frozen=True)
class Purposes:
    by_name: Mapping[str, Purpose]
    by_alias: Mapping[str, str]  # lower-cased name or alias -> purpose name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def get(self, name: str) -> Purpose | None:
        return self.by_name.get(name)

    def resolve(self, category: str) -> str | None:
        """The purpose a consent tool's category name stands for, if any."""
        return self.by_alias.get(category.strip().lower())


def purposes_parse(config: Mapping[str, Any]) -> Purposes:
    if not isinstance(config, Mapping) or not config:
        raise ImproperlyConfigured("CDP_CONSENT_PURPOSES_JSON must be a non-empty JSON object")
    by_name: dict[str, Purpose] = {}
    by_alias: dict[str, str] = {}
    for name, options in config.items():
        if not isinstance(name, str) or not name.isidentifier() or not isinstance(options, dict):
            raise ImproperlyConfigured(
                f"consent purpose {name!r}: names are identifiers ('marketing_email'), each "
                "mapped to an object of options"
            )
        default = options.get("default", DENIED)
        if default not in (GRANTED, DENIED):
            raise ImproperlyConfigured(
                f"consent purpose {name!r}: default must be 'granted' or 'denied'"
            )
        aliases = options.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
            raise ImproperlyConfigured(f"consent purpose {name!r}: aliases must be a list of names")
        channel = options.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise ImproperlyConfigured(f"consent purpose {name!r}: channel is an identifier kind")
        by_name[name] = Purpose(name=name, default=default, channel=channel, aliases=tuple(aliases))
        for alias in (name, *aliases):
            taken = by_alias.setdefault(alias.lower(), name)
            if taken != name:
                raise ImproperlyConfigured(
                    f"consent purposes {taken!r} and {name!r} both claim the name {alias!r}"
                )
    return Purposes(by_name=by_name, by_alias=by_alias)


def purposes() -> Purposes:
    return _parsed(_frozen(settings.CDP_CONSENT["PURPOSES"]))


def purpose_get(name: str) -> Purpose:
    """The configured purpose, or ``LookupError`` naming the known ones."""
    found = purposes().get(name)
    if found is None:
        raise LookupError(f"unknown purpose {name!r}; known: {', '.join(purposes().names)}")
    return found


def _frozen(config: Mapping[str, Any]) -> str:
    # A cache key that changes when a test overrides the setting.
    return json.dumps(config, sort_keys=True)


@lru_cache(maxsize=8)
def _parsed(frozen: str) -> Purposes:
    return purposes_parse(json.loads(frozen))
