"""Identifier kinds: the built-in ones, custom ones read from traits, and their priority.

An identifier is a (kind, normalized value) pair; it becomes a node of the identity graph. The
built-in kinds cover what Segment/RudderStack calls and CRM records carry. Operators add kinds for
their own first-party ids (a loyalty number, a CRM id sent as a trait) with ``CUSTOM_ID_TRAITS``;
those are normalized like ``user_id`` (opaque ids, trimmed).

The priority order says which kind wins when merge rules must choose (the strongest first). The
default: ``user_id`` > ``external`` > custom kinds (in configured order) > ``email`` > ``phone`` >
``device_id`` > ``anonymous_id``. A first-party login id is the most deliberate statement of who
someone is; a CRM record id is next; custom ids are first-party ids too; an email or a phone
number can be shared or recycled; a device is shared by a household; an anonymous id is a cookie.

Pure module: no database, no settings access (``identity.normalization`` reads the settings).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class IdentifierKind(StrEnum):
    USER_ID = "user_id"
    ANONYMOUS_ID = "anonymous_id"
    EMAIL = "email"
    PHONE = "phone"
    DEVICE_ID = "device_id"
    # A CRM record: "<source>:<external_id>", so the same id in two CRMs is two identifiers.
    EXTERNAL = "external"


BUILTIN_KINDS: tuple[str, ...] = tuple(IdentifierKind)
DEFAULT_PRIORITY: tuple[str, ...] = (
    IdentifierKind.USER_ID,
    IdentifierKind.EXTERNAL,
    # custom kinds go here, see KindRegistry.build
    IdentifierKind.EMAIL,
    IdentifierKind.PHONE,
    IdentifierKind.DEVICE_ID,
    IdentifierKind.ANONYMOUS_ID,
)
# Short, lowercase, safe in a URL and as a database value; not a built-in name.
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SOURCE_NAME = re.compile(r"[^:\s]{1,100}")


class KindConfigError(ValueError):
    """A custom kind or priority setting is wrong. The message names the setting, never data."""


@dataclass(frozen=True, slots=True)
class CustomKind:
    """An identifier kind read from a trait, e.g. ``CustomKind("loyalty_id", "loyaltyId")``."""

    kind: str
    trait: str


@dataclass(frozen=True, slots=True)
class KindRegistry:
    """The kinds in use and their priority (strongest first). Build it with ``build``."""

    custom: tuple[CustomKind, ...] = ()
    priority: tuple[str, ...] = DEFAULT_PRIORITY

    @classmethod
    def build(
        cls,
        *,
        custom: Iterable[str | Mapping[str, str] | CustomKind] = (),
        priority: Sequence[str] = (),
    ) -> KindRegistry:
        """Validate custom kinds (``"kind:trait"`` strings, ``{"kind", "trait"}`` dicts or
        ``CustomKind``) and an optional priority order. Kinds the order leaves out follow it in
        the default order, so ``["email"]`` only promotes email."""
        customs = tuple(_custom_kind(item) for item in custom)
        names = [item.kind for item in customs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KindConfigError(f"custom identifier kind defined twice: {', '.join(duplicates)}")
        traits = [item.trait for item in customs]
        if len(set(traits)) != len(traits):
            raise KindConfigError("two custom identifier kinds read the same trait")
        default = _default_priority(names)
        unknown = [kind for kind in priority if kind not in default]
        if unknown:
            raise KindConfigError(f"unknown identifier kind in priority: {', '.join(unknown)}")
        if len(set(priority)) != len(priority):
            raise KindConfigError("identifier priority names a kind twice")
        ordered = (*priority, *(kind for kind in default if kind not in priority))
        return cls(custom=customs, priority=ordered)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.priority)

    def is_known(self, kind: str) -> bool:
        return kind in self.priority

    def is_custom(self, kind: str) -> bool:
        return any(item.kind == kind for item in self.custom)

    def rank(self, kind: str) -> int:
        """0 for the strongest kind; raises ``ValueError`` for an unknown kind."""
        return self.priority.index(kind)

    def strongest(self, kinds: Iterable[str]) -> str | None:
        """The highest-priority kind among ``kinds`` (None when empty)."""
        return min(kinds, key=self.rank, default=None)


def external_value(*, source: str, external_id: str) -> str:
    """The value of an ``external`` identifier: ``"<source>:<external_id>"``.

    The source name is a slug (no ``:``), so the first ``:`` always splits the two parts and an
    external id may itself contain ``:``. Normalization trims and checks the id part.
    """
    if not _SOURCE_NAME.fullmatch(source):
        raise ValueError("source name must be non-empty, without ':' or whitespace")
    return f"{source}:{external_id}"


def split_external(value: str) -> tuple[str, str] | None:
    """``"crm:42"`` -> ``("crm", "42")``; None when it is not in that shape."""
    source, sep, external_id = value.partition(":")
    if not sep or not _SOURCE_NAME.fullmatch(source):
        return None
    return source, external_id


def _custom_kind(item: str | Mapping[str, str] | CustomKind) -> CustomKind:
    if isinstance(item, CustomKind):
        kind, trait = item.kind, item.trait
    elif isinstance(item, str):
        kind, sep, trait = (part.strip() for part in item.partition(":"))
        if not sep:
            raise KindConfigError(f"custom identifier kind {item!r} must be 'kind:trait'")
    elif isinstance(item, Mapping) and set(item) == {"kind", "trait"}:
        kind, trait = item["kind"], item["trait"]
    else:
        raise KindConfigError("a custom identifier kind is 'kind:trait' or {'kind', 'trait'}")
    if not isinstance(kind, str) or not _KIND_NAME.fullmatch(kind):
        raise KindConfigError(
            f"custom identifier kind {kind!r}: use lowercase letters, digits and '_' "
            "(at most 32, starting with a letter)"
        )
    if kind in BUILTIN_KINDS:
        raise KindConfigError(f"custom identifier kind {kind!r} is a built-in kind")
    if not isinstance(trait, str) or not trait.strip() or trait != trait.strip():
        raise KindConfigError(f"custom identifier kind {kind!r} needs a trait name")
    return CustomKind(kind=kind, trait=trait)


def _default_priority(custom: Sequence[str]) -> tuple[str, ...]:
    head, tail = DEFAULT_PRIORITY[:2], DEFAULT_PRIORITY[2:]
    return (*head, *custom, *tail)
