"""PII of events and CRM records: taken out at ingest, encrypted, put back for readers.

Which values are PII is configured by trait name (``CDP_IDENTITY["PII_TRAITS"]``, matched
case-sensitively). Of an event, those keys are taken out of ``traits`` (top level), of
``context.traits`` and ``context.ip``; of a CRM record, its person fields (everything but
``external_id``, ``country`` and ``attributes``) and the listed keys of ``attributes``. What was
taken is one JSON object, encrypted (``cdp.crypto.envelope``) into the row's ``pii`` column:

* events: ``{"traits.email": ..., "context.traits.phone": ..., "context.ip": ...}``, under the
  data key of the event's anchor identifier (``identity.extraction.event_anchor``), associated
  data ``ingestion.event:<source id>:<message id>:pii``;
* records: ``{"email": ..., "birth_date": "1990-02-03", "attributes": {"zip": ...}}`` (fields
  with a value only), under the data key of the record's ``external`` identifier, associated
  data ``ingestion.record:<source id>:<external id>:pii``.

Keys belong to identifiers (docs/identity.md), so erasing a person, which destroys the keys of
their identifiers, makes the PII of their events and records unreadable too. A row whose PII has
no usable anchor (an id that normalizes to nothing, a key already destroyed) loses those values:
they are never stored in clear. Values never appear in a log line or an exception message here.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from cdp.crypto.envelope import Ciphertext, decrypt_many_unless_erased, encrypt
from cdp.crypto.errors import KeyDestroyed
from cdp.crypto.models import DataKey
from cdp.ingestion.models import Event, Record
from identity.extraction import event_anchor
from identity.kinds import IdentifierKind, external_value
from identity.models import Identifier
from identity.normalization import normalize

if TYPE_CHECKING:  # validation imports this module for event_pii_take
    from cdp.ingestion.validation import EventRow

REDACTED = "[redacted]"
TRAITS = "traits."
CONTEXT_TRAITS = "context.traits."
CONTEXT = "context."
# Top-level context keys that can hold PII (when listed): the rest of context describes the
# library, page and device, and its key names ("name" of context.app...) are not trait names.
CONTEXT_KEYS = ("ip",)

Anchor = tuple[str, str]


# --- configuration ----------------------------------------------------------------------------
def pii_keys() -> frozenset[str]:
    """The configured PII trait names. Missing configuration fails closed (ImproperlyConfigured)
    rather than silently storing everything in clear."""
    names = getattr(settings, "CDP_IDENTITY", {}).get("PII_TRAITS")
    if names is None:
        raise ImproperlyConfigured("CDP_IDENTITY['PII_TRAITS'] (CDP_PII_TRAITS) is not set")
    return _frozen(tuple(names))


@lru_cache(maxsize=8)
def _frozen(names: tuple[str, ...]) -> frozenset[str]:
    if not all(isinstance(name, str) and name for name in names):
        raise ImproperlyConfigured("CDP_IDENTITY['PII_TRAITS'] must be a list of trait names")
    return frozenset(names)


# --- events: pure parts -----------------------------------------------------------------------
def event_pii_take(parts: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    """Move the PII of an event's ``parts`` (``traits``, ``context``: validated dicts) out into a
    ``{path: value}`` dict. ``parts`` gets new dicts; the message's own are left as they are.

    Cheap when there is nothing to take (a set test per part): most events carry no traits.
    """
    pii: dict[str, Any] = {}
    if not keys:
        return pii
    traits = parts["traits"]
    if traits and not keys.isdisjoint(traits):
        parts["traits"] = _without(traits, keys, TRAITS, pii)
    context = parts["context"]
    if not context:
        return pii
    context_traits = context.get("traits")
    take_traits = isinstance(context_traits, dict) and not keys.isdisjoint(context_traits)
    take_keys = [key for key in CONTEXT_KEYS if key in keys and key in context]
    if take_traits or take_keys:
        context = dict(context)
        if take_traits:
            context["traits"] = _without(context_traits, keys, CONTEXT_TRAITS, pii)
        for key in take_keys:
            pii[CONTEXT + key] = context.pop(key)
        parts["context"] = context
    return pii


def _without(
    values: dict[str, Any], keys: frozenset[str], prefix: str, taken: dict[str, Any]
) -> dict[str, Any]:
    kept = {}
    for key, value in values.items():
        if key in keys:
            taken[prefix + key] = value
        else:
            kept[key] = value
    return kept


def event_pii_part(path: str) -> str:
    """The event part a PII path was taken from: ``"traits"`` or ``"context"``."""
    return "traits" if path.startswith(TRAITS) else "context"


def restore_event_pii(
    *, traits: dict[str, Any], context: dict[str, Any], pii: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """New ``traits`` and ``context`` with the values of ``pii`` (``events_pii``) put back at
    their paths; the dicts given are not changed."""
    traits, context = dict(traits), dict(context)
    context_traits: dict[str, Any] | None = None
    for path, value in pii.items():
        if path.startswith(TRAITS):
            traits[path[len(TRAITS) :]] = value
        elif path.startswith(CONTEXT_TRAITS):
            if context_traits is None:
                current = context.get("traits")
                context_traits = context["traits"] = (
                    dict(current) if isinstance(current, dict) else {}
                )
            context_traits[path[len(CONTEXT_TRAITS) :]] = value
        elif path.startswith(CONTEXT):
            context[path[len(CONTEXT) :]] = value
    return traits, context


def redacted(pii: Mapping[str, Any]) -> dict[str, Any]:
    """``pii`` with every value replaced by ``"[redacted]"``: shows that a value exists."""
    return dict.fromkeys(pii, REDACTED)


def event_pii_aad(*, source_id: int, message_id: str) -> bytes:
    return b"ingestion.event:%d:%s:pii" % (source_id, message_id.encode())


def record_pii_aad(*, source_id: int, external_id: str) -> bytes:
    return b"ingestion.record:%d:%s:pii" % (source_id, external_id.encode())


# --- writes: encrypting at ingest -------------------------------------------------------------
@dataclass(frozen=True)
class SealedPii:
    """Per row: the ``pii`` ciphertext (None when the row had none or it was dropped)."""

    ciphertexts: list[bytes | None]
    dropped: int  # rows whose PII was dropped: no usable anchor, or its key is destroyed


@dataclass(frozen=True, slots=True)
class PiiItem:
    """One row's PII to seal: its plaintext JSON (None: nothing to seal), anchor and aad."""

    plaintext: str | None
    anchor: Anchor | None
    aad: bytes


def events_pii_seal(*, source_id: int, rows: Sequence[EventRow], seen_at: datetime) -> SealedPii:
    """Encrypt the PII of validated event rows under their anchors' data keys. Rows without PII
    cost nothing; the rest cost one ``identifiers_get_or_create`` for the batch's distinct
    anchors."""
    items = [
        PiiItem(
            plaintext=row.pii,
            anchor=None
            if row.pii is None
            else event_anchor(user_id=row.user_id, anonymous_id=row.anonymous_id),
            aad=event_pii_aad(source_id=source_id, message_id=row.message_id),
        )
        for row in rows
    ]
    return pii_seal(items=items, seen_at=seen_at)


def record_anchor(*, source_name: str, external_id: str) -> Anchor | None:
    """The ``external`` identifier a record's PII is encrypted under (None: the id is blocked
    or otherwise not a usable identifier)."""
    value = normalize(
        IdentifierKind.EXTERNAL, external_value(source=source_name, external_id=external_id)
    )
    return None if value is None else (IdentifierKind.EXTERNAL, value)


def pii_seal(*, items: Sequence[PiiItem], seen_at: datetime) -> SealedPii:
    """Encrypt each item's plaintext under its anchor identifier's data key.

    The anchors are found or created in one call with ``touch_seen=False``: ingestion must not
    take row locks on identifiers (resolver transactions hold them), and seen times are the
    resolver's to keep. Items without an anchor, or whose anchor's key is destroyed (an erased
    person), are dropped and counted.
    """
    anchors = sorted({item.anchor for item in items if item.plaintext and item.anchor})
    keys = _anchor_keys(anchors, seen_at=seen_at) if anchors else {}
    ciphertexts: list[bytes | None] = []
    dropped = 0
    for item in items:
        if item.plaintext is None:
            ciphertexts.append(None)
            continue
        key = keys.get(item.anchor) if item.anchor else None
        sealed = None
        if key is not None:
            try:
                sealed = encrypt(item.plaintext, key=key, aad=item.aad)
            except KeyDestroyed:
                sealed = None
        ciphertexts.append(sealed)
        dropped += sealed is None
    return SealedPii(ciphertexts=ciphertexts, dropped=dropped)


def _anchor_keys(anchors: Sequence[Anchor], *, seen_at: datetime) -> dict[Anchor, DataKey]:
    """The data key of each anchor identifier: created ones come with theirs, the data keys of
    existing ones are loaded in one query."""
    # Imported here: identity.services (the resolver) reads PII through this module.
    from identity.services.identifiers import identifiers_get_or_create

    nodes = identifiers_get_or_create(items=anchors, seen_at=seen_at, touch_seen=False)
    data_key_field = Identifier._meta.get_field("data_key")
    unloaded = {node.data_key_id for node in nodes.values() if not data_key_field.is_cached(node)}
    loaded = DataKey.objects.in_bulk(unloaded) if unloaded else {}
    return {
        anchor: node.data_key if data_key_field.is_cached(node) else loaded[node.data_key_id]
        for anchor, node in nodes.items()
    }


def base64_or_none(ciphertext: bytes | None) -> str | None:
    """How a ciphertext travels inside the insert's JSON document (decoded there in SQL)."""
    return None if ciphertext is None else base64.b64encode(ciphertext).decode("ascii")


# --- reads ------------------------------------------------------------------------------------
def events_pii(
    items: Sequence[tuple[bytes | memoryview | None, int, str]],
) -> list[dict[str, Any]]:
    """The PII of events, from ``(pii ciphertext or None, source_id, message_id)`` items, in
    order: ``{path: value}``, {} for an event without PII or whose key was destroyed (erased).
    One query for all the data keys not cached; an altered or moved ciphertext raises
    ``DecryptionFailed``."""
    return _opened(
        (pii, event_pii_aad(source_id=source_id, message_id=message_id))
        for pii, source_id, message_id in items
    )


def records_pii(records: Sequence[Record]) -> list[dict[str, Any]]:
    """The PII of CRM records, in order: ``{"email": ..., "attributes": {...}}`` holding the
    fields that have a value, {} when there is none or the key was destroyed. One key query."""
    return _opened(
        (record.pii, record_pii_aad(source_id=record.source_id, external_id=record.external_id))
        for record in records
    )


def _opened(items: Iterable[tuple[Ciphertext | None, bytes]]) -> list[dict[str, Any]]:
    pairs = list(items)
    present = [(pii, aad) for pii, aad in pairs if pii is not None]
    plaintexts = iter(decrypt_many_unless_erased(present) if present else [])
    opened: list[dict[str, Any]] = []
    for pii, _ in pairs:
        plaintext = None if pii is None else next(plaintexts)
        opened.append({} if plaintext is None else orjson.loads(plaintext))
    return opened


def events_show_pii(events: Sequence[Event], *, reveal: bool) -> None:
    """Put each event's PII back into its ``traits`` and ``context`` for a response (the
    instances only, nothing is saved): the values when ``reveal``, else ``"[redacted]"`` at each
    path. One key query for the page either way: the paths are inside the ciphertext."""
    opened = events_pii([(event.pii, event.source_id, event.message_id) for event in events])
    for event, pii in zip(events, opened, strict=True):
        if pii:
            event.traits, event.context = restore_event_pii(
                traits=event.traits, context=event.context, pii=pii if reveal else redacted(pii)
            )
