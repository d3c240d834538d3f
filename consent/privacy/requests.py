"""Privacy requests (erasure, access): creation and the status machine the workers drive.

A request names its subject by identifier kind and blind index and the profile it belonged to at
request time; never by value. Status moves ``pending -> running -> completed | failed``:

- ``privacy_requests_claim`` picks claimable requests of a kind (pending ones, failed ones with
  attempts left, and running ones whose worker went quiet past ``STALE_AFTER``) with
  ``SKIP LOCKED``, so two workers never take the same request, and marks them running;
- the worker does its work in its own transaction, locking the request rows again
  (``privacy_requests_lock``) and skipping the completed ones, so a request run twice is done
  once;
- ``privacy_request_complete`` / ``privacy_request_fail`` end a run (the error text is the
  exception's class and a message without values, never a traceback).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdp.api.errors import InvalidInput, NotFound
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus
from identity.selectors import identifier_find, profile_current

MAX_ATTEMPTS = 5
# A running request whose worker died is claimable again after this long.
STALE_AFTER = timedelta(minutes=15)
ERROR_MAX = 1000

REQUESTED_ACTIONS = {
    PrivacyRequestKind.ERASURE: AuditAction.ERASURE_REQUESTED,
    PrivacyRequestKind.ACCESS: AuditAction.ACCESS_REQUESTED,
}
COMPLETED_ACTIONS = {
    PrivacyRequestKind.ERASURE: AuditAction.ERASURE_COMPLETED,
    PrivacyRequestKind.ACCESS: AuditAction.ACCESS_COMPLETED,
}
TARGET_TYPE = "privacy_request"


def privacy_request_submit(
    *,
    kind: str,
    subject: tuple[str, object],
    requested_by: str,
    reason: str,
    enqueue: Callable[[uuid.UUID], object],
) -> PrivacyRequest:
    """``privacy_request_create``, then ``enqueue(request id)`` once the request commits (the
    kind's worker task; beat picks up anything whose enqueue was lost)."""
    with transaction.atomic():
        request = privacy_request_create(
            kind=kind, subject=subject, requested_by=requested_by, reason=reason
        )
        request_id = request.pk
        transaction.on_commit(lambda: enqueue(request_id))
    return request


@transaction.atomic
def privacy_request_create(
    *, kind: str, subject: tuple[str, object], requested_by: str, reason: str = ""
) -> PrivacyRequest:
    """A pending request about the person ``subject`` (identifier kind, raw value as sent)
    stands for, with a ``*_REQUESTED`` audit entry. ``NotFound`` when no identifier has that
    value (nothing is created; the message carries no value); ``InvalidInput`` for an unknown
    kind."""
    if kind not in PrivacyRequestKind.values:
        raise InvalidInput("Unknown privacy request kind.", code="invalid_kind", attr="kind")
    subject_kind, raw_value = subject
    try:
        identifier = identifier_find(kind=subject_kind, raw_value=raw_value)
    except ValueError:
        raise InvalidInput("Unknown identifier kind.", code="invalid_kind") from None
    if identifier is None:
        raise NotFound("No identifier has this value.", code="subject_not_found")
    profile_id = None
    if identifier.profile_id is not None:
        profile = profile_current(identifier.profile_id)
        profile_id = profile.pk if profile is not None else identifier.profile_id
    request = PrivacyRequest.objects.create(
        kind=kind,
        subject_kind=identifier.kind,
        subject_blind_index=bytes(identifier.blind_index),
        profile_id=profile_id,
        requested_by=requested_by,
        reason=reason,
    )
    audit_record(
        actor=requested_by,
        action=REQUESTED_ACTIONS[PrivacyRequestKind(kind)],
        target_type=TARGET_TYPE,
        target_id=request.pk,
        details={
            "subject_kind": identifier.kind,
            "identifier_id": identifier.pk,
            "profile_id": profile_id,
            "reason": reason,
        },
    )
    return request


def claimable_q(*, now: Any = None) -> Q:
    now = now or timezone.now()
    return (
        Q(status=PrivacyRequestStatus.PENDING)
        | Q(status=PrivacyRequestStatus.FAILED, attempts__lt=MAX_ATTEMPTS)
        | Q(status=PrivacyRequestStatus.RUNNING, started_at__lt=now - STALE_AFTER)
    )


@transaction.atomic
def privacy_requests_claim(
    *, kind: str, limit: int, ids: Iterable[uuid.UUID] | None = None
) -> list[PrivacyRequest]:
    """Mark up to ``limit`` claimable requests of ``kind`` running (oldest first, ``attempts``
    + 1) and return them; requests another worker holds are skipped. ``ids`` narrows the claim
    to those requests (a task enqueued for one request)."""
    now = timezone.now()
    rows = PrivacyRequest.objects.filter(claimable_q(now=now), kind=kind)
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    claimed = list(
        rows.order_by("created_at").select_for_update(skip_locked=True, of=("self",))[:limit]
    )
    for request in claimed:
        request.status = PrivacyRequestStatus.RUNNING
        request.started_at = now
        request.attempts += 1
        request.error = ""
    PrivacyRequest.objects.bulk_update(claimed, ["status", "started_at", "attempts", "error"])
    return claimed


def privacy_requests_lock(ids: Sequence[uuid.UUID]) -> list[PrivacyRequest]:
    """Inside the worker's transaction: lock these requests (in id order) and return those not
    completed yet. A request another run is working on is waited for, then seen completed."""
    return [
        request
        for request in PrivacyRequest.objects.filter(pk__in=list(ids))
        .order_by("pk")
        .select_for_update(of=("self",))
        if request.status != PrivacyRequestStatus.COMPLETED
    ]


def privacy_request_complete(
    *, request: PrivacyRequest, summary: Mapping[str, Any], actor: str
) -> PrivacyRequest:
    """Inside the worker's transaction: completed, with its summary counts and a
    ``*_COMPLETED`` audit entry carrying them."""
    request.status = PrivacyRequestStatus.COMPLETED
    request.completed_at = timezone.now()
    request.summary = dict(summary)
    request.error = ""
    request.save(update_fields=["status", "completed_at", "summary", "error"])
    audit_record(
        actor=actor,
        action=COMPLETED_ACTIONS[PrivacyRequestKind(request.kind)],
        target_type=TARGET_TYPE,
        target_id=request.pk,
        details={"profile_id": request.profile_id, "attempts": request.attempts, **summary},
    )
    return request


@transaction.atomic
def privacy_requests_fail(*, ids: Sequence[uuid.UUID], error: BaseException, actor: str) -> int:
    """After a run's transaction rolled back: mark these requests failed (unless completed)
    with the error's class name only (messages may quote data) and a ``REQUEST_FAILED`` audit
    entry each. Returns how many were marked."""
    text = type(error).__name__[:ERROR_MAX]
    rows = list(
        PrivacyRequest.objects.filter(pk__in=list(ids))
        .exclude(status=PrivacyRequestStatus.COMPLETED)
        .order_by("pk")
        .select_for_update(of=("self",))
    )
    for request in rows:
        request.status = PrivacyRequestStatus.FAILED
        request.error = text
        request.save(update_fields=["status", "error"])
        audit_record(
            actor=actor,
            action=AuditAction.REQUEST_FAILED,
            target_type=TARGET_TYPE,
            target_id=request.pk,
            details={"kind": request.kind, "attempts": request.attempts, "error": text},
        )
    return len(rows)
