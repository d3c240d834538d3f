"""Writes on data keys: create (wrapped under the newest master key), destroy, re-wrap.

Key granularity is the caller's choice, made by what must be erasable on its own: one data key
per thing that is erased as a whole and never split (an identifier node, a source record). Values
of one person then share nothing with another person, and merging or unmerging profiles never
re-encrypts anything; erasing a person destroys the keys of everything in their component.

Destroying a key wipes its wrapped bytes in the table. Copies of the row in backups, WAL archives
or replicas still hold the wrapped key until they age out; those copies are useless without the
master key that wrapped it, so shredding is complete once the master key in use at the time has
been rotated away (``rotate_keys``, then drop it) and the backups older than the rotation expire.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from cdp.crypto.config import MasterKeyRing, master_key_ring
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.crypto.selectors import data_keys_to_rewrap
from cdp.crypto.wrapping import data_key_unwrap, data_key_wrap
from cdp.ops.bulk import rows_insert
from cdp.ops.sequences import next_ids

DATA_KEY_BYTES = 32
REWRAP_BATCH_SIZE = 500


def data_key_create() -> DataKey:
    (key,) = data_keys_create(count=1)
    return key


@transaction.atomic
def data_keys_create(*, count: int) -> list[DataKey]:
    """``count`` new data keys in one INSERT, wrapped under the newest master key.

    The ids are drawn from the table's sequence first because each wrapped key is bound to its
    row id.
    """
    if count < 0:
        raise ValueError("count must not be negative")
    if count == 0:
        return []
    master_key = master_key_ring().newest
    keys = []
    for data_key_id in next_ids(DataKey._meta.db_table, count):
        raw = os.urandom(DATA_KEY_BYTES)
        keys.append(
            DataKey(
                id=data_key_id,
                wrapped_key=data_key_wrap(raw, data_key_id=data_key_id, master_key=master_key),
                master_key_id=master_key.key_id,
            )
        )
    rows_insert(
        DataKey._meta.db_table,
        {
            "id": ("bigint[]", [key.pk for key in keys]),
            "wrapped_key": ("bytea[]", [key.wrapped_key for key in keys]),
            "master_key_id": ("varchar[]", [key.master_key_id for key in keys]),
            "created_at": ("timestamptz[]", [key.created_at for key in keys]),
        },
    )
    for key in keys:
        key._state.adding = False
        key._state.db = DEFAULT_DB_ALIAS
    return keys


@transaction.atomic
def data_keys_destroy(*, ids: Iterable[int]) -> int:
    """Crypto-shred: wipe the wrapped keys of these data keys. Returns how many were live;
    destroying a destroyed or unknown id is a no-op, so erasure can be retried."""
    id_set = set(ids)
    data_key_cache.forget(id_set)
    # Lock in id order, like master_keys_rewrap, so the two never deadlock.
    live = list(
        DataKey.objects.select_for_update()
        .filter(pk__in=id_set, destroyed_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if live:
        DataKey.objects.filter(pk__in=live).update(wrapped_key=None, destroyed_at=timezone.now())
    # A reader in another thread may have cached a key between forget() and the commit.
    transaction.on_commit(lambda: data_key_cache.forget(live))
    return len(live)


def master_keys_rewrap(
    *, batch_size: int = REWRAP_BATCH_SIZE, progress: Callable[[int], object] | None = None
) -> int:
    """Re-wrap every live data key not under the newest master key, one transaction per batch.

    Nothing stops meanwhile: each row switches from the old wrap to the new in one UPDATE and
    both master keys are configured during a rotation, so readers unwrap either. Safe to run
    twice or concurrently (a row already re-wrapped no longer matches once locked). Returns the
    number of keys re-wrapped; ``progress`` is called with each batch's count.
    """
    ring = master_key_ring()
    done = 0
    after_id = 0
    while rewrapped := _rewrap_batch(ring=ring, after_id=after_id, batch_size=batch_size):
        done += len(rewrapped)
        after_id = rewrapped[-1]
        if progress is not None:
            progress(len(rewrapped))
    return done


@transaction.atomic
def _rewrap_batch(*, ring: MasterKeyRing, after_id: int, batch_size: int) -> list[int]:
    """Re-wrap the next live keys after ``after_id`` not under the newest master key; returns
    their ids (empty at the end)."""
    rows = list(
        data_keys_to_rewrap(newest_master_key_id=ring.newest.key_id)
        .filter(pk__gt=after_id)
        .select_for_update()[:batch_size]
    )
    for row in rows:
        # A live row always has its wrapped key (the table's check constraint).
        wrapped = bytes(row.wrapped_key or b"")
        raw = data_key_unwrap(
            wrapped, data_key_id=row.pk, master_key_id=row.master_key_id, ring=ring
        )
        row.wrapped_key = data_key_wrap(raw, data_key_id=row.pk, master_key=ring.newest)
        row.master_key_id = ring.newest.key_id
    DataKey.objects.bulk_update(rows, ["wrapped_key", "master_key_id"])
    return [row.pk for row in rows]
