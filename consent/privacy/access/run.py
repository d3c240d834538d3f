"""Access requests end to end: creation (``access_request``) and the worker's run
(``access_run``), on the shared status machine of ``consent.privacy.requests``.

A run claims the request (pending, or failed with attempts left; ``attempts`` + 1), then in one
transaction locks it again, finds the subject's cluster *now* (through the identifier the
request names, so merges and unmerges since the request count), builds the zip, stores it
encrypted and completes the request with its counts and an ``ACCESS_COMPLETED`` audit entry.
A failure rolls all of that back and marks the request failed (``REQUEST_FAILED``, the error's
class only). A completed request is never built again: a re-run does nothing.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from consent.models import PrivacyRequest, PrivacyRequestKind
from consent.privacy.access.archive import SubjectGone, access_export_write, access_subject
from consent.privacy.access.registry import ExportSubject
from consent.privacy.access.storage import access_export_store
from consent.privacy.requests import (
    privacy_request_complete,
    privacy_request_submit,
    privacy_requests_claim,
    privacy_requests_fail,
    privacy_requests_lock,
)
from identity.models import Identifier

logger = logging.getLogger(__name__)
WORKER_ACTOR = "worker:access"


def access_request(
    *, subject: tuple[str, object], requested_by: str, reason: str = ""
) -> PrivacyRequest:
    """A pending access request about the person ``subject`` (kind, raw value) stands for,
    audited (``ACCESS_REQUESTED``) and enqueued once it commits. ``NotFound`` for an unknown
    identifier."""
    # Imported here: the task module imports this one.
    from consent.tasks import access_enqueue

    return privacy_request_submit(
        kind=PrivacyRequestKind.ACCESS,
        subject=subject,
        requested_by=requested_by,
        reason=reason,
        enqueue=access_enqueue,
    )


def access_run(request_id: uuid.UUID, *, actor: str = WORKER_ACTOR) -> PrivacyRequest | None:
    """Build, store and complete one access request. Returns the completed request, or None
    when there was nothing to do (completed already, held by another worker, out of attempts,
    not an access request). A failure is recorded on the request and raised again."""
    if not privacy_requests_claim(kind=PrivacyRequestKind.ACCESS, limit=1, ids=[request_id]):
        return None
    try:
        with transaction.atomic():
            locked = privacy_requests_lock([request_id])
            if not locked:
                return None
            (request,) = locked
            subject = access_subject_of(request)
            built = access_export_write(subject)
            access_export_store(request=request, content=built.content)
            summary = {
                **built.counts,
                "profiles_merged": max(len(subject.profile_ids) - 1, 0),
                "bytes": len(built.content),
            }
            return privacy_request_complete(request=request, summary=summary, actor=actor)
    except Exception as exc:
        logger.warning("access request %s failed: %s", request_id, type(exc).__name__)
        privacy_requests_fail(ids=[request_id], error=exc, actor=actor)
        raise


def access_subject_of(request: PrivacyRequest) -> ExportSubject:
    """The cluster the request's subject identifier belongs to now; ``SubjectGone`` once that
    identifier no longer exists (the person was erased meanwhile)."""
    identifier = (
        Identifier.objects.filter(
            kind=request.subject_kind, blind_index=bytes(request.subject_blind_index)
        )
        .only("pk", "profile_id")
        .first()
    )
    if identifier is None:
        raise SubjectGone(f"the subject of request {request.pk} no longer exists")
    return access_subject(
        profile_id=identifier.profile_id, identifier_id=identifier.pk, request_id=request.pk
    )
