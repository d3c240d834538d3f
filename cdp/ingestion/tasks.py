"""Periodic maintenance of the ingestion tables (scheduled by Celery beat)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from cdp.ingestion import services
from cdp.jobs.tasks import RecordedTask

_TRANSIENT = (OperationalError,)


@shared_task(
    base=RecordedTask,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def ensure_event_partitions(months_ahead: int | None = None) -> int:
    """Create the coming months' event partitions (``CDP_PARTITION_MONTHS_AHEAD`` unless given);
    returns how many were created."""
    return services.event_partitions_ensure(months_ahead=months_ahead)


@shared_task(
    base=RecordedTask,
    autoretry_for=_TRANSIENT,
    retry_backoff=True,
    max_retries=5,
)
def prune_message_ids() -> int:
    """Forget messageIds older than the deduplication window; returns how many rows went."""
    return services.message_ids_prune()
