"""Segments tasks: the recompute (incremental after resolution, scheduled for time windows and
new versions, full on demand and on beat, RFM) and, imported here so Celery's autodiscovery
registers them, the activation tasks (exports, webhook sender). Thin: ids in, services do the
work; idempotent; transient database errors retried with backoff; every run is a JobRun."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerError

from cdp.jobs.tasks import RecordedTask
from segments.activation.tasks import (  # noqa: F401 (registered by import)
    segment_export_build,
    segment_exports_expire_due,
    segment_exports_run_pending,
    webhook_deliveries_send_due,
)
from segments.metrics import metrics_rebuild, metrics_rfm_recompute
from segments.models import Segment
from segments.services.incremental import Position, changes_pending, segments_refresh_changed
from segments.services.locks import incremental_lock_release, incremental_lock_try
from segments.services.recompute import (
    RecomputeOutcome,
    segment_recompute,
    segments_recompute,
    segments_recompute_scheduled,
)

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError,)
REFRESH_SCHEDULED_KEY = "segments:refresh-scheduled"
# One incremental run drains the change queue for at most this long, then hands over.
RUN_SECONDS = 30.0
# A recompute asked for while another runs on an older version is retried this many times.
SKIPPED_RETRIES = 6


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=8)
def segments_refresh_changed_run() -> dict[str, int]:
    """Evaluate the changed profiles (identity's ProfileChange) until none is left or
    ``RUN_SECONDS`` pass. One runner at a time: a run that finds another working returns."""
    cache.delete(REFRESH_SCHEDULED_KEY)  # marks after this point schedule the next run
    if not incremental_lock_try():
        return {"skipped": 1}
    totals = {"profiles": 0, "consumed": 0, "entered": 0, "exited": 0, "deferred": 0}
    try:
        deadline = time.monotonic() + RUN_SECONDS
        position: Position | None = None
        batch_size = settings.CDP_SEGMENTS["INCREMENTAL_BATCH_SIZE"]
        while time.monotonic() < deadline:
            result = segments_refresh_changed(batch_size=batch_size, after=position)
            if not result.profiles:
                break
            position = result.position
            for name in ("profiles", "consumed", "entered", "exited"):
                totals[name] += getattr(result, name)
            totals["deferred"] += len(result.deferred)
        else:
            segments_refresh_schedule()
    finally:
        incremental_lock_release()
    if not totals["deferred"] and changes_pending():
        # Marked after the last read, while the enqueue of its run found this one working.
        segments_refresh_schedule()
    return totals


def segments_refresh_schedule() -> None:
    """Enqueue an incremental run unless one was enqueued in the last second (the resolver
    calls this after every batch that marked profiles). A lost message loses nothing: the
    changes stay queued and beat runs one every ``INCREMENTAL_PERIOD_SECONDS``."""
    if not settings.CDP_SEGMENTS["ENQUEUE_ON_RESOLVE"]:
        return
    if not cache.add(REFRESH_SCHEDULED_KEY, 1, timeout=1):
        return
    try:
        segments_refresh_changed_run.apply_async(**_queue())
    except BrokerError as exc:
        logger.warning("could not enqueue a segments run (%s); beat will run one", exc)


@shared_task(
    bind=True, base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=8
)
def segment_recompute_full(self: RecordedTask, segment_id: int) -> dict[str, object]:
    """Recompute one segment fully (the API's recompute, a new version). When another
    recompute holds the segment and the segment is not computed at its current version yet,
    retried later: the running one may be computing the previous version."""
    outcome = segment_recompute(segment_id=segment_id)
    if outcome.skipped and _stale(segment_id) and self.request.retries < SKIPPED_RETRIES:
        raise self.retry(countdown=2 ** (self.request.retries + 1), max_retries=SKIPPED_RETRIES)
    return _outcome(outcome)


def segment_recompute_enqueue(segment_id: int) -> None:
    """After a commit that created a segment or gave it a new version (or asked for it). A
    lost message is caught by the scheduled run (it recomputes stale versions)."""
    try:
        segment_recompute_full.apply_async(args=(segment_id,), **_queue())
    except BrokerError as exc:
        logger.warning("could not enqueue segment %s (%s); beat will run it", segment_id, exc)


def _queue() -> dict[str, Any]:
    queue = settings.CDP_SEGMENTS["QUEUE"]
    return {"queue": queue} if queue else {}  # none: the default queue


def _stale(segment_id: int) -> bool:
    segment = Segment.objects.filter(pk=segment_id, deleted_at__isnull=True).first()
    return segment is not None and segment.computed_version != segment.version


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def segments_recompute_scheduled_run() -> dict[str, object]:
    """Beat: time-dependent segments, stale versions, deleted segments with open stays."""
    return _summary(segments_recompute_scheduled())


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def segments_recompute_all() -> dict[str, object]:
    """Beat: every live segment fully, in dependency order."""
    return _summary(segments_recompute())


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def segments_rfm_recompute() -> int:
    """Beat: RFM quintile scores over every profile with orders."""
    return metrics_rfm_recompute()


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def segments_metrics_rebuild() -> dict[str, int]:
    """Recount every profile's computed traits (a repair; ``recompute_segments --metrics``)."""
    result = metrics_rebuild()
    return {"upserted": result.upserted, "deleted": result.deleted}


def _outcome(outcome: RecomputeOutcome) -> dict[str, object]:
    return {
        "segment_id": outcome.segment_id,
        "skipped": outcome.skipped,
        "entered": outcome.entered,
        "exited": outcome.exited,
        "member_count": outcome.member_count,
        "error": outcome.error,
    }


def _summary(outcomes: list[RecomputeOutcome]) -> dict[str, object]:
    return {
        "segments": len(outcomes),
        "skipped": sum(o.skipped for o in outcomes),
        "failed": [o.segment_id for o in outcomes if o.error],
        "entered": sum(o.entered for o in outcomes),
        "exited": sum(o.exited for o in outcomes),
    }
