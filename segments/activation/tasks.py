"""Activation tasks (registered through ``segments.tasks``): thin, idempotent, recorded."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError
from kombu.exceptions import OperationalError as BrokerError

from cdp.jobs.tasks import RecordedTask
from segments.activation.exports import (
    segment_export_run,
    segment_exports_expire,
    segment_exports_pending,
)
from segments.activation.sender import webhook_deliveries_send

logger = logging.getLogger(__name__)


@shared_task(
    base=RecordedTask, autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5
)
def segment_export_build(export_id: int) -> dict[str, object]:
    """Build one export job; a completed (or another worker's running) job is left alone."""
    export = segment_export_run(export_id)
    return {"export_id": export_id, "completed": export is not None}


@shared_task(base=RecordedTask)
def segment_exports_run_pending() -> int:
    """Beat: build the jobs whose enqueue was lost, failed ones with attempts left and stalled
    ones; each failure is recorded on its job."""
    done = 0
    for export_id in segment_exports_pending():
        try:
            done += segment_export_run(export_id) is not None
        except Exception as exc:  # recorded on the job by segment_export_run
            logger.warning("segment export %s failed: %s", export_id, type(exc).__name__)
    return done


@shared_task(base=RecordedTask)
def segment_exports_expire_due() -> int:
    """Beat: destroy the keys of export files past their expiry and delete their parts."""
    return segment_exports_expire()


@shared_task(base=RecordedTask)
def webhook_deliveries_send_due() -> int:
    """Beat (and kicked after each enqueue): send the due webhook deliveries."""
    return webhook_deliveries_send()


def webhook_deliveries_kick() -> None:
    """After an enqueue committed. A lost kick loses nothing: beat sends the rows."""
    try:
        webhook_deliveries_send_due.delay()
    except BrokerError as exc:
        logger.warning("could not enqueue the webhook sender (%s); beat will run it", exc)


def segment_export_enqueue(export_id: int) -> None:
    try:
        segment_export_build.delay(export_id)
    except BrokerError as exc:
        logger.warning("could not enqueue export %s (%s); beat will run it", export_id, exc)
