"""One recompute per segment at a time: PostgreSQL advisory locks, held until the transaction
ends (``pg_*_advisory_xact_lock``), so a crashed worker never leaves one behind.

A full or scheduled recompute that finds its segment locked skips it (another worker is
recomputing it now, from data at least as fresh); the incremental run skips it too and keeps
its changed profiles queued, so they are evaluated again once the lock is free. Writers that
must not be skipped (a segment's deletion) wait with ``segment_lock_wait``.

Order: this lock before the segment's row lock, always (recomputes take it, then update the
row), so a writer holding the row never waits for a recompute waiting for the row.
"""

from __future__ import annotations

from django.db import connection

# The first key of every segments advisory lock (two-int form): no other lock in cdp collides.
SEGMENT_NAMESPACE = 0x5E6
# The single incremental run (a session lock: it spans one transaction per batch).
INCREMENTAL_KEY = 0


def _key(segment_id: int) -> int:
    # int4 second key; segment ids past 2**31 would share keys, which only serializes them.
    return (segment_id & 0x7FFFFFFF) or 0x7FFFFFFF


def segment_lock_try(segment_id: int) -> bool:
    """Take the segment's recompute lock for the current transaction, or return False now."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s, %s)", [SEGMENT_NAMESPACE, _key(segment_id)]
        )
        return bool(cursor.fetchone()[0])


def segment_lock_wait(segment_id: int) -> None:
    """Take the segment's recompute lock for the current transaction, waiting for it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [SEGMENT_NAMESPACE, _key(segment_id)]
        )


def incremental_lock_try() -> bool:
    """The incremental runner's session lock (one runner at a time): True when taken."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [SEGMENT_NAMESPACE, INCREMENTAL_KEY])
        return bool(cursor.fetchone()[0])


def incremental_lock_release() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SEGMENT_NAMESPACE, INCREMENTAL_KEY])
