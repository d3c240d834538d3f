"""Merge rules: how many identifiers of a kind one profile may hold, and how large it may grow.

Real identity graphs need both (Segment Unify and RudderStack Profiles have the same knobs):

* **per-kind limits**: a person has one login (``user_id: 1``) and a handful of email addresses,
  phones and devices. When an edge would join two components whose union holds more of a kind
  than allowed, the edge is kept but not applied (``Edge.applied=False`` with the conflict), so
  the lower-priority side stays where it was: "two different user ids stay apart" even when a
  shared laptop's anonymous id or a family email links them.
* **maximum component size**: a guardrail against mega-profiles (a test account, a shared
  kiosk, a blocklist gap). A merge past it is refused and recorded as a guardrail hit.

Pure module: the configuration comes from ``settings.CDP_MERGE_RULES`` (``merge_rules()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from identity.kinds import IdentifierKind

DEFAULT_LIMITS: Mapping[str, int] = {
    IdentifierKind.USER_ID: 1,
    IdentifierKind.EMAIL: 5,
    IdentifierKind.PHONE: 5,
    IdentifierKind.DEVICE_ID: 20,
    IdentifierKind.ANONYMOUS_ID: 200,
}
DEFAULT_MAX_PROFILE_IDENTIFIERS = 1000

LIMIT_CONFLICT = "limit:"  # + kind, e.g. "limit:user_id"
SIZE_CONFLICT = "max_profile_identifiers"


@dataclass(frozen=True, slots=True)
class MergeRules:
    """Limits per kind (a kind absent has none) and the largest component allowed."""

    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    max_identifiers: int = DEFAULT_MAX_PROFILE_IDENTIFIERS

    @classmethod
    def build(cls, raw: Mapping[str, Any]) -> MergeRules:
        """From ``{"LIMITS": {kind: n or null}, "MAX_PROFILE_IDENTIFIERS": n}``; ``LIMITS`` keys
        replace the defaults they name (``null`` removes a limit). ValueError when wrong."""
        unknown = sorted(set(raw) - {"LIMITS", "MAX_PROFILE_IDENTIFIERS"})
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(unknown)}")
        limits = dict(DEFAULT_LIMITS)
        given = raw.get("LIMITS") or {}
        if not isinstance(given, Mapping):
            raise ValueError("LIMITS must be an object {kind: maximum}")
        for kind, maximum in given.items():
            if maximum is None:
                limits.pop(kind, None)
            elif isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
                raise ValueError(f"limit of {kind!r} must be a whole number >= 1 or null")
            else:
                limits[kind] = maximum
        size = raw.get("MAX_PROFILE_IDENTIFIERS", DEFAULT_MAX_PROFILE_IDENTIFIERS)
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError("MAX_PROFILE_IDENTIFIERS must be a whole number >= 2")
        return cls(limits=limits, max_identifiers=size)

    def conflict(
        self, counts_a: Mapping[str, int], counts_b: Mapping[str, int], *, size: int
    ) -> str | None:
        """Why two components (their identifier counts per kind, their joint ``size``) may not
        join, or None when they may. Limits are checked before size; any broken limit blocks
        the edge, and the conflict names the first broken kind in name order (deterministic)."""
        broken = [
            kind
            for kind, count in counts_a.items()
            if kind in counts_b
            and kind in self.limits
            and count + counts_b[kind] > self.limits[kind]
        ]
        if broken:
            return LIMIT_CONFLICT + min(broken)
        if size > self.max_identifiers:
            return SIZE_CONFLICT
        return None


_loaded: dict[str, MergeRules] = {}


def load_merge_rules(raw: Mapping[str, Any]) -> MergeRules:
    try:
        return MergeRules.build(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"CDP_MERGE_RULES: {exc}") from exc


def merge_rules() -> MergeRules:
    rules = _loaded.get("current")
    if rules is None:
        rules = _loaded["current"] = load_merge_rules(getattr(settings, "CDP_MERGE_RULES", {}))
    return rules


@receiver(setting_changed)
def _forget_rules(*, setting: str, **kwargs: Any) -> None:
    if setting == "CDP_MERGE_RULES":
        _loaded.clear()
