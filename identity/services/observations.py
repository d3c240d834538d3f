"""Writing trait observations: what each identify call and CRM record said about a person.

An observation is attached to the identifier the data arrived through and never copied onto a
profile, so merges and unmerges move it without a write. Identify calls repeat their traits
(many SDKs identify on every page), so repeated statements of one value add to one row (its
count, first and latest sighting) instead of a row each. PII traits (``CDP_PII_TRAITS``) are
encrypted under that identifier's data key, bound to the observation's row id; their clear value
exists only in the memory of the worker that writes or reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cdp.crypto.blind_index import keyed_digest
from cdp.crypto.envelope import encrypt
from cdp.crypto.models import DataKey
from cdp.ingestion.pii import pii_keys
from cdp.ops.bulk import rows_insert
from cdp.ops.sequences import next_ids
from identity.models import Identifier, TraitObservation
from identity.survivorship import canonical_json

MAX_TRAITS_PER_ORIGIN = 200
MAX_TRAIT_NAME_LENGTH = 255
DIGEST_PURPOSE = "trait-value"

_TABLE = TraitObservation._meta.db_table
# A repeated statement: one more sighting of the row's value; its first and latest ends move
# out (events are not resolved in time order).
_ADD_SIGHTINGS = f"""
ON CONFLICT (identifier_id, name, source_id, value_digest) WHERE record_id IS NULL
DO UPDATE SET
    count = {_TABLE}.count + EXCLUDED.count,
    first_event_id = CASE WHEN EXCLUDED.first_observed_at < {_TABLE}.first_observed_at
                          THEN EXCLUDED.first_event_id ELSE {_TABLE}.first_event_id END,
    first_observed_at = LEAST({_TABLE}.first_observed_at, EXCLUDED.first_observed_at),
    event_id = CASE WHEN EXCLUDED.observed_at >= {_TABLE}.observed_at
                    THEN EXCLUDED.event_id ELSE {_TABLE}.event_id END,
    observed_at = GREATEST({_TABLE}.observed_at, EXCLUDED.observed_at)
"""


@dataclass(frozen=True)
class ObservationInput:
    identifier: Identifier
    source_id: int
    origin: str  # "event" | "record"
    origin_id: int
    observed_at: datetime
    traits: Mapping[str, Any]


@dataclass
class _Row:
    identifier: Identifier
    name: str
    value: Any
    digest: str
    source_id: int
    count: int
    first_at: datetime
    first_origin: int
    last_at: datetime
    last_origin: int
    record: bool


def is_pii_trait(name: str) -> bool:
    return name in pii_keys()


def observations_write(inputs: Sequence[ObservationInput]) -> list[Identifier]:
    """Store the observations of each input; a record's replace the ones of its earlier version.
    Returns the identifiers whose observations changed (their profiles' traits need a refresh).

    At most ``MAX_TRAITS_PER_ORIGIN`` traits of an origin are kept (in name order), so one
    oversized identify call cannot flood the table.
    """
    changed: dict[int, Identifier] = {}
    record_ids = [item.origin_id for item in inputs if item.origin == "record"]
    if record_ids:
        stale = TraitObservation.objects.filter(record_id__in=record_ids)
        for identifier_id in set(stale.values_list("identifier_id", flat=True)):
            changed.setdefault(identifier_id, Identifier(pk=identifier_id))
        stale.delete()
    event_rows = _aggregated([item for item in inputs if item.origin == "event"])
    record_rows = [
        _row(item, name, value)
        for item in inputs
        if item.origin == "record"
        for name, value in _kept_traits(item.traits)
    ]
    for rows, conflict in ((event_rows, _ADD_SIGHTINGS), (record_rows, "")):
        if rows:
            _insert(rows, on_conflict=conflict)
            for row in rows:
                changed.setdefault(row.identifier.pk, row.identifier)
    return list(changed.values())


def _aggregated(inputs: Sequence[ObservationInput]) -> list[_Row]:
    """One row per (identifier, trait, source, value) of the batch, with its sightings."""
    rows: dict[tuple[int, str, int, str], _Row] = {}
    for item in inputs:
        for name, value in _kept_traits(item.traits):
            row = _row(item, name, value)
            key = (item.identifier.pk, name, item.source_id, row.digest)
            known = rows.get(key)
            if known is None:
                rows[key] = row
                continue
            known.count += 1
            if (item.observed_at, item.origin_id) < (known.first_at, known.first_origin):
                known.first_at, known.first_origin = item.observed_at, item.origin_id
            if (item.observed_at, item.origin_id) >= (known.last_at, known.last_origin):
                known.last_at, known.last_origin = item.observed_at, item.origin_id
    return list(rows.values())


def _row(item: ObservationInput, name: str, value: Any) -> _Row:
    return _Row(
        identifier=item.identifier,
        name=name,
        value=value,
        digest=keyed_digest(DIGEST_PURPOSE, canonical_json(value)),
        source_id=item.source_id,
        count=1,
        first_at=item.observed_at,
        first_origin=item.origin_id,
        last_at=item.observed_at,
        last_origin=item.origin_id,
        record=item.origin == "record",
    )


def _insert(rows: Sequence[_Row], *, on_conflict: str) -> None:
    ids = next_ids(_TABLE, len(rows))
    keys = DataKey.objects.in_bulk(
        {row.identifier.data_key_id for row in rows if is_pii_trait(row.name)}
    )
    sealed = [
        encrypt(
            orjson.dumps(row.value).decode(),
            key=keys[row.identifier.data_key_id],
            aad=TraitObservation.value_aad(observation_id),
        )
        if is_pii_trait(row.name)
        else None
        for observation_id, row in zip(ids, rows, strict=True)
    ]
    rows_insert(
        _TABLE,
        {
            "id": ("bigint[]", ids),
            "identifier_id": ("bigint[]", [row.identifier.pk for row in rows]),
            "name": ("varchar[]", [row.name for row in rows]),
            "value": (
                "jsonb[]",
                [None if c else row.value for row, c in zip(rows, sealed, strict=True)],
            ),
            "value_ciphertext": ("bytea[]", sealed),
            "value_digest": ("varchar[]", [row.digest for row in rows]),
            "source_id": ("bigint[]", [row.source_id for row in rows]),
            "count": ("integer[]", [row.count for row in rows]),
            "first_observed_at": ("timestamptz[]", [row.first_at for row in rows]),
            "observed_at": ("timestamptz[]", [row.last_at for row in rows]),
            "first_event_id": (
                "bigint[]",
                [None if row.record else row.first_origin for row in rows],
            ),
            "event_id": ("bigint[]", [None if row.record else row.last_origin for row in rows]),
            "record_id": ("bigint[]", [row.last_origin if row.record else None for row in rows]),
        },
        on_conflict=on_conflict,
    )


def _kept_traits(traits: Mapping[str, Any]) -> list[tuple[str, Any]]:
    names = sorted(
        name
        for name, value in traits.items()
        if value is not None and isinstance(name, str) and 0 < len(name) <= MAX_TRAIT_NAME_LENGTH
    )
    return [(name, traits[name]) for name in names[:MAX_TRAITS_PER_ORIGIN]]
