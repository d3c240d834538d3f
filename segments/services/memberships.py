"""Membership interval writes: the diff between a segment's compiled query and its open stays,
applied set-based in one statement (new stays for those who entered, ``exited_at`` for those who
left), and the closing of a deleted segment's stays.

Callers hold the segment's recompute lock (``segments.services.locks``). A stay that ends
because its profile was merged into another ends with reason ``merged`` (the survivor is
evaluated on its own and gets a stay of its own when it matches); every other end of a current
profile's stay is ``rule``. Erased profiles' stays are deleted with them (their foreign key:
``consent.privacy.shredding``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from segments.metrics import jit_off
from segments.models import Membership

# The compiled query's profiles go to a temporary table first, with a primary key and fresh
# statistics: the diff's anti-joins then never run as nested loops over a scan (a planner
# estimate of a few rows for a query returning a million made that take minutes). One table per
# connection, emptied by TRUNCATE (no dead rows: temporary tables are not vacuumed).
_MATCHED_CREATE = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS segments_matched (profile_id bigint PRIMARY KEY)"
)
# {restrict}: the profile filter of an incremental evaluation. Exit and entry touch disjoint
# profiles, so the two writes of one statement never meet on a row. The stay never ends before
# it began (a ``now`` in the past).
_DIFF = """
WITH exited AS (
    UPDATE segments_membership m
    SET exited_at = GREATEST(%s::timestamptz, m.entered_at),
        exit_reason = CASE WHEN p.merged_into_id IS NULL THEN %s ELSE %s END
    FROM identity_profile p
    WHERE p.id = m.profile_id AND m.segment_id = %s AND m.exited_at IS NULL {restrict}
      AND NOT EXISTS (SELECT 1 FROM segments_matched q WHERE q.profile_id = m.profile_id)
    RETURNING m.profile_id
),
entered AS (
    INSERT INTO segments_membership (segment_id, profile_id, entered_at, exited_at, exit_reason)
    SELECT %s, q.profile_id, %s::timestamptz, NULL, '' FROM segments_matched q
    WHERE NOT EXISTS (SELECT 1 FROM segments_membership o
                      WHERE o.segment_id = %s AND o.profile_id = q.profile_id
                        AND o.exited_at IS NULL)
    ON CONFLICT (segment_id, profile_id) WHERE exited_at IS NULL DO NOTHING
    RETURNING profile_id
)
SELECT {entered}, {exited}
"""
_COUNTS = ("(SELECT count(*) FROM entered)", "(SELECT count(*) FROM exited)")
_IDS = (
    "(SELECT coalesce(array_agg(profile_id ORDER BY profile_id), '{}'::bigint[]) FROM entered)",
    "(SELECT coalesce(array_agg(profile_id ORDER BY profile_id), '{}'::bigint[]) FROM exited)",
)


@dataclass(frozen=True)
class StaysDiff:
    matched: int  # profiles the query returned (members now, among those evaluated)
    entered: int
    exited: int
    # The profiles themselves, when asked for (webhooks announce them).
    entered_ids: tuple[int, ...] = ()
    exited_ids: tuple[int, ...] = ()


def stays_apply(
    *,
    segment_id: int,
    query: tuple[str, list[object]],
    now: datetime,
    profile_ids: Sequence[int] | None = None,
    with_ids: bool = False,
) -> StaysDiff:
    """Make the open stays of the segment (among ``profile_ids`` when given) equal to what the
    compiled ``query`` (restricted to the same profiles) returns: the query's profiles into a
    temporary table, then one statement for the exits and entries. With
    ``with_ids`` the profiles that entered and exited are returned too."""
    matched_sql, matched_params = query
    restrict, restrict_params = "", list[Any]()
    if profile_ids is not None:
        restrict, restrict_params = "AND m.profile_id = ANY(%s::bigint[])", [list(profile_ids)]
    entered_sql, exited_sql = _IDS if with_ids else _COUNTS
    sql = _DIFF.format(restrict=restrict, entered=entered_sql, exited=exited_sql)
    params: list[Any] = [
        now,
        Membership.ExitReason.RULE.value,
        Membership.ExitReason.MERGED.value,
        segment_id,
        *restrict_params,
        segment_id,
        now,
        segment_id,
    ]
    with connection.cursor() as cursor:
        jit_off(cursor)
        matched = _matched_fill(cursor, matched_sql, matched_params)
        cursor.execute(sql, params)
        entered, exited = cursor.fetchone()
        cursor.execute("TRUNCATE segments_matched")
    if not with_ids:
        return StaysDiff(matched=matched, entered=entered, exited=exited)
    return StaysDiff(
        matched=matched,
        entered=len(entered),
        exited=len(exited),
        entered_ids=tuple(entered),
        exited_ids=tuple(exited),
    )


def _matched_fill(cursor: Any, sql: str, params: Sequence[Any]) -> int:
    cursor.execute(_MATCHED_CREATE)
    cursor.execute("TRUNCATE segments_matched")
    cursor.execute(
        f"INSERT INTO segments_matched (profile_id) {sql} ON CONFLICT DO NOTHING",
        list(params),
    )
    matched = cursor.rowcount
    cursor.execute("ANALYZE segments_matched")
    return matched


def stays_close(*, segment_id: int, reason: Membership.ExitReason, now: datetime) -> int:
    """End every open stay of the segment (a deleted segment: ``deleted``); returns how many."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE segments_membership SET exited_at = GREATEST(%s::timestamptz, entered_at),
                                           exit_reason = %s
            WHERE segment_id = %s AND exited_at IS NULL
            """,
            [now, reason.value, segment_id],
        )
        return cursor.rowcount
