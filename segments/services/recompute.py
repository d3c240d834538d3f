"""Full and scheduled recomputes: one segment's compiled query against all profiles, diffed
with its open stays (``memberships.stays_apply``), in one transaction under the segment's
advisory lock; the segment's ``member_count`` / ``too_small`` / ``computed_at`` /
``computed_version`` and a ``RecomputeRun`` are written with it.

- ``segment_recompute``: one segment (the API's POST .../recompute, the per-segment task,
  ``manage.py recompute_segments``). A deleted segment has its open stays closed (``deleted``).
  A caller that finds the segment locked skips it: the recompute running now is as fresh.
- ``segments_recompute``: several (all live ones by default) in dependency order, a segment
  after the segments its definition refers to.
- ``segments_recompute_scheduled``: the time-dependent segments (people leave "active in the
  last 7 days" on day 8 without an event), those not computed at their current version yet, the
  segments referring to either, and deleted segments with open stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from graphlib import CycleError, TopologicalSorter

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from segments.activation.models import Webhook
from segments.activation.webhooks import webhook_deliveries_enqueue
from segments.dsl import Definition, definition_parse, members_query
from segments.models import Membership, RecomputeRun, Segment
from segments.services.locks import segment_lock_try
from segments.services.memberships import StaysDiff, stays_apply, stays_close

logger = logging.getLogger(__name__)
Kind = RecomputeRun.Kind


@dataclass(frozen=True)
class RecomputeOutcome:
    segment_id: int
    kind: str
    skipped: bool = False  # another recompute of the segment held its lock
    entered: int = 0
    exited: int = 0
    member_count: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    error: str = ""


def segment_recompute(
    *, segment_id: int, kind: str = Kind.FULL, now: datetime | None = None
) -> RecomputeOutcome:
    """Recompute one segment fully. Idempotent: a second run with nothing changed writes no
    stay (only its run and ``computed_at``). A failure is recorded as a run with ``error`` and
    raised again."""
    now = now or timezone.now()
    started, clock = timezone.now(), time.monotonic()
    try:
        with transaction.atomic():
            if not segment_lock_try(segment_id):
                return RecomputeOutcome(segment_id=segment_id, kind=kind, skipped=True)
            segment = Segment.objects.get(pk=segment_id)
            diff, count = _recompute_locked(segment, now=now)
            run = RecomputeRun.objects.create(
                segment_id=segment_id,
                kind=kind,
                version=segment.version,
                started_at=started,
                finished_at=timezone.now(),
                entered=diff.entered,
                exited=diff.exited,
                member_count=count,
            )
    except Exception as exc:
        _failure_record(segment_id, kind=kind, started=started, exc=exc)
        raise
    return RecomputeOutcome(
        segment_id=segment_id,
        kind=kind,
        entered=diff.entered,
        exited=diff.exited,
        member_count=count,
        seconds=time.monotonic() - clock,
        run_id=run.pk,
    )


def _recompute_locked(segment: Segment, *, now: datetime) -> tuple[StaysDiff, int]:
    if segment.deleted_at is not None:
        closed = stays_close(segment_id=segment.pk, reason=Membership.ExitReason.DELETED, now=now)
        Segment.objects.filter(pk=segment.pk).update(member_count=0, too_small=True)
        return StaysDiff(matched=0, entered=0, exited=closed), 0
    definition = definition_parse(segment.definition)
    announced = webhooks_active(segment.pk)
    query = members_query(definition, now=now)
    diff = stays_apply(segment_id=segment.pk, query=query, now=now, with_ids=announced)
    # The segment row is written with an UPDATE, not save(): a definition edited meanwhile
    # (a new version) keeps its fields, and computed_version says which version this was.
    Segment.objects.filter(pk=segment.pk).update(
        member_count=diff.matched,
        too_small=diff.matched < segment.min_size,
        computed_at=now,
        computed_version=segment.version,
        time_dependent=definition.time_dependent,
    )
    if announced:
        webhook_deliveries_enqueue(
            segment_id=segment.pk, entered=diff.entered_ids, exited=diff.exited_ids, at=now
        )
    return diff, diff.matched


def webhooks_active(segment_id: int) -> bool:
    """Whether entries and exits of the segment are announced (the diff then returns ids)."""
    return Webhook.objects.filter(
        segment_id=segment_id, active=True, deleted_at__isnull=True
    ).exists()


def _failure_record(segment_id: int, *, kind: str, started: datetime, exc: BaseException) -> None:
    if connection.in_atomic_block and connection.needs_rollback:
        return  # inside a caller's broken transaction: the caller sees the exception
    error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        segment = Segment.objects.filter(pk=segment_id).only("version").first()
        if segment is not None:
            RecomputeRun.objects.create(
                segment_id=segment_id,
                kind=kind,
                version=segment.version,
                started_at=started,
                finished_at=timezone.now(),
                error=error,
            )
    except DatabaseError:
        logger.warning("could not record the failed recompute of segment %s", segment_id)


# --- several segments -------------------------------------------------------------------------
def segments_in_dependency_order(segments: Iterable[Segment]) -> list[Segment]:
    """Each segment after the segments its definition refers to (among those given); a
    definition that no longer parses goes last (its recompute records the error)."""
    by_id = {segment.pk: segment for segment in segments}
    graph: dict[int, set[int]] = {}
    broken: list[int] = []
    for segment_id, segment in by_id.items():
        refs = _refs(segment)
        if refs is None:
            broken.append(segment_id)
        else:
            graph[segment_id] = {ref for ref in refs if ref in by_id and ref != segment_id}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError:  # refused when saved; never loop on one that slipped through
        logger.warning("segment references form a cycle; recomputing in id order")
        order = sorted(graph)
    return [by_id[segment_id] for segment_id in [*order, *sorted(broken)]]


def _refs(segment: Segment) -> frozenset[int] | None:
    try:
        parsed: Definition = definition_parse(segment.definition)
    except Exception:  # a stored definition the current parser refuses
        return None
    return parsed.segment_refs


def segments_recompute(
    *,
    segment_ids: Sequence[int] | None = None,
    kind: str = Kind.FULL,
    now: datetime | None = None,
) -> list[RecomputeOutcome]:
    """Recompute these segments (every live one by default) in dependency order; one failing
    segment is recorded and the others still run."""
    query = Segment.objects.all()
    query = (
        query.filter(pk__in=segment_ids)
        if segment_ids is not None
        else query.filter(deleted_at__isnull=True)
    )
    return _run_each(segments_in_dependency_order(query), kind=kind, now=now)


def _run_each(
    segments: Sequence[Segment], *, kind: str, now: datetime | None
) -> list[RecomputeOutcome]:
    outcomes = []
    for segment in segments:
        try:
            outcomes.append(segment_recompute(segment_id=segment.pk, kind=kind, now=now))
        except Exception as exc:  # recorded as the segment's failed run; the others go on
            logger.warning("recompute of segment %s failed: %s", segment.pk, type(exc).__name__)
            outcomes.append(
                RecomputeOutcome(
                    segment_id=segment.pk, kind=kind, error=f"{type(exc).__name__}: {exc}"[:200]
                )
            )
    return outcomes


def segments_recompute_scheduled(*, now: datetime | None = None) -> list[RecomputeOutcome]:
    """Re-evaluate what the clock or a new version changed (see the module's docstring)."""
    live = list(Segment.objects.filter(deleted_at__isnull=True))
    due = {
        s.pk
        for s in live
        if s.time_dependent or s.computed_version is None or s.computed_version != s.version
    }
    due |= _referring_transitively(live, due)
    ordered = [s for s in segments_in_dependency_order(live) if s.pk in due]
    deleted_open = list(
        Segment.objects.filter(deleted_at__isnull=False)
        .filter(pk__in=Membership.objects.filter(exited_at__isnull=True).values("segment_id"))
        .order_by("pk")
    )
    return _run_each([*ordered, *deleted_open], kind=Kind.SCHEDULED, now=now)


def _referring_transitively(segments: Sequence[Segment], targets: set[int]) -> set[int]:
    found: set[int] = set()
    frontier = set(targets)
    refs = {s.pk: _refs(s) or frozenset() for s in segments}
    while frontier:
        new = {pk for pk, r in refs.items() if r & frontier and pk not in found | targets}
        found |= new
        frontier = new
    return found
