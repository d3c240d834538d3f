"""A profile's derived fields: counters from its identifiers, traits by survivorship.

Both are recomputed from the identifiers a profile holds *now* (their event counters and trait
observations), never adjusted incrementally: after a merge, an unmerge or a rebuild the same
identifiers always give the same profile, which is what makes an unmerge restore both sides
exactly. Callers hold the profiles' locks (``identity.merging``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from django.utils import timezone

from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.ops.bulk import bound_cursor, rows_update
from identity.models import Profile, TraitObservation
from identity.services.observations import is_pii_trait
from identity.survivorship import Observation, TraitValue, survivorship_config, unify

_COUNTERS = """
UPDATE identity_profile AS p
SET event_count = COALESCE(s.events, 0), first_seen_at = s.first_at, last_seen_at = s.last_at,
    updated_at = %(now)s
FROM unnest(%(ids)s::bigint[]) AS t(id)
LEFT JOIN (
    SELECT profile_id, sum(event_count) AS events, min(first_event_at) AS first_at,
           max(last_event_at) AS last_at
    FROM identity_identifier WHERE profile_id = ANY(%(ids)s::bigint[])
    GROUP BY profile_id
) AS s ON s.profile_id = t.id
WHERE p.id = t.id
"""

_OBSERVATIONS = """
SELECT i.profile_id, o.id, o.name, o.value, o.value_ciphertext, o.observed_at, s.name,
       o.event_id, o.record_id, o.count, o.first_observed_at, o.first_event_id
FROM identity_traitobservation o
JOIN identity_identifier i ON i.id = o.identifier_id
JOIN ingestion_source s ON s.id = o.source_id
JOIN crypto_datakey d ON d.id = i.data_key_id
-- An erased identifier's observations are unreadable and no longer count.
WHERE i.profile_id = ANY(%s::bigint[]) AND d.destroyed_at IS NULL
"""


def profiles_refresh(*, profile_ids: Iterable[int], traits_for: Iterable[int] = ()) -> None:
    """Recompute the counters of ``profile_ids`` and the traits of ``traits_for`` (the
    profiles whose identifiers or observations changed)."""
    ids = sorted(set(profile_ids))
    if ids:
        with bound_cursor() as cursor:
            cursor.execute(_COUNTERS, {"ids": ids, "now": timezone.now()})
    trait_ids = sorted(set(traits_for))
    if trait_ids:
        _traits_refresh(trait_ids)


def profiles_counters_add(*, added: Mapping[int, tuple[int, datetime, datetime]]) -> None:
    """Add events to profiles whose identifiers did not change (profile id -> events added,
    earliest and latest event time): the same result as recounting, without reading their
    identifiers."""
    ids = sorted(added)
    rows_update(
        Profile._meta.db_table,
        key=("bigint[]", ids),
        columns={
            "event_count": ("bigint[]", [added[i][0] for i in ids]),
            "first_seen_at": ("timestamptz[]", [added[i][1] for i in ids]),
            "last_seen_at": ("timestamptz[]", [added[i][2] for i in ids]),
            "updated_at": ("timestamptz[]", [timezone.now()] * len(ids)),
        },
        assign={
            "event_count": "r.event_count + t.event_count",
            "first_seen_at": "LEAST(r.first_seen_at, t.first_seen_at)",
            "last_seen_at": "GREATEST(r.last_seen_at, t.last_seen_at)",
        },
    )


def _traits_refresh(profile_ids: Sequence[int]) -> None:
    observations = profile_observations(profile_ids)
    config = survivorship_config()
    traits = [_stored_traits(unify(observations.get(pk, []), config=config)) for pk in profile_ids]
    rows_update(
        Profile._meta.db_table,
        key=("bigint[]", profile_ids),
        columns={"traits": ("jsonb[]", traits)},
    )


def profile_observations(profile_ids: Sequence[int]) -> dict[int, list[Observation]]:
    """The observations of each profile's identifiers, PII values decrypted (one key query).
    Observations under a destroyed key (an erased identifier) are left out."""
    with bound_cursor() as cursor:
        cursor.execute(_OBSERVATIONS, [list(profile_ids)])
        rows = cursor.fetchall()
    sealed = [(row[4], TraitObservation.value_aad(row[1])) for row in rows if row[4] is not None]
    # An erasure that commits between the query and the decryption leaves None (skipped).
    opened = iter(decrypt_many_unless_erased(sealed))
    out: dict[int, list[Observation]] = defaultdict(list)
    for row in rows:
        profile_id, obs_id, name, value, ciphertext, observed_at, source = row[:7]
        event_id, record_id, count, first_at, first_event_id = row[7:]
        if ciphertext is not None:
            plaintext = next(opened)
            value = None if plaintext is None else orjson.loads(plaintext)
        else:
            value = _json(value)
        if value is None:
            continue
        from_event = event_id is not None
        out[profile_id].append(
            Observation(
                name=name,
                value=value,
                observed_at=observed_at,
                source=source,
                origin="event" if from_event else "record",
                origin_id=event_id if from_event else record_id,
                observation_id=obs_id,
                count=count,
                first_observed_at=first_at,
                first_origin_id=first_event_id if from_event else record_id,
            )
        )
    return out


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _stored_traits(unified: dict[str, TraitValue]) -> dict[str, Any]:
    """What ``Profile.traits`` keeps: provenance for every trait, the value only when it is not
    PII (a PII value is read from its observation, for readers allowed to see it)."""
    out: dict[str, Any] = {}
    for name in sorted(unified):
        trait = unified[name]
        winner = trait.observation
        entry: dict[str, Any] = {
            "pii": is_pii_trait(name),
            "rule": str(trait.rule),
            "source": winner.source,
            "origin": winner.origin,
            "origin_id": trait.origin_id,
            "observation_id": winner.observation_id,
            "observed_at": trait.observed_at.isoformat(),
            "observations": trait.observations,
            "distinct_values": trait.distinct_values,
        }
        if not entry["pii"]:
            entry["value"] = trait.value
        out[name] = entry
    return out
