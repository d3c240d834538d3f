"""Creating identifier nodes: find by blind index, create the missing ones encrypted.

Values are PII: no message, log line or exception here carries one (kinds and ids only).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, transaction

from cdp.crypto.blind_index import blind_index
from cdp.crypto.envelope import encrypt
from cdp.crypto.services import data_keys_create, data_keys_destroy
from cdp.ops.sequences import next_ids
from consent.privacy.suppression import suppressed_among
from identity.models import Identifier
from identity.normalization import normalize

# (kind, blind index): how a value is known without being read.
IndexKey = tuple[str, bytes]


@transaction.atomic
def identifiers_get_or_create(
    *, items: Sequence[tuple[str, str]], seen_at: datetime, touch_seen: bool = True
) -> dict[tuple[str, str], Identifier]:
    """The identifier of each ``(kind, normalized value)``, created when missing; returns them
    keyed by the pairs given.

    One query finds the existing rows. The missing ones get ids from the sequence first (the
    ciphertext's associated data names the row id) and a data key each, and are inserted in one
    statement with ``ON CONFLICT DO NOTHING``, sorted by (kind, blind index) so concurrent batches
    take their locks in one order: when another transaction created the same identifier
    meanwhile, both end up with its one row (re-selected here) and the key made for the lost
    row is destroyed. ``first_seen_at`` / ``last_seen_at`` widen to include ``seen_at``, unless
    ``touch_seen`` is False: widening locks the existing rows, and ingestion (which only needs the
    identifiers' data keys) must never wait on the row locks resolver transactions hold. New rows
    are created with ``seen_at`` either way.

    Values must be normalized (``identity.normalization.normalize``): anything else, a blocked
    value included, is a programming error (ValueError naming the kind only), so a blocked or
    unnormalized value can never become a node.

    Suppressed identifiers (an erased person's, ``consent.privacy.suppression``) are never
    created: they are absent from the result, and callers drop what carries them. The check
    runs over the rows just inserted (one indexed query, only when rows were created), after the
    insert: an insert that conflicted with the row an erasure was deleting waited for that
    erasure to commit, so its suppression is visible by then.
    """
    wanted = _index_keys(items)
    if not wanted:
        return {}
    found = _select(wanted)
    existing = list(found.values())
    missing = [key for key in wanted if key not in found]
    if missing:
        created, lost = _insert(missing, wanted=wanted, seen_at=seen_at)
        found.update(_unsuppressed(created))
        if lost:
            winners = _select({key: wanted[key] for key in lost})
            if len(winners) != len(lost):
                # DO NOTHING skips only rows that are committed or ours, which a new snapshot
                # sees (READ COMMITTED); under a stricter isolation level this can happen.
                raise RuntimeError("identifiers lost on insert are not visible to re-select")
            found.update(winners)
            existing.extend(winners.values())
    if touch_seen:
        _widen_seen(existing, seen_at=seen_at)
    return {pair: found[key] for key, pair in wanted.items() if key in found}


def _unsuppressed(created: dict[IndexKey, Identifier]) -> dict[IndexKey, Identifier]:
    """``created`` without the suppressed ones, whose rows are deleted again and whose keys
    are destroyed (they encrypted nothing stored)."""
    suppressed = suppressed_among(created)
    if not suppressed:
        return created
    rows = [created[key] for key in suppressed]
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM identity_identifier WHERE id = ANY(%s::bigint[])", [[r.pk for r in rows]]
        )
    data_keys_destroy(ids=[row.data_key_id for row in rows])
    return {key: row for key, row in created.items() if key not in suppressed}


def _index_keys(items: Iterable[tuple[str, str]]) -> dict[IndexKey, tuple[str, str]]:
    """Blind index of each distinct pair, sorted by (kind, blind index)."""
    keys: dict[IndexKey, tuple[str, str]] = {}
    for kind, value in set(items):
        if normalize(kind, value) != value:  # ValueError for an unknown kind
            raise ValueError(
                f"identifier of kind {kind!r} is not a normalized, unblocked value; "
                "pass values through identity.normalization.normalize"
            )
        keys[(kind, blind_index(kind, value))] = (kind, value)
    return dict(sorted(keys.items()))


# One JSON parameter, not one array per column: psycopg would dump (and Django's client-side
# binding quote) arrays element by element in Python, which dominated a resolver batch.
_SELECT = """
SELECT i.id, i.kind, i.blind_index, i.data_key_id, i.profile_id, i.first_seen_at,
       i.last_seen_at, i.first_profile_id
FROM identity_identifier i
JOIN jsonb_to_recordset(%s::jsonb) AS t(kind varchar, blind_index text)
  ON i.kind = t.kind AND i.blind_index = decode(t.blind_index, 'base64')
"""
# What resolution and ingestion need of a node, in the model's field order (``from_db`` reads
# values in that order); the other fields load on first access.
_SELECTED = (
    "id",
    "kind",
    "blind_index",
    "data_key_id",
    "profile_id",
    "first_seen_at",
    "last_seen_at",
    "first_profile_id",
)


def _select(keys: Iterable[IndexKey]) -> dict[IndexKey, Identifier]:
    document = orjson.dumps(
        [{"kind": kind, "blind_index": _b64(index)} for kind, index in keys]
    ).decode()
    with connection.cursor() as cursor:
        cursor.execute(_SELECT, [document])
        rows = [
            Identifier.from_db(DEFAULT_DB_ALIAS, _SELECTED, (*row[:2], bytes(row[2]), *row[3:]))
            for row in cursor.fetchall()
        ]
    return {(row.kind, bytes(row.blind_index)): row for row in rows}


def _b64(value: bytes | memoryview) -> str:
    return base64.b64encode(value).decode("ascii")


_INSERT = """
INSERT INTO identity_identifier
    (id, kind, blind_index, value_ciphertext, data_key_id, first_seen_at, last_seen_at)
SELECT t.id, t.kind, decode(t.blind_index, 'base64'), decode(t.value_ciphertext, 'base64'),
       t.data_key_id, %(seen_at)s, %(seen_at)s
FROM ROWS FROM (
    jsonb_to_recordset(%(rows)s::jsonb)
        AS (id bigint, kind varchar, blind_index text, value_ciphertext text, data_key_id bigint)
) WITH ORDINALITY AS t(id, kind, blind_index, value_ciphertext, data_key_id, position)
ORDER BY t.position
ON CONFLICT (kind, blind_index) DO NOTHING
RETURNING id
"""


def _insert(
    missing: Sequence[IndexKey], *, wanted: dict[IndexKey, tuple[str, str]], seen_at: datetime
) -> tuple[dict[IndexKey, Identifier], list[IndexKey]]:
    """Insert ``missing`` (sorted); returns the rows created and the keys another transaction
    created first. Those rows' data keys are destroyed: they encrypted nothing stored."""
    ids = next_ids(Identifier._meta.db_table, len(missing))
    keys = data_keys_create(count=len(missing))
    rows = []
    for identifier_id, data_key, (kind, index) in zip(ids, keys, missing, strict=True):
        _, value = wanted[(kind, index)]
        aad = Identifier.value_aad(identifier_id)
        row = Identifier(
            id=identifier_id,
            kind=kind,
            blind_index=index,
            value_ciphertext=encrypt(value, key=data_key, aad=aad),
            data_key=data_key,
            first_seen_at=seen_at,
            last_seen_at=seen_at,
        )
        row._state.adding = False
        row._state.db = DEFAULT_DB_ALIAS
        rows.append(row)
    params: dict[str, Any] = {
        "seen_at": seen_at,
        "rows": orjson.dumps(
            [
                {
                    "id": row.pk,
                    "kind": row.kind,
                    "blind_index": _b64(row.blind_index),
                    "value_ciphertext": _b64(row.value_ciphertext),
                    "data_key_id": row.data_key_id,
                }
                for row in rows
            ]
        ).decode(),
    }
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, params)
        inserted = {row[0] for row in cursor.fetchall()}
    created = {key: row for key, row in zip(missing, rows, strict=True) if row.pk in inserted}
    lost = [key for key, row in zip(missing, rows, strict=True) if row.pk not in inserted]
    if lost:
        data_keys_destroy(ids=[row.data_key_id for row in rows if row.pk not in inserted])
    return created, lost


_WIDEN_SEEN = """
UPDATE identity_identifier AS i
SET first_seen_at = LEAST(i.first_seen_at, %(seen_at)s),
    last_seen_at = GREATEST(i.last_seen_at, %(seen_at)s)
FROM (
    -- Locked in id order, so two batches touching the same identifiers never deadlock.
    SELECT id FROM identity_identifier
    WHERE id = ANY(%(ids)s::bigint[])
      AND (last_seen_at < %(seen_at)s OR first_seen_at > %(seen_at)s)
    ORDER BY id
    FOR UPDATE
) AS locked
WHERE i.id = locked.id
RETURNING i.id, i.first_seen_at, i.last_seen_at
"""


def _widen_seen(rows: Sequence[Identifier], *, seen_at: datetime) -> None:
    """Move first/last seen out to ``seen_at`` where it lies outside; no query when none does
    (the common case for a batch of events in time order is one UPDATE of the hot rows)."""
    stale = {
        row.pk: row for row in rows if row.last_seen_at < seen_at or row.first_seen_at > seen_at
    }
    if not stale:
        return
    with connection.cursor() as cursor:
        cursor.execute(_WIDEN_SEEN, {"ids": sorted(stale), "seen_at": seen_at})
        for identifier_id, first_seen_at, last_seen_at in cursor.fetchall():
            stale[identifier_id].first_seen_at = first_seen_at
            stale[identifier_id].last_seen_at = last_seen_at
