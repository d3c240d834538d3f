"""An access export at rest: AES-GCM encrypted under a data key of its own, in the request row.

The zip holds the person's PII in clear, so it is never stored as it is: ``access_export_store``
encrypts it under a fresh data key (wrapped by the master key like every other, re-wrapped by
``rotate_keys``) into ``PrivacyRequest.export_ciphertext``, bound to the request's id as
associated data. It can be downloaded until ``export_expires_at``
(``CDP_CONSENT["ACCESS_EXPORT_DAYS"]`` after completion); then ``access_exports_expire`` (beat,
hourly) destroys the data key and clears the ciphertext, so any copy of it left in a backup or
replica is unreadable too. A download after the expiry time is refused even before beat ran.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cdp.api.errors import Conflict, NotFound
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.crypto.envelope import decrypt_bytes, encrypt_bytes
from cdp.crypto.errors import KeyDestroyed
from cdp.crypto.services import data_key_create, data_keys_destroy
from cdp.ops.bulk import bound_cursor
from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus

TARGET_TYPE = "privacy_request"
EXPIRE_BATCH_SIZE = 100


def export_aad(request_id: uuid.UUID) -> bytes:
    return b"consent.privacyrequest:%s:export" % str(request_id).encode()


def export_filename(request: PrivacyRequest) -> str:
    return f"access-export-{request.pk}.zip"


def access_export_store(*, request: PrivacyRequest, content: bytes) -> PrivacyRequest:
    """Inside the worker's transaction: encrypt ``content`` under a new data key into the
    request, downloadable for ``ACCESS_EXPORT_DAYS``.

    The person's profile is locked in share mode first: an erasure running meanwhile holds it
    (and deletes it), so an export built from what was read before the erasure committed is
    refused (``NotFound``) instead of outliving the person."""
    if request.profile_id is not None:  # (a subject not resolved yet has no profile)
        with bound_cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM identity_profile WHERE id = %s FOR SHARE", [request.profile_id]
            )
            if cursor.fetchone() is None:
                raise NotFound("The person was erased while the export was built.", code="erased")
    key = data_key_create()
    request.export_ciphertext = encrypt_bytes(content, key=key, aad=export_aad(request.pk))
    request.export_data_key = key
    request.export_expires_at = timezone.now() + timedelta(
        days=settings.CDP_CONSENT["ACCESS_EXPORT_DAYS"]
    )
    request.save(update_fields=["export_ciphertext", "export_data_key", "export_expires_at"])
    return request


def export_available(request: PrivacyRequest, *, now: datetime | None = None) -> bool:
    """Whether a completed access request's export can still be downloaded."""
    now = now or timezone.now()
    return (
        request.kind == PrivacyRequestKind.ACCESS
        and request.status == PrivacyRequestStatus.COMPLETED
        and request.export_data_key_id is not None
        and request.export_expires_at is not None
        and request.export_expires_at > now
    )


@dataclass(frozen=True)
class OpenedExport:
    request: PrivacyRequest
    filename: str
    content: bytes


@transaction.atomic
def access_export_open(*, request_id: uuid.UUID, actor: str) -> OpenedExport:
    """The decrypted export of a completed access request, with an ``ACCESS_DOWNLOADED`` audit
    entry (size only). ``NotFound`` for an unknown request, an erasure request, or an export
    past its expiry (or whose key was destroyed); ``Conflict`` while it is not completed."""
    request = PrivacyRequest.objects.filter(pk=request_id, kind=PrivacyRequestKind.ACCESS).first()
    if request is None:
        raise NotFound("No such access request.", code="request_not_found")
    if request.status != PrivacyRequestStatus.COMPLETED:
        raise Conflict(
            f"The access request is {request.status}: its export is not ready.",
            code="export_not_ready",
        )
    gone = NotFound("The export has expired and was destroyed.", code="export_expired")
    if not export_available(request) or request.export_ciphertext is None:
        raise gone
    try:
        content = decrypt_bytes(request.export_ciphertext, aad=export_aad(request.pk))
    except KeyDestroyed:
        raise gone from None
    audit_record(
        actor=actor,
        action=AuditAction.ACCESS_DOWNLOADED,
        target_type=TARGET_TYPE,
        target_id=request.pk,
        details={"profile_id": request.profile_id, "bytes": len(content)},
    )
    return OpenedExport(request=request, filename=export_filename(request), content=content)


def access_exports_expire(*, now: datetime | None = None) -> int:
    """Destroy the data keys of exports past their expiry and clear their ciphertexts, a batch
    per transaction; returns how many exports were destroyed. Safe to run concurrently (rows
    another run holds are skipped) and again (done rows no longer match)."""
    now = now or timezone.now()
    done = 0
    while expired := _expire_batch(now=now):
        done += expired
    return done


@transaction.atomic
def _expire_batch(*, now: datetime) -> int:
    rows = list(
        PrivacyRequest.objects.filter(
            kind=PrivacyRequestKind.ACCESS,
            export_expires_at__lte=now,
            export_ciphertext__isnull=False,
        )
        .order_by("pk")
        .select_for_update(skip_locked=True)
        .values_list("pk", "export_data_key_id")[:EXPIRE_BATCH_SIZE]
    )
    if not rows:
        return 0
    data_keys_destroy(ids=[key_id for _, key_id in rows if key_id is not None])
    PrivacyRequest.objects.filter(pk__in=[pk for pk, _ in rows]).update(export_ciphertext=None)
    return len(rows)
