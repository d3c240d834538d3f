"""Sources, events and CRM records.

``Event`` is append-only and range-partitioned by ``received_at`` (one partition a month, created
ahead by a periodic task, plus a default partition so nothing is ever refused): retention drops
whole partitions. The database primary key is ``(id, received_at)`` as partitioning requires; ids
come from one identity sequence and are unique. Idempotency lives in ``IngestedMessage``, keyed
by ``(source, message_id)``, because a unique constraint on the partitioned table would have to
include the partition key.
"""

from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models.functions import Now

RECORD_SEQUENCE = "ingestion_record_seq"


class Source(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    write_key_prefix = models.CharField(max_length=20)
    write_key_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EventType(models.TextChoices):
    TRACK = "track"
    IDENTIFY = "identify"
    ALIAS = "alias"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    # No index on source: filters by source go with a more selective column, and every index
    # costs ingest throughput.
    source = models.ForeignKey(Source, on_delete=models.PROTECT, related_name="+", db_index=False)
    message_id = models.CharField(max_length=255)
    type = models.CharField(max_length=16, choices=EventType.choices)
    # Ids and names are NULL when a message has none: "" would be a (blocked) value, not absence.
    event_name = models.CharField(  # noqa: DJ001
        max_length=255, null=True, blank=True, help_text="track: event; page/screen: name"
    )
    user_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    anonymous_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    previous_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    group_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    timestamp = models.DateTimeField(help_text="Event time, corrected for client clock skew.")
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(db_default=Now())
    clock_skew_clamped = models.BooleanField(
        default=False, help_text="The corrected time was in the future and was set to received_at."
    )
    properties = models.JSONField(default=dict)
    traits = models.JSONField(default=dict)
    context = models.JSONField(default=dict)
    integrations = models.JSONField(default=dict)
    # The PII taken out of traits and context, encrypted under the anchor identifier's data key
    # (cdp.ingestion.pii); NULL when the event had none. Read with cdp.ingestion.pii.events_pii.
    pii = models.BinaryField(null=True, blank=True, editable=False)
    # The identifier resolution anchors the event on (docs/identity.md); the event's profile is
    # that identifier's. NULL until resolved: the unresolved events are the resolver's queue.
    identifier_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Partial: ingest adds nothing here; resolution does when it anchors the event.
            models.Index(
                fields=["identifier_id", "event_name", "timestamp"],
                name="event_identifier_name_ts",
                condition=models.Q(identifier_id__isnull=False),
            ),
            # The resolver's work queue, in id order. Unlike a cursor over ids it cannot skip an
            # event whose transaction commits after a later id's.
            models.Index(
                fields=["id"],
                name="event_unresolved",
                condition=models.Q(identifier_id__isnull=True),
            ),
            models.Index(
                fields=["user_id"], name="event_user_id", condition=models.Q(user_id__isnull=False)
            ),
            models.Index(
                fields=["anonymous_id"],
                name="event_anonymous_id",
                condition=models.Q(anonymous_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_name or ''} #{self.pk}"


class IngestedMessage(models.Model):
    """One row per (source, messageId) seen within the deduplication window."""

    pk = models.CompositePrimaryKey("source_id", "message_id")
    # The primary key starts with source_id: a separate index would only slow every insert.
    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+", db_index=False)
    message_id = models.CharField(max_length=255)
    received_at = models.DateTimeField()

    class Meta:
        # BRIN: rows arrive in received_at order, and a BRIN index costs next to nothing to keep
        # up on the hot insert path while still letting pruning find the old rows.
        indexes = [BrinIndex(fields=["received_at"], name="ingested_message_received")]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.message_id}"


class Record(models.Model):
    """A CRM record, upserted by (source, external_id).

    ``seq`` takes a new value from one sequence on every insert or change, so consumers can read
    records in change order from a durable cursor. ``content_digest`` (an HMAC, it covers the
    PII) makes re-imports no-ops.
    """

    # Served by the (source, external_id) unique index.
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, related_name="records", db_index=False
    )
    external_id = models.CharField(max_length=255)
    country = models.CharField(max_length=64, blank=True, default="")
    # The person fields (email, phone, names, address, birth date) and the PII keys of
    # attributes, encrypted under the record's external identifier's data key; NULL when the
    # record has none. Read with cdp.ingestion.pii.records_pii.
    pii = models.BinaryField(null=True, blank=True, editable=False)
    attributes = models.JSONField(default=dict, blank=True)
    content_digest = models.CharField(max_length=64)
    # Resolution sets this to the seq it processed; the record is pending while they differ.
    resolved_seq = models.BigIntegerField(null=True, blank=True)
    seq = models.BigIntegerField(
        unique=True,
        db_default=models.Func(models.Value(RECORD_SEQUENCE), function="nextval"),
    )
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="record_source_external")
        ]
        indexes = [
            models.Index(
                fields=["seq"],
                name="record_unresolved",
                condition=~models.Q(resolved_seq=models.F("seq")) | models.Q(resolved_seq=None),
            )
        ]

    def __str__(self) -> str:
        return f"{self.source_id}:{self.external_id}"
