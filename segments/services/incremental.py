"""Incremental recompute: re-evaluate only the profiles identity marked changed
(``identity.ProfileChange``: every resolver batch, merge and unmerge marks the profiles it
touched, absorbed ones included).

One batch (``segments_refresh_changed``):

1. read up to ``batch_size`` changed profiles, oldest change first (after ``after``, the
   position a run has reached);
2. refresh their computed traits (``segments.metrics``): merged-away profiles lose theirs;
3. for every live segment computed at its current version, in dependency order (a segment after
   the segments it refers to), re-evaluate its compiled query restricted to those profiles and
   write the entries and exits (one statement per segment, in its own transaction under the
   segment's lock). A profile merged away leaves with reason ``merged``; its survivor, marked
   too, is evaluated with its merged events; after an unmerge each side is evaluated alone;
4. record on the ProfileChange rows consumed that segments evaluated them
   (``segments_seen_at``), each only if its ``changed_at`` is still the one read, so a profile
   marked again meanwhile is evaluated again; rows the matcher has also seen are deleted
   (``identity.merging.profile_changes_prune``).

The rows are read without row locks: holding them through the evaluation would block the
resolver's marks of those profiles. One runner works at a time (the task takes a session
advisory lock); two runs at once would only do the same work twice. A segment locked by a full
recompute is skipped and the batch's rows are kept (``deferred``), so the next run evaluates
them again: the full recompute may have read the profiles before they changed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone

from identity.merging import profile_changes_prune
from segments.activation.webhooks import webhook_deliveries_enqueue
from segments.dsl import definition_parse, members_query
from segments.metrics import metrics_refresh
from segments.models import RecomputeRun, Segment
from segments.services.locks import segment_lock_try
from segments.services.memberships import stays_apply
from segments.services.recompute import segments_in_dependency_order, webhooks_active

logger = logging.getLogger(__name__)
# The position of a run in the change queue: (changed_at, profile_id) of the last row read.
Position = tuple[datetime, int]


@dataclass
class IncrementalResult:
    profiles: int = 0  # changed profiles read
    consumed: int = 0  # ProfileChange rows marked evaluated
    segments: int = 0  # segments evaluated
    entered: int = 0
    exited: int = 0
    deferred: list[int] = field(default_factory=list)  # segments skipped: locked
    failed: list[int] = field(default_factory=list)  # segments whose evaluation failed
    position: Position | None = None


def segments_refresh_changed(
    *, batch_size: int, now: datetime | None = None, after: Position | None = None
) -> IncrementalResult:
    """Evaluate one batch of changed profiles against every live segment (module docstring)."""
    now = now or timezone.now()
    result = IncrementalResult()
    changes = _changes_read(batch_size=batch_size, after=after)
    if not changes:
        return result
    result.profiles = len(changes)
    result.position = changes[-1]
    ids = sorted({profile_id for _at, profile_id in changes})
    metrics_refresh(profile_ids=ids, now=now)
    segments = segments_in_dependency_order(
        Segment.objects.filter(deleted_at__isnull=True, computed_version=F("version"))
    )
    for segment in segments:
        try:
            evaluated = _segment_evaluate(segment, profile_ids=ids, now=now, result=result)
        except OperationalError:
            raise  # transient: the task retries the batch
        except Exception as exc:
            # A definition the parser now refuses, a query that fails: the other segments go
            # on (their full recompute records the error; evaluating again would fail again).
            logger.warning("segment %s: incremental failed: %s", segment.pk, type(exc).__name__)
            result.failed.append(segment.pk)
            continue
        if evaluated:
            result.segments += 1
        else:
            result.deferred.append(segment.pk)
    if not result.deferred:
        result.consumed = _changes_seen(changes)
        profile_changes_prune(ids)
    return result


def changes_pending() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM identity_profilechange WHERE {_PENDING})"  # noqa: S608
        )
        return bool(cursor.fetchone()[0])


# Not evaluated by segments since its latest change: spelled as the partial index
# ``profilechange_segments_queue`` is (identity migration 0006), so the planner uses it.
_PENDING = (
    '("segments_seen_at" IS NULL OR NOT ("segments_seen_at" = ("changed_at") '
    'AND "segments_seen_at" IS NOT NULL))'
)


def _changes_read(*, batch_size: int, after: Position | None) -> list[Position]:
    where, params = f"WHERE {_PENDING}", list[Any]()
    if after is not None:
        where += " AND (changed_at, profile_id) > (%s, %s)"
        params = [after[0], after[1]]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT changed_at, profile_id FROM identity_profilechange {where} "  # noqa: S608
            "ORDER BY changed_at, profile_id LIMIT %s",
            [*params, batch_size],
        )
        return [(changed_at, profile_id) for changed_at, profile_id in cursor.fetchall()]


def _changes_seen(changes: Sequence[Position]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE identity_profilechange c SET segments_seen_at = t.changed_at
            FROM unnest(%s::bigint[], %s::timestamptz[]) AS t(profile_id, changed_at)
            WHERE c.profile_id = t.profile_id AND c.changed_at = t.changed_at
            """,
            [[p for _at, p in changes], [at for at, _p in changes]],
        )
        return cursor.rowcount


def _segment_evaluate(
    segment: Segment, *, profile_ids: Sequence[int], now: datetime, result: IncrementalResult
) -> bool:
    """Re-evaluate ``profile_ids`` in one segment; False when its lock is held elsewhere."""
    started = timezone.now()
    with transaction.atomic():
        if not segment_lock_try(segment.pk):
            return False
        # Read again under the lock: a new version or a deletion may have committed since the
        # batch listed the segments (the full recompute of a new version covers every profile).
        fresh = (
            Segment.objects.filter(
                pk=segment.pk, deleted_at__isnull=True, computed_version=F("version")
            )
            .values_list("definition", flat=True)
            .first()
        )
        if fresh is None:
            return True
        query = members_query(definition_parse(fresh), now=now, profile_ids=profile_ids)
        announced = webhooks_active(segment.pk)
        diff = stays_apply(
            segment_id=segment.pk,
            query=query,
            now=now,
            profile_ids=profile_ids,
            with_ids=announced,
        )
        if diff.entered or diff.exited:
            count, version = _count_adjust(segment.pk, diff.entered - diff.exited)
            if announced:
                webhook_deliveries_enqueue(
                    segment_id=segment.pk, entered=diff.entered_ids, exited=diff.exited_ids, at=now
                )
            RecomputeRun.objects.create(
                segment_id=segment.pk,
                kind=RecomputeRun.Kind.INCREMENTAL,
                version=version,
                started_at=started,
                finished_at=timezone.now(),
                evaluated=len(profile_ids),
                entered=diff.entered,
                exited=diff.exited,
                member_count=count,
            )
    result.entered += diff.entered
    result.exited += diff.exited
    return True


def _count_adjust(segment_id: int, delta: int) -> tuple[int, int]:
    """member_count += delta (never below 0: erasure deletes stays without counting them),
    too_small with it; returns the count and the segment's version."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE segments_segment
            SET member_count = GREATEST(member_count + %s, 0),
                too_small = GREATEST(member_count + %s, 0) < min_size
            WHERE id = %s RETURNING member_count, version
            """,
            [delta, delta, segment_id],
        )
        count, version = cursor.fetchone()
    return count, version
