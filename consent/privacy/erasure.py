"""Erasure by crypto-shredding: a person's whole identity cluster, gone for good.

``erasure_request`` records a pending request (``ERASURE_REQUESTED``) and enqueues the worker
on commit. The worker (``erasures_run``: the Celery task, beat's catch-up run, or a direct call)
claims pending requests in batches and erases each batch in one transaction
(``consent.privacy.shredding``):

1. lock the subjects' components (``identity.merging``'s protocol, retried on ``LockRace``), so
   no resolver batch attaches anything to them meanwhile;
2. record a ``Suppression`` (kind, blind index) for every identifier of the components;
3. destroy every identifier's data key: identifier values, event and record PII and trait
   observation values are unreadable from then on, in backups and replicas too;
4. delete the events anchored on the identifiers (and the unresolved ones naming their ids),
   the CRM records behind their ``external`` identifiers, trait observations, consent entries
   and states, edges, merge ledger entries, profile changes, resolution failures, the profiles
   (merged-away ones too) and the identifiers;
5. mark the requests completed with their counts (``ERASURE_COMPLETED``).

A crash anywhere rolls the batch back, the request is marked failed (attempt counted) and the
next run does it all again; a completed request is never run twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from django.db import OperationalError, transaction

from consent.models import PrivacyRequest, PrivacyRequestKind
from consent.privacy.requests import (
    privacy_request_complete,
    privacy_request_submit,
    privacy_requests_claim,
    privacy_requests_fail,
    privacy_requests_lock,
)
from consent.privacy.shredding import scope_erase, scope_lock
from identity.merging import LockRace

logger = logging.getLogger(__name__)

ERASURE_ACTOR = "erasure"
BATCH_SIZE = 1000
MAX_LOCK_ATTEMPTS = 8
# Worth retrying as they are: the database went away, a lock race lost too often, a deadlock.
TRANSIENT = (OperationalError, LockRace)


def erasure_request(
    *, subject: tuple[str, object], requested_by: str, reason: str = ""
) -> PrivacyRequest:
    """A pending erasure request for the person ``subject`` (kind, raw value) stands for, with
    the worker enqueued once it commits. ``NotFound`` for an unknown identifier."""
    return privacy_request_submit(
        kind=PrivacyRequestKind.ERASURE,
        subject=subject,
        requested_by=requested_by,
        reason=reason,
        enqueue=_enqueue,
    )


def _enqueue(request_id: uuid.UUID) -> None:
    from consent.tasks import erasure_enqueue  # the task module imports this one

    erasure_enqueue(request_id)


def erasures_run(
    *, ids: Sequence[uuid.UUID] | None = None, batch_size: int = BATCH_SIZE
) -> list[uuid.UUID]:
    """Claim up to ``batch_size`` claimable erasure requests (only ``ids``, when given) and
    erase them in one transaction; returns the ids completed. When the batch fails, its
    requests are tried one by one, so one bad request fails alone. Transient errors propagate
    (the requests stay claimable) for the task to retry."""
    claimed = privacy_requests_claim(kind=PrivacyRequestKind.ERASURE, limit=batch_size, ids=ids)
    if not claimed:
        return []
    claimed_ids = [request.pk for request in claimed]
    try:
        return _erase(claimed_ids)
    except TRANSIENT as exc:
        privacy_requests_fail(ids=claimed_ids, error=exc, actor=ERASURE_ACTOR)
        raise
    except Exception as exc:
        if len(claimed_ids) == 1:
            logger.error("erasure request %s failed (%s)", claimed_ids[0], type(exc).__name__)
            privacy_requests_fail(ids=claimed_ids, error=exc, actor=ERASURE_ACTOR)
            return []
        logger.warning("erasure batch of %d failed (%s)", len(claimed_ids), type(exc).__name__)
    return [done for request_id in claimed_ids for done in _erase_alone(request_id)]


def erasure_run(request_id: uuid.UUID) -> bool:
    """Run one request now (if claimable); whether it completed in this call."""
    return request_id in erasures_run(ids=[request_id], batch_size=1)


def _erase_alone(request_id: uuid.UUID) -> list[uuid.UUID]:
    try:
        return _erase([request_id])
    except Exception as exc:
        # The class only: a database error's message can quote values of the row.
        logger.error("erasure request %s failed (%s)", request_id, type(exc).__name__)
        privacy_requests_fail(ids=[request_id], error=exc, actor=ERASURE_ACTOR)
        if isinstance(exc, TRANSIENT):
            raise
        return []


def _erase(ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    for attempt in range(MAX_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                return _erase_locked(ids)
        except LockRace:
            logger.info("erasure raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"erasure lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _erase_locked(ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    requests = privacy_requests_lock(ids)  # completed ones (another run's) drop out here
    if not requests:
        return []
    scope = scope_lock(requests)
    summaries = scope_erase(scope, requests)
    for request in requests:
        privacy_request_complete(
            request=request, summary=dict(summaries[request.pk]), actor=ERASURE_ACTOR
        )
    logger.info(
        "erased %d requests: %d identifiers, %d profiles",
        len(requests),
        len(scope.owner),
        len(scope.profiles),
    )
    return [request.pk for request in requests]
