"""Writing trait observations: what each identify call and CRM record said about a person.

An observation is attached to the identifier the data arrived through and never copied onto a
profile, so merges and unmerges move it without a write. PII traits (``CDP_PII_TRAITS``) are
encrypted under that identifier's data key, bound to the observation's row id; their clear value
exists only in the memory of the worker that writes or reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cdp.crypto.envelope import encrypt
from cdp.crypto.models import DataKey
from cdp.ingestion.pii import pii_keys
from cdp.ops.bulk import rows_insert
from cdp.ops.sequences import next_ids
from identity.models import Identifier, TraitObservation

MAX_TRAITS_PER_ORIGIN = 200
MAX_TRAIT_NAME_LENGTH = 255


@dataclass(frozen=True)
class ObservationInput:
    identifier: Identifier
    source_id: int
    origin: str  # "event" | "record"
    origin_id: int
    observed_at: datetime
    traits: Mapping[str, Any]


def is_pii_trait(name: str) -> bool:
    return name in pii_keys()


def observations_write(inputs: Sequence[ObservationInput]) -> list[Identifier]:
    """Store the observations of each input; a record's replace the ones of its earlier version.
    Returns the identifiers whose observations changed (their profiles' traits need a refresh).

    Events are resolved once, so their observations are only ever inserted. At most
    ``MAX_TRAITS_PER_ORIGIN`` traits of an origin are kept (in name order), so one oversized
    identify call cannot flood the table.
    """
    record_ids = [item.origin_id for item in inputs if item.origin == "record"]
    changed: dict[int, Identifier] = {}
    if record_ids:
        stale = TraitObservation.objects.filter(record_id__in=record_ids)
        for identifier_id in set(stale.values_list("identifier_id", flat=True)):
            changed.setdefault(identifier_id, Identifier(pk=identifier_id))
        stale.delete()
    rows = [(item, name, value) for item in inputs for name, value in _kept_traits(item.traits)]
    if not rows:
        return list(changed.values())
    ids = next_ids(TraitObservation._meta.db_table, len(rows))
    keys = DataKey.objects.in_bulk(
        {item.identifier.data_key_id for item, name, _ in rows if is_pii_trait(name)}
    )
    observations = []
    for observation_id, (item, name, value) in zip(ids, rows, strict=True):
        pii = is_pii_trait(name)
        observations.append(
            TraitObservation(
                id=observation_id,
                identifier_id=item.identifier.pk,
                name=name,
                value=None if pii else value,
                value_ciphertext=(
                    encrypt(
                        orjson.dumps(value).decode(),
                        key=keys[item.identifier.data_key_id],
                        aad=TraitObservation.value_aad(observation_id),
                    )
                    if pii
                    else None
                ),
                source_id=item.source_id,
                event_id=item.origin_id if item.origin == "event" else None,
                record_id=item.origin_id if item.origin == "record" else None,
                observed_at=item.observed_at,
            )
        )
        changed.setdefault(item.identifier.pk, item.identifier)
    rows_insert(
        TraitObservation._meta.db_table,
        {
            "id": ("bigint[]", [o.pk for o in observations]),
            "identifier_id": ("bigint[]", [o.identifier_id for o in observations]),
            "name": ("varchar[]", [o.name for o in observations]),
            "value": ("jsonb[]", [o.value for o in observations]),
            "value_ciphertext": ("bytea[]", [o.value_ciphertext for o in observations]),
            "source_id": ("bigint[]", [o.source_id for o in observations]),
            "event_id": ("bigint[]", [o.event_id for o in observations]),
            "record_id": ("bigint[]", [o.record_id for o in observations]),
            "observed_at": ("timestamptz[]", [o.observed_at for o in observations]),
        },
    )
    return list(changed.values())


def _kept_traits(traits: Mapping[str, Any]) -> list[tuple[str, Any]]:
    names = sorted(
        name
        for name, value in traits.items()
        if value is not None and isinstance(name, str) and 0 < len(name) <= MAX_TRAIT_NAME_LENGTH
    )
    return [(name, traits[name]) for name in names[:MAX_TRAITS_PER_ORIGIN]]
