"""Which identifiers a stored event or a CRM record carries. Pure functions over plain values.

Identity evidence, the statement "these identifiers are one person", comes only from:

* **identify**: ``userId``, ``anonymousId``, ``traits.email`` / ``traits.phone``, the same in
  ``context.traits`` (RudderStack's SDKs send identify traits there), custom id traits, and
  ``context.device.id``;
* **alias**: ``userId``, ``previousId`` and ``anonymousId``, plus ``context.device.id``;
* **CRM records**: the ``external`` id, email, phone and custom id traits from attributes.

``track``, ``page``, ``screen`` and ``group`` only say which person the event belongs to: their
``userId`` / ``anonymousId`` are returned so the event can be attached (and an unknown visitor
get a node), but ``carries_identity_evidence`` is False and their traits are not read. Reason:
RudderStack's SDKs copy the *cached* traits into ``context.traits`` of every event, and on a
shared browser where nobody called ``reset()`` those are the previous user's, so reading them
would merge two people on stale data; what they could add was already said by the identify call
that put them in the cache. ``group`` traits describe the account (``traits.email`` there is the
company's address), never the person. Segment Unify is more permissive (it also promotes ids and
``context.traits.email`` from track calls); to follow it, add call types to
``EVIDENCE_CALL_TYPES``.

``previousId`` may be an earlier ``userId`` or an ``anonymousId`` (the alias spec allows both and
the call does not say which), so it is returned once per kind, both with role ``ALIAS``; the
resolver links whichever node exists and creates the ``anonymous_id`` one when neither does.

Identifiers come back in field order, deduplicated by (kind, value), first field wins; values
are normalized, and values that are invalid or blocked are left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any, NamedTuple

from identity.kinds import IdentifierKind, external_value
from identity.normalization import IdentityConfig, identity_config, normalize, normalize_id

EVIDENCE_CALL_TYPES = frozenset({"identify", "alias"})
_TRAIT_KINDS = ((IdentifierKind.EMAIL, "email"), (IdentifierKind.PHONE, "phone"))


class IdentifierRole(StrEnum):
    ID = "id"  # the call's own userId / anonymousId, a record's external id
    ALIAS = "alias"  # alias previousId
    TRAIT = "trait"  # email, phone, custom id traits
    DEVICE = "device"  # context.device.id


class ExtractedIdentifier(NamedTuple):
    kind: str
    value: str
    role: IdentifierRole
    field: str  # where it was read, e.g. "context.traits.email" (for the evidence record)


def carries_identity_evidence(call_type: str) -> bool:
    """Whether the identifiers of a call of this type may be linked to each other."""
    return call_type in EVIDENCE_CALL_TYPES


def event_identifiers(
    *,
    call_type: str,
    user_id: object = None,
    anonymous_id: object = None,
    previous_id: object = None,
    traits: object = None,
    context: object = None,
    config: IdentityConfig | None = None,
) -> list[ExtractedIdentifier]:
    """The identifiers of one stored event (its ``type``, ids, ``traits`` and ``context``)."""
    config = config or identity_config()
    raw: list[tuple[str, object, IdentifierRole, str]] = [
        (IdentifierKind.USER_ID, user_id, IdentifierRole.ID, "userId"),
        (IdentifierKind.ANONYMOUS_ID, anonymous_id, IdentifierRole.ID, "anonymousId"),
    ]
    if call_type == "alias":
        raw += [
            (kind, previous_id, IdentifierRole.ALIAS, "previousId")
            for kind in (IdentifierKind.USER_ID, IdentifierKind.ANONYMOUS_ID)
        ]
    if call_type == "identify":
        context_traits = _mapping(context).get("traits")
        raw += _traits(_mapping(traits), "traits", config)
        raw += _traits(_mapping(context_traits), "context.traits", config)
    if carries_identity_evidence(call_type):
        device = _mapping(_mapping(context).get("device")).get("id")
        raw.append((IdentifierKind.DEVICE_ID, device, IdentifierRole.DEVICE, "context.device.id"))
    return _normalized(raw, config)


def event_anchor(
    *, user_id: object, anonymous_id: object, config: IdentityConfig | None = None
) -> tuple[str, str] | None:
    """The identifier an event is anchored on (docs/identity.md): ``("user_id", value)`` when
    the user id is usable, else ``("anonymous_id", value)``, else None; values normalized.

    Ingestion encrypts an event's PII under this identifier's data key and the resolver anchors
    the event on it, so both must choose it by this one function: otherwise erasing a person
    could leave some of their events readable.
    """
    config = config or identity_config()
    for kind, raw in (
        (IdentifierKind.USER_ID, user_id),
        (IdentifierKind.ANONYMOUS_ID, anonymous_id),
    ):
        if raw is None:
            continue
        value = normalize(kind, raw, config=config)
        if value is not None:
            return kind, value
    return None


def record_identifiers(
    *,
    source: str,
    external_id: object,
    email: object = None,
    phone: object = None,
    attributes: object = None,
    config: IdentityConfig | None = None,
) -> list[ExtractedIdentifier]:
    """The identifiers of one CRM record of ``source`` (a source name, a slug: one with ``:`` or
    whitespace is a programming error and raises ValueError)."""
    config = config or identity_config()
    raw: list[tuple[str, object, IdentifierRole, str]] = [
        (IdentifierKind.EXTERNAL, _external(source, external_id), IdentifierRole.ID, "external_id"),
        (IdentifierKind.EMAIL, email, IdentifierRole.TRAIT, "email"),
        (IdentifierKind.PHONE, phone, IdentifierRole.TRAIT, "phone"),
    ]
    attrs = _mapping(attributes)
    raw += [
        (custom.kind, attrs.get(custom.trait), IdentifierRole.TRAIT, f"attributes.{custom.trait}")
        for custom in config.kinds.custom
    ]
    return _normalized(raw, config)


def _external(source: str, external_id: object) -> str | None:
    # A record's external id may arrive as a number (42 -> "crm:42").
    text = normalize_id(external_id)
    return None if text is None else external_value(source=source, external_id=text)


def _traits(
    traits: Mapping[str, Any], where: str, config: IdentityConfig
) -> Iterator[tuple[str, object, IdentifierRole, str]]:
    for kind, key in _TRAIT_KINDS:
        yield kind, traits.get(key), IdentifierRole.TRAIT, f"{where}.{key}"
    for custom in config.kinds.custom:
        yield custom.kind, traits.get(custom.trait), IdentifierRole.TRAIT, f"{where}.{custom.trait}"


def _normalized(
    raw: Iterable[tuple[str, object, IdentifierRole, str]], config: IdentityConfig
) -> list[ExtractedIdentifier]:
    seen: set[tuple[str, str]] = set()
    found: list[ExtractedIdentifier] = []
    for kind, value, role, where in raw:
        if value is None:
            continue
        normalized = normalize(kind, value, config=config)
        if normalized is None or (kind, normalized) in seen:
            continue
        seen.add((kind, normalized))
        found.append(ExtractedIdentifier(kind, normalized, role, where))
    return found


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
