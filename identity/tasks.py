"""Resolver tasks: thin, idempotent (the work queue is the database), enqueued on commit."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError as OperationalError_kombu

from cdp.jobs.tasks import RecordedTask
from identity.services.resolution import TRANSIENT, ResolveResult, resolve_batch

logger = logging.getLogger(__name__)
SCHEDULED_KEY = "identity:resolve-scheduled"
# One run drains the queue for at most this long, then hands over to the next run, so one
# worker is never occupied for ever under sustained ingestion.
RUN_SECONDS = 30.0


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=8)
def resolve_pending_events() -> dict[str, int]:
    """Resolve stored events and records until none is pending (or ``RUN_SECONDS`` pass)."""
    # Cleared first: data stored while this run works schedules the next run.
    cache.delete(SCHEDULED_KEY)
    total = ResolveResult()
    deadline = time.monotonic() + RUN_SECONDS
    batch_size = settings.CDP_RESOLVER["BATCH_SIZE"]
    while time.monotonic() < deadline:
        result = resolve_batch(batch_size=batch_size)
        total.add(result)
        if result.empty:
            break
        _segments_refresh_schedule()
    else:
        resolution_schedule()
    return {name: getattr(total, name) for name in total.__dataclass_fields__}


def _segments_refresh_schedule() -> None:
    """The batch marked profiles changed: have the segments re-evaluate them (debounced)."""
    from segments.tasks import segments_refresh_schedule  # segments depends on identity

    segments_refresh_schedule()


def resolution_schedule() -> None:
    """Enqueue a resolver run unless one is already waiting (at most one per second): ingestion
    calls this after every commit, and thousands of requests a second must not become
    thousands of tasks. A broker that cannot be reached loses nothing: the data is stored, and
    beat's periodic run resolves it."""
    config = settings.CDP_RESOLVER
    if not config["ENQUEUE_ON_INGEST"] or not cache.add(SCHEDULED_KEY, 1, timeout=1):
        return
    options = {"queue": config["QUEUE"]} if config["QUEUE"] else {}
    try:
        resolve_pending_events.apply_async(**options)
    except OperationalError_kombu as exc:
        logger.warning(
            "could not enqueue a resolver run (%s); beat will run one", type(exc).__name__
        )


# The matcher's tasks live with it; imported here so Celery's autodiscovery registers them.
from identity.matching.tasks import match_all_profiles, match_changed_profiles  # noqa: E402

__all__ = [
    "match_all_profiles",
    "match_changed_profiles",
    "resolution_schedule",
    "resolve_pending_events",
]
