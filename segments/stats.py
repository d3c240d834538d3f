"""Does a segment behave differently? Members against everyone else (current, unmerged
profiles), each split by whether they did an event within a window: a 2x2 table counted in one
SQL query, conversion rates, and Pearson's chi-square test of independence
(``scipy.stats.chi2_contingency``, with Yates' continuity correction as for any 2x2 table).

The chi-square approximation needs expected counts of at least 5 in every cell; under that the
result carries a note and Fisher's exact test's p-value beside it. A table with an empty row or
column (nobody did the event, or the segment is everyone) has no test: the p-value is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from rest_framework import status
from scipy.stats import chi2_contingency, fisher_exact

from cdp.api.errors import ApplicationError
from cdp.ingestion.models import Event
from identity.models import Identifier, Profile
from segments.models import Membership
from segments.selectors import rows_within

MIN_EXPECTED = 5


class StatsTimeout(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "stats_timeout"


_TABLE = f"""
SELECT
    count(*) FILTER (WHERE m.profile_id IS NOT NULL AND d.profile_id IS NOT NULL),
    count(*) FILTER (WHERE m.profile_id IS NOT NULL AND d.profile_id IS NULL),
    count(*) FILTER (WHERE m.profile_id IS NULL AND d.profile_id IS NOT NULL),
    count(*) FILTER (WHERE m.profile_id IS NULL AND d.profile_id IS NULL)
FROM {Profile._meta.db_table} AS p
LEFT JOIN (
    SELECT DISTINCT profile_id FROM {Membership._meta.db_table}
    WHERE segment_id = %s AND exited_at IS NULL
) AS m ON m.profile_id = p.id
LEFT JOIN (
    SELECT DISTINCT i.profile_id
    FROM {Event._meta.db_table} AS e JOIN {Identifier._meta.db_table} AS i ON i.id = e.identifier_id
    WHERE e.identifier_id IS NOT NULL AND e.event_name = %s
      AND e.timestamp >= %s AND e.timestamp < %s
) AS d ON d.profile_id = p.id
WHERE p.merged_into_id IS NULL
"""  # noqa: S608 (table names from the models)


@dataclass(frozen=True)
class Group:
    did: int
    did_not: int

    @property
    def total(self) -> int:
        return self.did + self.did_not

    @property
    def rate(self) -> float | None:
        return self.did / self.total if self.total else None


@dataclass(frozen=True)
class ChiSquare:
    statistic: float | None
    p_value: float | None
    dof: int
    expected: list[list[float]] | None
    fisher_p_value: float | None  # given when an expected count is under MIN_EXPECTED


@dataclass(frozen=True)
class EventStats:
    segment_id: int
    event: str
    since: datetime
    until: datetime
    members: Group
    rest: Group
    test: ChiSquare
    note: str | None


def segment_event_stats(
    *, segment_id: int, event: str, window: timedelta, now: datetime
) -> EventStats:
    """The segment's current members against the rest, by whether they did ``event`` in
    ``[now - window, now)``. One query for the counts (under ``STATS_TIMEOUT_MS``)."""
    since = now - window
    with transaction.atomic(), connection.cursor() as cursor:
        rows = rows_within(
            cursor,
            _TABLE,
            [segment_id, event, since, now],
            milliseconds=int(settings.CDP_SEGMENTS["STATS_TIMEOUT_MS"]),
        )
    if rows is None:
        raise StatsTimeout(
            "Counting took longer than CDP_SEGMENTS_STATS_TIMEOUT_MS; try a shorter window.",
            code="stats_timeout",
        )
    ((member_did, member_not, rest_did, rest_not),) = rows
    members, rest = Group(member_did, member_not), Group(rest_did, rest_not)
    test, note = chi_square(members, rest)
    return EventStats(
        segment_id=segment_id,
        event=event,
        since=since,
        until=now,
        members=members,
        rest=rest,
        test=test,
        note=note,
    )


def chi_square(members: Group, rest: Group) -> tuple[ChiSquare, str | None]:
    table = [[members.did, members.did_not], [rest.did, rest.did_not]]
    if 0 in (members.total, rest.total, members.did + rest.did, members.did_not + rest.did_not):
        return (
            ChiSquare(statistic=None, p_value=None, dof=1, expected=None, fisher_p_value=None),
            "No test: a row or column of the table is empty (no members, no one else, nobody "
            "who did the event, or nobody who did not).",
        )
    result = chi2_contingency(table, correction=True)
    expected = [[float(cell) for cell in row] for row in result.expected_freq]
    low = min(min(row) for row in expected) < MIN_EXPECTED
    fisher = float(fisher_exact(table).pvalue) if low else None
    note = (
        f"An expected count is under {MIN_EXPECTED}: the chi-square approximation is unreliable; "
        "fisher_p_value is Fisher's exact test on the same table."
        if low
        else None
    )
    return (
        ChiSquare(
            statistic=float(result.statistic),
            p_value=float(result.pvalue),
            dof=int(result.dof),
            expected=expected,
            fisher_p_value=fisher,
        ),
        note,
    )
