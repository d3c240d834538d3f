"""Privacy tasks: thin, idempotent (the request rows are the work queue), enqueued on commit."""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.db import OperationalError
from kombu.exceptions import OperationalError as OperationalError_kombu

from cdp.jobs.tasks import RecordedTask
from consent.models import PrivacyRequest, PrivacyRequestKind
from consent.privacy.access.run import access_run
from consent.privacy.access.storage import access_exports_expire
from consent.privacy.erasure import BATCH_SIZE, erasure_run, erasures_run
from consent.privacy.requests import claimable_q
from identity.merging import LockRace

logger = logging.getLogger(__name__)
TRANSIENT = (OperationalError, LockRace)
# Access requests a periodic run picks up (those whose enqueue was lost, failed ones to retry).
PENDING_BATCH = 20


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def access_request_run(request_id: str) -> dict[str, object]:
    """Build one access request's export; a completed request is left as it is."""
    done = access_run(uuid.UUID(request_id))
    return {"request_id": request_id, "completed": done is not None}


def access_enqueue(request_id: uuid.UUID) -> None:
    """After the request committed. A broker that cannot be reached loses nothing: beat's
    periodic run picks the pending request up."""
    try:
        access_request_run.delay(str(request_id))
    except OperationalError_kombu as exc:
        logger.warning("could not enqueue access %s (%s); beat will run it", request_id, exc)


@shared_task(base=RecordedTask)
def access_requests_run_pending() -> int:
    """Beat: run the access requests nothing is working on (pending, failed with attempts
    left, or running with a worker gone quiet); each failure is recorded on its request."""
    ids = list(
        PrivacyRequest.objects.filter(claimable_q(), kind=PrivacyRequestKind.ACCESS)
        .order_by("created_at")
        .values_list("pk", flat=True)[:PENDING_BATCH]
    )
    done = 0
    for request_id in ids:
        try:
            done += access_run(request_id) is not None
        except Exception as exc:  # recorded on the request by access_run
            logger.warning("access request %s failed: %s", request_id, type(exc).__name__)
    return done


@shared_task(base=RecordedTask)
def access_exports_expire_due() -> int:
    """Beat: destroy the keys of access exports past their expiry."""
    return access_exports_expire()


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def erasure_request_run(request_id: str) -> dict[str, object]:
    """Erase for one request; a completed (or another worker's running) request is left alone."""
    return {"request_id": request_id, "completed": erasure_run(uuid.UUID(request_id))}


@shared_task(base=RecordedTask, autoretry_for=TRANSIENT, retry_backoff=True, max_retries=5)
def erasure_requests_run_pending() -> int:
    """Beat: erase for the claimable requests (pending ones whose enqueue was lost, failed ones
    with attempts left, running ones whose worker went quiet), a batch at a time."""
    done = 0
    while completed := erasures_run(batch_size=BATCH_SIZE):
        done += len(completed)
    return done


def erasure_enqueue(request_id: uuid.UUID) -> None:
    """After the request committed. A broker that cannot be reached loses nothing: beat's
    periodic run picks the pending request up."""
    try:
        erasure_request_run.delay(str(request_id))
    except OperationalError_kombu as exc:
        logger.warning("could not enqueue erasure %s (%s); beat will run it", request_id, exc)
