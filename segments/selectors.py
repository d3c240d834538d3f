"""Reads of segments: definitions and versions, members (now and as of an instant), changes,
a profile's segments, and previews of unsaved definitions.

Everything that hands members out (``members_page``, ``segment_changes``)
takes what ``segments.activation.serving.segment_served`` decided (a too-small segment is
refused, or its fallback served) and filters by consent for its purposes
(``consent.selectors.allowed_q``).
Trait values of PII traits are decrypted only when the caller may reveal them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from psycopg import errors as pg_errors

from cdp.api.errors import InvalidInput, NotFound
from cdp.ingestion.pii import REDACTED
from consent.purposes import purpose_get
from consent.selectors import allowed_sql, allowed_status_sql
from identity.selectors import observation_values
from segments.activation.serving import Served
from segments.dsl import definition_parse, members_query
from segments.models import Membership, Segment, SegmentVersion

PREVIEW_SAMPLE_SIZE = 20


# --- definitions ------------------------------------------------------------------------------
def segments_live() -> QuerySet[Segment]:
    return Segment.objects.filter(deleted_at__isnull=True)


def segment_get(segment_id: int) -> Segment:
    """A live (not deleted) segment, or ``NotFound``."""
    segment = segments_live().filter(pk=segment_id).first()
    if segment is None:
        raise NotFound(f"No segment {segment_id}.", code="segment_not_found")
    return segment


def segment_is_live(segment_id: int) -> bool:
    """For ``definition_parse(segment_exists=...)``: references name live segments only."""
    return segments_live().filter(pk=segment_id).exists()


def purpose_check(purpose: str) -> None:
    """``InvalidInput`` (``unknown_purpose``) unless ``purpose`` is configured."""
    try:
        purpose_get(purpose)
    except LookupError as exc:
        raise InvalidInput(str(exc), code="unknown_purpose", attr="purpose") from None


def segment_versions(segment_id: int) -> QuerySet[SegmentVersion]:
    """Every definition the segment has had (order them: the API pages them by id)."""
    return SegmentVersion.objects.filter(segment_id=segment_id)


# --- members ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Member:
    profile_id: int
    entered_at: datetime
    traits: dict[str, Any]  # Profile.traits as stored (see member_traits_shown)


# One row per stay in profile order, each profile and consent state looked up by key. The
# LATERAL ... LIMIT 1 subqueries keep those lookups per row: as plain joins or EXISTS, the
# planner merges or hashes them against the whole profile and consent tables, and a page deep
# in a large segment then reads everything before it (measured: 100+ ms instead of ~1 ms).
_MEMBERS = """
SELECT m.profile_id, m.entered_at, p.traits
FROM segments_membership AS m
CROSS JOIN LATERAL (
    SELECT traits FROM identity_profile
    WHERE id = m.profile_id AND merged_into_id IS NULL LIMIT 1
) AS p
{consent_joins}
WHERE m.segment_id = %s AND {stays} AND m.profile_id > %s {consent_tests}
ORDER BY m.profile_id
LIMIT %s
"""
_CONSENT_JOIN = """LEFT JOIN LATERAL (
    SELECT status FROM consent_consentstate
    WHERE profile_id = m.profile_id AND purpose = %s LIMIT 1
) AS {alias} ON TRUE"""


@dataclass(frozen=True)
class _ConsentGate:
    """Consent for every purpose of ``served``, tested per row over ``m.profile_id`` (LATERAL
    joins of the states, then ``consent.selectors.allowed_status_sql``'s test of each)."""

    joins: str
    join_params: list[Any]
    tests: str
    test_params: list[Any]

    @classmethod
    def of(cls, served: Served) -> _ConsentGate:
        joins, tests, test_params = [], [], []
        for index, purpose in enumerate(served.purposes):
            alias = f"c{index}"
            joins.append(_CONSENT_JOIN.format(alias=alias))
            test, params = allowed_status_sql(purpose, status_column=f"{alias}.status")
            tests.append(f"AND {test}")
            test_params.extend(params)
        return cls(
            joins="\n".join(joins),
            join_params=list(served.purposes),
            tests=" ".join(tests),
            test_params=test_params,
        )


def members_page(
    served: Served, *, after: int | None, limit: int, as_of: datetime | None = None
) -> list[Member]:
    """Up to ``limit`` members of the served segment after profile id ``after``, by profile id:
    its open stays (with ``as_of``: the stays open at that instant, entered at or before it and
    not exited by then) of current profiles allowed now for every purpose of ``served``
    (``segments.activation.serving``, ``_ConsentGate``). One query, its cost independent of the
    page's depth."""
    gate = _ConsentGate.of(served)
    if as_of is None:
        stays, stay_params = "m.exited_at IS NULL", []
    else:
        stays = "m.entered_at <= %s AND (m.exited_at IS NULL OR m.exited_at > %s)"
        stay_params = [as_of, as_of]
    sql = _MEMBERS.format(consent_joins=gate.joins, stays=stays, consent_tests=gate.tests)
    params: list[Any] = [
        *gate.join_params,
        served.segment.pk,
        *stay_params,
        after or 0,
        *gate.test_params,
        limit,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            Member(profile_id=profile_id, entered_at=entered_at, traits=_json(traits))
            for profile_id, entered_at, traits in cursor.fetchall()
        ]


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str | bytes):
        loaded: dict[str, Any] = orjson.loads(value)
        return loaded
    return value or {}


def member_traits_shown(
    members: Sequence[Member], *, reveal_pii: bool
) -> dict[int, dict[str, Any]]:
    """Trait name -> value for each member's profile, as a reader may see it: a PII trait's
    value decrypted from its winning observation with ``reveal_pii`` (None once erased), else
    ``"[redacted]"``. No query without ``reveal_pii``; with it, two for the whole page (the
    observations, their data keys), however many members."""
    pii_ids = [
        entry["observation_id"]
        for member in members
        for entry in member.traits.values()
        if entry.get("pii") and entry.get("observation_id") is not None
    ]
    values = observation_values(pii_ids) if reveal_pii and pii_ids else {}
    shown: dict[int, dict[str, Any]] = {}
    for member in members:
        traits: dict[str, Any] = {}
        for name, entry in member.traits.items():
            if not entry.get("pii"):
                traits[name] = entry.get("value")
            elif reveal_pii:
                traits[name] = values.get(entry.get("observation_id"))
            else:
                traits[name] = REDACTED
        shown[member.profile_id] = traits
    return shown


# --- changes ----------------------------------------------------------------------------------
ENTERED = "entered"
EXITED = "exited"


@dataclass(frozen=True)
class Change:
    at: datetime
    membership_id: int
    change: str  # ENTERED | EXITED
    profile_id: int
    exit_reason: str

    @property
    def position(self) -> tuple[datetime, int, str]:
        return (self.at, self.membership_id, self.change)


# Each branch walks its index (segment, entered_at | exited_at, id) from the position on,
# consent looked up per row, and stops at the page size; the two short lists are then merged.
# The position is one ``>=`` row comparison (an index bound whose estimate, taken from its first
# column, stays "many rows" even among ties) and the excluded stay id, not a strict row
# comparison: the planner estimates that one as "no rows" within a tie and sorts the segment.
_CHANGES_BRANCH = """(
    SELECT m.{column} AS at, m.id, '{change}'::text AS change, m.profile_id,
           {reason} AS exit_reason
    FROM segments_membership AS m
    {consent_joins}
    WHERE m.segment_id = %s AND m.{column} > %s AND (m.{column}, m.id) >= (%s, %s)
      AND m.id <> %s {consent_tests}
    ORDER BY m.{column}, m.id
    LIMIT %s
)"""
# Position (at, stay, change): a branch's own row at (at, stay) comes after it only when its
# change sorts after the position's ("" < "entered" < "exited").
_BRANCHES = (
    ("entered_at", ENTERED, "''::text"),
    ("exited_at", EXITED, "m.exit_reason"),
)


def segment_changes(
    served: Served,
    *,
    since: datetime,
    after: tuple[datetime, int, str] | None,
    limit: int,
) -> list[Change]:
    """Entries and exits after ``since``, oldest first (time, then stay id, entered before
    exited), from just after the position ``after`` when given; people allowed now for every
    purpose of ``served`` only. One query: two index range scans of at most ``limit`` rows
    (``membership_entered`` / ``membership_exited``), however deep the page."""
    gate = _ConsentGate.of(served)
    at, stay_id, change = after or (since, 0, "")
    branches, params = [], []
    for column, name, reason in _BRANCHES:
        branches.append(
            _CHANGES_BRANCH.format(
                column=column,
                change=name,
                reason=reason,
                consent_joins=gate.joins,
                consent_tests=gate.tests,
            )
        )
        excluded = stay_id if name <= change else 0
        params += [*gate.join_params, served.segment.pk, since, at, stay_id, excluded]
        params += [*gate.test_params, limit]
    sql = (
        "SELECT c.at, c.id, c.change, c.profile_id, c.exit_reason FROM ("  # noqa: S608
        f"{branches[0]} UNION ALL {branches[1]}) AS c ORDER BY c.at, c.id, c.change LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, limit])
        return [Change(*row) for row in cursor.fetchall()]


# --- a profile's segments ---------------------------------------------------------------------
def profile_segments(profile_id: int, *, history: bool) -> QuerySet[Membership]:
    """A (current) profile's open stays in live segments, with every past stay too when
    ``history``; each with its segment (one query per page; order them: the API pages by id)."""
    stays = Membership.objects.filter(
        profile_id=profile_id, segment__deleted_at__isnull=True
    ).select_related("segment")
    if not history:
        stays = stays.filter(exited_at__isnull=True)
    return stays


# --- preview ----------------------------------------------------------------------------------
EXACT = "exact"
PLANNER_ESTIMATE = "planner_estimate"


@dataclass(frozen=True)
class Preview:
    size: int
    method: str  # EXACT | PLANNER_ESTIMATE
    sample: list[int]  # up to PREVIEW_SAMPLE_SIZE profile ids


def segment_preview(doc: object, *, purpose: str | None, now: datetime) -> Preview:
    """How many people the definition ``doc`` matches now (allowed for ``purpose`` when given) and a
    random sample of their profile ids, reading only.

    The compiled query is counted exactly, with the sample drawn in the same pass, under the
    ``PREVIEW_BUDGET_MS`` statement timeout. ``DefinitionError`` / ``InvalidInput`` first, for an
    invalid definition or an unknown purpose. When it runs out, the size is PostgreSQL's planner
    estimate of the query's rows (EXPLAIN, statistics only, never run) and the sample is the
    first matches found within a second budget (possibly fewer, possibly none, not random)."""
    if purpose is not None:
        purpose_check(purpose)
    definition = definition_parse(doc, segment_exists=segment_is_live)
    sql, params = members_query(definition, now=now)
    where, where_params = "TRUE", list[object]()
    if purpose is not None:
        where, where_params = allowed_sql(purpose, profile_column="m.profile_id")
    inner = f"SELECT m.profile_id FROM ({sql}) AS m WHERE {where}"  # noqa: S608 (compiled)
    args: list[Any] = [*params, *where_params]
    budget = int(settings.CDP_SEGMENTS["PREVIEW_BUDGET_MS"])
    with transaction.atomic(), connection.cursor() as cursor:
        rows = rows_within(
            cursor,
            f"SELECT profile_id, count(*) OVER () FROM ({inner}) AS s "  # noqa: S608
            f"ORDER BY random() LIMIT {PREVIEW_SAMPLE_SIZE}",
            args,
            milliseconds=budget,
        )
        if rows is not None:
            return Preview(
                size=rows[0][1] if rows else 0, method=EXACT, sample=[row[0] for row in rows]
            )
        cursor.execute(f"EXPLAIN (FORMAT JSON) {inner}", args)
        (plan,) = cursor.fetchone()
        if isinstance(plan, str | bytes):
            plan = orjson.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        sample = rows_within(
            cursor, f"{inner} LIMIT {PREVIEW_SAMPLE_SIZE}", args, milliseconds=budget
        )
        return Preview(
            size=estimate, method=PLANNER_ESTIMATE, sample=[row[0] for row in sample or []]
        )


def rows_within(
    cursor: Any, sql: str, params: list[Any], *, milliseconds: int
) -> list[tuple[Any, ...]] | None:
    """The query's rows, or None when it ran longer than ``milliseconds`` and was cancelled.
    It runs in a savepoint that is rolled back either way (the query only reads): that also
    undoes its ``SET LOCAL statement_timeout``, so no later statement of the transaction runs
    under the budget. Call it inside a transaction."""
    savepoint = transaction.savepoint()
    try:
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
        cursor.execute(sql, params)
        rows = list(cursor.fetchall())
    except OperationalError as exc:
        transaction.savepoint_rollback(savepoint)
        if isinstance(exc.__cause__, pg_errors.QueryCanceled):
            return None
        raise
    transaction.savepoint_rollback(savepoint)
    return rows
