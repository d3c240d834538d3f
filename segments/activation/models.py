"""Activation tables: export jobs and their encrypted parts, webhooks and their deliveries.

Imported by ``segments.models`` (so Django registers them in the ``segments`` app).

An export's rows are stored as parts (a few thousand rows each), every part AES-GCM encrypted
under the export's own data key and bound to (export, part number) as associated data, so a
1M-member export is written and downloaded part by part and never held whole in memory. Expiry
destroys the data key (crypto-shredding) and deletes the parts.

A webhook's signing secret must be recoverable to sign, so it is stored encrypted under the
webhook's own data key, never in clear; deleting the webhook destroys that key.

``WebhookDelivery`` is the outbox and the delivery log in one: a row is written in the same
transaction as the membership change it announces, then claimed and sent by the sender task;
every attempt is appended to ``attempt_log`` (time, status code, error class: never a body).
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from cdp.crypto.models import DataKey
from segments.models import Segment

ACTOR_MAX_LENGTH = 200
URL_MAX_LENGTH = 2000


class ExportFormat(models.TextChoices):
    CSV = "csv"
    JSONL = "jsonl"


class ExportStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class SegmentExport(models.Model):
    """One export of a segment's current members (a job, or a record of a streamed download)."""

    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    # The segment whose members were exported: ``segment`` itself, or its fallback when the
    # segment was too small to serve.
    served_segment = models.ForeignKey(
        Segment, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    status = models.CharField(
        max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING
    )
    # True only when the requesting token held pii:read (otherwise PII stays redacted).
    include_pii = models.BooleanField(default=False)
    # Answered synchronously as a streamed download: nothing is stored.
    streamed = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=ACTOR_MAX_LENGTH)
    row_count = models.PositiveBigIntegerField(null=True, blank=True)
    part_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Set on completion; destroyed (and the parts deleted) at expiry.
    data_key = models.ForeignKey(
        DataKey, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    error = models.TextField(blank=True, default="")  # the error's class and ids: never values

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["segment", "-id"], name="segment_export_segment"),
            models.Index(
                fields=["expires_at"],
                condition=models.Q(data_key__isnull=False),
                name="segment_export_expiry",
            ),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} of segment {self.segment_id}"


class SegmentExportPart(models.Model):
    """A run of an export's encoded rows, encrypted (``segments.activation.exports.storage``)."""

    id = models.BigAutoField(primary_key=True)
    export = models.ForeignKey(SegmentExport, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    ciphertext = models.BinaryField()

    class Meta:
        ordering = ["export", "number"]
        constraints = [
            models.UniqueConstraint(fields=["export", "number"], name="segment_export_part_unique")
        ]

    def __str__(self) -> str:
        return f"part {self.number} of export {self.export_id}"


class WebhookEvent(models.TextChoices):
    ENTER = "enter"
    EXIT = "exit"


class Webhook(models.Model):
    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    url = models.CharField(max_length=URL_MAX_LENGTH)
    # The signing secret, AES-GCM under ``data_key`` (destroyed when the webhook is deleted).
    secret_ciphertext = models.BinaryField(editable=False)
    data_key = models.OneToOneField(DataKey, on_delete=models.PROTECT, related_name="+")
    events = ArrayField(models.CharField(max_length=8, choices=WebhookEvent.choices), size=2)
    active = models.BooleanField(default=True)
    created_by = models.CharField(max_length=ACTOR_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["segment"],
                condition=models.Q(active=True, deleted_at__isnull=True),
                name="webhook_active_segment",
            )
        ]

    def __str__(self) -> str:
        return f"webhook {self.pk} of segment {self.segment_id}"

    @staticmethod
    def secret_aad(webhook_id: int) -> bytes:
        return b"segments.webhook:%d:secret" % webhook_id


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # not tried yet
    FAILED = "failed"  # the last attempt failed; another is due at next_attempt_at
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # out of attempts, or its webhook was deleted


class WebhookDelivery(models.Model):
    """One enter / exit notification for one webhook: the outbox row and its delivery log."""

    id = models.BigAutoField(primary_key=True)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="+")
    event_type = models.CharField(max_length=32)  # segment.entered | segment.exited
    profile_id = models.BigIntegerField()
    # Profile id, segment id and name, event, time: no PII.
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True, default="")
    # [{"at", "status_code", "error", "duration_ms"}], one entry per attempt.
    attempt_log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The sender's claim: due rows in time order.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "failed"]),
                name="webhook_delivery_due",
            ),
            models.Index(fields=["webhook", "-id"], name="webhook_delivery_log"),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.event_type}) of webhook {self.webhook_id}"
