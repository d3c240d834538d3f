"""Reads of segments: definitions and versions, members (now and as of an instant), changes,
a profile's segments, and previews of unsaved definitions.

Everything that hands members out (``members_current``, ``members_as_of``, ``segment_changes``)
takes what ``segments.activation.serving.segment_served`` decided (a too-small segment is
refused, or its fallback served) and filters by consent for its purposes
(``consent.selectors.allowed_q``).
Trait values of PII traits are decrypted only when the caller may reveal them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q, QuerySet
from psycopg import errors as pg_errors

from cdp.api.errors import InvalidInput, NotFound
from cdp.crypto.envelope import decrypt_many_unless_erased
from cdp.ingestion.pii import REDACTED
from consent.purposes import purpose_get
from consent.selectors import allowed_q, allowed_sql
from identity.models import Profile, TraitObservation
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
def members_current(served: Served) -> QuerySet[Membership]:
    """The open stays of the served segment, of people allowed for every purpose of ``served``
    (``segments.activation.serving``), with their profiles' traits: one query per page (order
    by ``profile_id`` to page)."""
    return _members(served).filter(exited_at__isnull=True)


def members_as_of(served: Served, *, at: datetime) -> QuerySet[Membership]:
    """The stays open at the instant ``at`` (entered at or before it, not exited by then), of
    people allowed now."""
    return _members(served).filter(
        Q(entered_at__lte=at) & (Q(exited_at__isnull=True) | Q(exited_at__gt=at))
    )


def _members(served: Served) -> QuerySet[Membership]:
    stays = Membership.objects.filter(
        segment_id=served.segment.pk, profile__merged_into__isnull=True
    )
    for purpose in served.purposes:
        stays = stays.filter(allowed_q(purpose, profile_field="profile_id"))
    return stays.select_related("profile").only(
        "id", "profile_id", "entered_at", "exited_at", "profile__id", "profile__traits"
    )


def member_traits_shown(
    profiles: Sequence[Profile], *, reveal_pii: bool
) -> dict[int, dict[str, Any]]:
    """Trait name -> value for each profile, as a reader may see it: a PII trait's value
    decrypted from its winning observation with ``reveal_pii`` (None once erased), else
    ``"[redacted]"``. No query without ``reveal_pii``; with it, two for the whole page (the
    observations, their data keys), however many profiles."""
    pii_ids = [
        entry["observation_id"]
        for profile in profiles
        for entry in (profile.traits or {}).values()
        if entry.get("pii") and entry.get("observation_id") is not None
    ]
    values = _observation_values(pii_ids) if reveal_pii and pii_ids else {}
    shown: dict[int, dict[str, Any]] = {}
    for profile in profiles:
        traits: dict[str, Any] = {}
        for name, entry in (profile.traits or {}).items():
            if not entry.get("pii"):
                traits[name] = entry.get("value")
            elif reveal_pii:
                traits[name] = values.get(entry.get("observation_id"))
            else:
                traits[name] = REDACTED
        shown[profile.pk] = traits
    return shown


def _observation_values(observation_ids: Iterable[int]) -> dict[int, Any]:
    rows = list(
        TraitObservation.objects.filter(pk__in=set(observation_ids)).values_list(
            "pk", "value", "value_ciphertext"
        )
    )
    sealed = [(pk, ciphertext) for pk, _, ciphertext in rows if ciphertext is not None]
    opened = decrypt_many_unless_erased(
        (ciphertext, TraitObservation.value_aad(pk)) for pk, ciphertext in sealed
    )
    values: dict[int, Any] = {pk: value for pk, value, ciphertext in rows if ciphertext is None}
    for (pk, _), plaintext in zip(sealed, opened, strict=True):
        values[pk] = None if plaintext is None else orjson.loads(plaintext)
    return values


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


_CHANGES = """
SELECT c.at, c.id, c.change, c.profile_id, c.exit_reason FROM (
    SELECT id, profile_id, entered_at AS at, 'entered' AS change, '' AS exit_reason
    FROM segments_membership WHERE segment_id = %s AND entered_at > %s
    UNION ALL
    SELECT id, profile_id, exited_at, 'exited', exit_reason
    FROM segments_membership WHERE segment_id = %s AND exited_at > %s
) AS c
WHERE {allowed} AND (c.at, c.id, c.change) > (%s, %s, %s)
ORDER BY c.at, c.id, c.change
LIMIT %s
"""


def segment_changes(
    served: Served,
    *,
    since: datetime,
    after: tuple[datetime, int, str] | None,
    limit: int,
) -> list[Change]:
    """Entries and exits after ``since``, oldest first (time, then stay id, entered before
    exited), from just after the position ``after`` when given; people allowed now for every
    purpose of ``served`` only. One query (the ``membership_entered`` / ``membership_exited``
    indexes)."""
    gates = [allowed_sql(purpose, profile_column="c.profile_id") for purpose in served.purposes]
    allowed = " AND ".join(sql for sql, _ in gates) or "TRUE"
    allowed_params = [param for _, params in gates for param in params]
    segment_id = served.segment.pk
    after_at, after_id, after_change = after or (since, 0, "")
    params: list[Any] = [
        segment_id,
        since,
        segment_id,
        since,
        *allowed_params,
        after_at,
        after_id,
        after_change,
        limit,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_CHANGES.format(allowed=allowed), params)
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
    with statement_timeout(budget) as cursor:
        rows = _within_budget(
            cursor,
            f"SELECT profile_id, count(*) OVER () FROM ({inner}) AS s "  # noqa: S608
            f"ORDER BY random() LIMIT {PREVIEW_SAMPLE_SIZE}",
            args,
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
        sample = _within_budget(cursor, f"{inner} LIMIT {PREVIEW_SAMPLE_SIZE}", args) or []
        return Preview(size=estimate, method=PLANNER_ESTIMATE, sample=[row[0] for row in sample])


@contextmanager
def statement_timeout(milliseconds: int) -> Iterator[Any]:
    """A cursor in a transaction whose statements are cancelled after ``milliseconds``; the
    previous timeout is restored on the way out: the block may be a savepoint of a longer
    transaction, which a ``SET LOCAL`` alone would outlive (on an error, rolling the savepoint
    back undoes it)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        (previous,) = cursor.fetchone()
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(milliseconds)])
        yield cursor
        cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


def _within_budget(cursor: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]] | None:
    """The rows, or None when the statement timeout cancelled the query (its savepoint rolled
    back, so the transaction goes on)."""
    try:
        with transaction.atomic():
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    except OperationalError as exc:
        if isinstance(exc.__cause__, pg_errors.QueryCanceled):
            return None
        raise
