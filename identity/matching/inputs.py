"""What the matcher reads of a profile: its person fields, decrypted in this worker's memory.

A profile's fields come from the trait observations of its identifiers (CRM records' fields,
identify calls' traits), the most recent value per field; PII observations are decrypted with
one key query per batch and never written back anywhere. Identify traits use the Segment names
(``firstName``, ``lastName``, ``birthday``, ``address.{street,city,postalCode}``, ``name``), CRM
records cdp's (``first_name`` ...); both land on the same fields. Observations under destroyed
keys (erased people) are left out. Reads only: this is the matcher's selector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from cdp.crypto.blind_index import keyed_digest
from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.ops.bulk import bound_cursor
from identity.matching.features import FIELDS
from identity.models import TraitObservation

FINGERPRINT_PURPOSE = "match-fingerprint"
# trait name -> field (an identify call's "address" object and "name" are unpacked below)
TRAIT_FIELDS = {
    "first_name": "first_name",
    "firstName": "first_name",
    "last_name": "last_name",
    "lastName": "last_name",
    "street": "street",
    "city": "city",
    "postcode": "postcode",
    "postalCode": "postcode",
    "zip": "postcode",
    "birth_date": "birth_date",
    "birthday": "birth_date",
    "email": "email",
    "phone": "phone",
}
ADDRESS_FIELDS = {"street": "street", "city": "city", "postalCode": "postcode", "zip": "postcode"}
TRAIT_NAMES = sorted({*TRAIT_FIELDS, "address", "name"})
READ_BATCH = 20_000

_OBSERVATIONS = """
SELECT i.profile_id, o.identifier_id, o.id, o.name, o.value, o.value_ciphertext, o.observed_at
FROM identity_traitobservation o
JOIN identity_identifier i ON i.id = o.identifier_id
JOIN identity_profile p ON p.id = i.profile_id AND p.merged_into_id IS NULL
JOIN crypto_datakey d ON d.id = i.data_key_id AND d.destroyed_at IS NULL
WHERE o.name = ANY(%(names)s) AND i.profile_id = ANY(%(profiles)s::bigint[])
"""
_LIVE_PROFILES = """
SELECT DISTINCT i.profile_id FROM identity_traitobservation o
JOIN identity_identifier i ON i.id = o.identifier_id
JOIN identity_profile p ON p.id = i.profile_id AND p.merged_into_id IS NULL
WHERE o.name = ANY(%(names)s) ORDER BY 1
"""


@dataclass
class Inputs:
    """Profiles as rows (index: profile id) of ``FIELDS``, with each one's anchor identifier
    (the oldest identifier its fields came through) and fingerprint."""

    frame: pd.DataFrame
    anchors: dict[int, int]
    fingerprints: dict[int, str]


def live_profiles_with_fields() -> list[int]:
    with bound_cursor() as cursor:
        cursor.execute(_LIVE_PROFILES, {"names": TRAIT_NAMES})
        return [row[0] for row in cursor.fetchall()]


def inputs_read(profile_ids: Sequence[int]) -> Inputs:
    """The fields of these live profiles (merged-away or field-less ones are absent)."""
    values: dict[int, dict[str, tuple[Any, Any]]] = {}
    anchors: dict[int, int] = {}
    for rows, opened in _batches(sorted(set(profile_ids))):
        for row, value in zip(rows, opened, strict=True):
            profile_id, identifier_id, _, name, _, _, observed_at = row
            if value is None:
                continue
            anchors[profile_id] = min(anchors.get(profile_id, identifier_id), identifier_id)
            fields = values.setdefault(profile_id, {})
            for field, text in _fields_of(name, value):
                known = fields.get(field)
                if known is None or observed_at > known[0]:
                    fields[field] = (observed_at, text)
    ids = sorted(values)
    frame = pd.DataFrame(
        {field: [_value(values[pk], field) for pk in ids] for field in FIELDS},
        index=pd.Index(ids, name="profile_id"),
        dtype=object,
    )
    fingerprints = {pk: fingerprint(frame.loc[pk].to_dict()) for pk in ids}
    return Inputs(frame=frame, anchors=anchors, fingerprints=fingerprints)


def _value(fields: dict[str, tuple[Any, Any]], field: str) -> Any:
    found = fields.get(field)
    return None if found is None else found[1]


def _batches(profile_ids: list[int]) -> Iterator[tuple[list[Any], list[Any]]]:
    for start in range(0, len(profile_ids), READ_BATCH):
        chunk = profile_ids[start : start + READ_BATCH]
        with bound_cursor() as cursor:
            cursor.execute(_OBSERVATIONS, {"names": TRAIT_NAMES, "profiles": chunk})
            rows = cursor.fetchall()
        sealed = [(r[5], TraitObservation.value_aad(r[2])) for r in rows if r[5] is not None]
        opened = iter(decrypt_many_unless_erased(sealed))
        values = []
        for row in rows:
            if row[5] is not None:
                plaintext = next(opened)
                values.append(None if plaintext is None else orjson.loads(plaintext))
            else:
                raw = row[4]
                values.append(orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw)
        yield rows, values


def _fields_of(name: str, value: Any) -> list[tuple[str, str]]:
    """The (field, text) pairs one observation states."""
    if name == "address" and isinstance(value, dict):
        return [
            (field, str(value[key]))
            for key, field in ADDRESS_FIELDS.items()
            if isinstance(value.get(key), (str, int))
        ]
    if name == "name" and isinstance(value, str) and " " in value.strip():
        first, _, last = value.strip().rpartition(" ")
        return [("first_name", first), ("last_name", last)]
    field = TRAIT_FIELDS.get(name)
    if field is None or not isinstance(value, (str, int)) or isinstance(value, bool):
        return []
    return [(field, str(value))]


def fingerprint(fields: dict[str, Any]) -> str:
    """A keyed digest of a profile's compared fields: equal exactly when the fields are."""
    canonical = orjson.dumps({k: fields.get(k) for k in FIELDS}, option=orjson.OPT_SORT_KEYS)
    return keyed_digest(FINGERPRINT_PURPOSE, canonical)


def pair_fingerprint(a: str, b: str) -> str:
    return keyed_digest(FINGERPRINT_PURPOSE, f"{min(a, b)}:{max(a, b)}".encode())
