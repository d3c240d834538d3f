"""Segment exports: the request (streamed at once for a small segment, an async job for a
large one), the job's run, its encrypted storage, the download and expiry.

A job's file is stored as parts (``SegmentExportPart``): each batch of rows is encoded and
encrypted with AES-GCM under the export's own data key (the approach of access exports,
``consent.privacy.access.storage``), bound to (export id, part number) as associated data, so a
part copied elsewhere does not decrypt. The file can be downloaded until ``expires_at``
(``EXPORT_DAYS`` after completion); then ``segment_exports_expire`` (beat, hourly) destroys the
key and deletes the parts, and any copy left in a backup is unreadable.

A job re-run after a failure starts again from nothing (its parts are rewritten in the run's
transaction); a completed job is never built again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cdp.api.errors import ApplicationError, Conflict, NotFound
from cdp.crypto.envelope import decrypt_bytes, encrypt_bytes
from cdp.crypto.errors import KeyDestroyed
from cdp.crypto.models import DataKey
from cdp.crypto.services import data_key_create, data_keys_destroy
from segments.activation.config import activation_config
from segments.activation.models import ExportStatus, SegmentExport, SegmentExportPart
from segments.activation.rows import (
    export_encode,
    export_header,
    export_row_batches,
    row_shape,
)
from segments.activation.serving import segment_get_live, segment_served
from segments.models import Segment

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 3
EXPIRE_BATCH_SIZE = 100
# A running job whose worker went quiet this long is taken again.
STALE_AFTER = timedelta(hours=1)


def part_aad(export_id: int, number: int) -> bytes:
    return b"segments.segmentexport:%d:part:%d" % (export_id, number)


@dataclass(frozen=True)
class ExportRequested:
    export: SegmentExport
    # For a streamed export: the file's bytes, produced while the response is sent.
    stream: Iterator[bytes] | None


def segment_export_request(
    *, segment: Segment, export_format: str, include_pii: bool, requested_by: str
) -> ExportRequested:
    """Refuse a too-small segment without a fallback (``Conflict`` ``segment_too_small``);
    else stream the served segment's rows now when it has at most ``EXPORT_SYNC_MAX_ROWS``
    members, or create a pending job enqueued on commit. ``include_pii`` must already be
    reduced to what the caller may see (the view checks pii:read)."""
    from segments.activation.tasks import segment_export_enqueue  # the task imports this module

    served = segment_served(segment)
    config = activation_config()
    streamed = served.segment.member_count <= config.export_sync_max_rows
    with transaction.atomic():
        export = SegmentExport.objects.create(
            segment=segment,
            served_segment=served.segment,
            format=export_format,
            include_pii=include_pii,
            streamed=streamed,
            requested_by=requested_by,
            status=ExportStatus.RUNNING if streamed else ExportStatus.PENDING,
            started_at=timezone.now() if streamed else None,
        )
        if not streamed:
            export_id = export.pk
            transaction.on_commit(lambda: segment_export_enqueue(export_id))
    if not streamed:
        return ExportRequested(export=export, stream=None)
    return ExportRequested(export=export, stream=_streamed(export))


def _streamed(export: SegmentExport) -> Iterator[bytes]:
    """The file of a streamed export, batch by batch; the row count is recorded at its end (a
    client that hangs up early leaves it unset and the export ``running``)."""
    served = segment_served(export.segment)
    shape = row_shape(served, include_pii=export.include_pii)
    yield export_header(export.format, shape=shape)
    count = 0
    for rows in export_row_batches(
        served, shape=shape, batch_size=activation_config().export_batch_size
    ):
        count += len(rows)
        yield export_encode(rows, export.format, shape=shape)
    SegmentExport.objects.filter(pk=export.pk).update(
        status=ExportStatus.COMPLETED, row_count=count, completed_at=timezone.now()
    )


# --- the async job --------------------------------------------------------------------------------
def _claimable(now: datetime) -> Q:
    return (
        Q(status=ExportStatus.PENDING)
        | Q(status=ExportStatus.FAILED, attempts__lt=MAX_ATTEMPTS)
        | Q(
            status=ExportStatus.RUNNING, attempts__lt=MAX_ATTEMPTS, started_at__lt=now - STALE_AFTER
        )
    )


def _claim(export_id: int, *, now: datetime) -> bool:
    return bool(
        SegmentExport.objects.filter(_claimable(now), pk=export_id, streamed=False).update(
            status=ExportStatus.RUNNING,
            started_at=now,
            attempts=F("attempts") + 1,
            error="",
        )
    )


def segment_export_run(export_id: int, *, now: datetime | None = None) -> SegmentExport | None:
    """Build one job: claim it, then in one transaction write its encrypted parts and complete
    it. None when there was nothing to do (completed, running elsewhere, out of attempts). A
    failure is recorded on the job (the error's class) and raised again."""
    now = now or timezone.now()
    if not _claim(export_id, now=now):
        return None
    try:
        with transaction.atomic():
            export = SegmentExport.objects.select_for_update().get(pk=export_id)
            return _build(export, now=now)
    except Exception as exc:
        logger.warning("segment export %s failed: %s", export_id, type(exc).__name__)
        failed = SegmentExport.objects.filter(pk=export_id)
        if isinstance(exc, ApplicationError):  # too small, deleted: a retry would fail alike
            failed.update(status=ExportStatus.FAILED, error=_describe(exc), attempts=MAX_ATTEMPTS)
        else:
            failed.update(status=ExportStatus.FAILED, error=_describe(exc))
        raise


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return type(exc).__name__ + (f": {code}" if isinstance(code, str) else "")


def _build(export: SegmentExport, *, now: datetime) -> SegmentExport:
    config = activation_config()
    served = segment_served(segment_get_live(export.segment_id))
    shape = row_shape(served, include_pii=export.include_pii)
    SegmentExportPart.objects.filter(export_id=export.pk).delete()
    key = data_key_create()
    pending = export_header(export.format, shape=shape)
    number = rows = 0
    for batch in export_row_batches(served, shape=shape, batch_size=config.export_batch_size):
        pending += export_encode(batch, export.format, shape=shape)
        _part_write(export, key=key, number=number, rows=len(batch), content=pending)
        number, rows, pending = number + 1, rows + len(batch), b""
    if pending or number == 0:
        _part_write(export, key=key, number=number, rows=0, content=pending)
        number += 1
    export.served_segment = served.segment
    export.data_key = key
    export.row_count = rows
    export.part_count = number
    export.status = ExportStatus.COMPLETED
    export.completed_at = timezone.now()
    export.expires_at = export.completed_at + timedelta(days=config.export_days)
    export.save()
    return export


def _part_write(
    export: SegmentExport, *, key: DataKey, number: int, rows: int, content: bytes
) -> None:
    SegmentExportPart.objects.create(
        export=export,
        number=number,
        rows=rows,
        ciphertext=encrypt_bytes(content, key=key, aad=part_aad(export.pk, number)),
    )


# --- download and expiry --------------------------------------------------------------------------
def export_available(export: SegmentExport, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return (
        export.status == ExportStatus.COMPLETED
        and not export.streamed
        and export.data_key is not None
        and export.data_key.destroyed_at is None
        and export.expires_at is not None
        and export.expires_at > now
    )


def segment_export_get(export_id: int) -> SegmentExport:
    export = (
        SegmentExport.objects.select_related("segment", "data_key").filter(pk=export_id).first()
    )
    if export is None or export.segment.deleted_at is not None:
        raise NotFound("No such export.", code="export_not_found")
    return export


def segment_export_open(export: SegmentExport) -> Iterator[bytes]:
    """The decrypted file of a completed job, part by part (one part in memory at a time).
    ``Conflict`` while it is not completed, ``NotFound`` once expired or streamed (nothing was
    stored). Check before streaming: the first part is decrypted here."""
    if export.status != ExportStatus.COMPLETED:
        raise Conflict(
            f"The export is {export.status}: its file is not ready.", code="export_not_ready"
        )
    if not export_available(export):
        raise NotFound("The export's file has expired or was never stored.", code="export_gone")
    numbers = list(
        SegmentExportPart.objects.filter(export_id=export.pk)
        .order_by("number")
        .values_list("number", flat=True)
    )
    if len(numbers) != export.part_count:
        raise NotFound("The export's file has expired.", code="export_gone")
    try:
        first = _part_read(export.pk, numbers[0]) if numbers else b""
    except KeyDestroyed:
        raise NotFound("The export's file has expired.", code="export_gone") from None
    return _parts(export.pk, first, numbers[1:])


def _parts(export_id: int, first: bytes, numbers: list[int]) -> Iterator[bytes]:
    yield first
    for number in numbers:
        yield _part_read(export_id, number)


def _part_read(export_id: int, number: int) -> bytes:
    ciphertext = SegmentExportPart.objects.values_list("ciphertext", flat=True).get(
        export_id=export_id, number=number
    )
    return decrypt_bytes(ciphertext, aad=part_aad(export_id, number))


def segment_exports_expire(*, now: datetime | None = None) -> int:
    """Destroy the keys of job files past expiry and delete their parts, a batch per
    transaction; safe to run concurrently and again. Returns how many files were destroyed."""
    now = now or timezone.now()
    done = 0
    while expired := _expire_batch(now=now):
        done += expired
    return done


@transaction.atomic
def _expire_batch(*, now: datetime) -> int:
    rows = list(
        SegmentExport.objects.filter(
            expires_at__lte=now,
            data_key__isnull=False,
            data_key__destroyed_at__isnull=True,
        )
        .order_by("pk")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("pk", "data_key_id")[:EXPIRE_BATCH_SIZE]
    )
    if not rows:
        return 0
    data_keys_destroy(ids=[key_id for _, key_id in rows])
    SegmentExportPart.objects.filter(export_id__in=[pk for pk, _ in rows]).delete()
    return len(rows)


def segment_exports_pending(*, limit: int = 20, now: datetime | None = None) -> list[int]:
    """Jobs nothing is working on: pending ones whose enqueue was lost, failed ones with
    attempts left, running ones gone quiet (beat runs them)."""
    return list(
        SegmentExport.objects.filter(_claimable(now or timezone.now()), streamed=False)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
