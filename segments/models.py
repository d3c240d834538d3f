"""Segments: versioned definitions, their members over time, computed traits, and what hands
members out (exports, webhooks).

A segment's definition is a JSON document (docs/segments.md) compiled to one SQL query
(``segments.dsl``). Membership is kept as intervals: a row per (segment, profile, stay), with
``exited_at`` NULL while the person is in, so "who was in VIP on 1 March" and "who entered this
week" are range queries. Merged profiles leave their segments (their survivor is evaluated
instead); an unmerged side is evaluated on its own again.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from identity.models import Profile

NAME_MAX_LENGTH = 200


class Segment(models.Model):
    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=NAME_MAX_LENGTH, unique=True)
    description = models.TextField(blank=True, default="")
    # The consent purpose activation serves: members, exports and webhooks only ever include
    # people allowed for it (consent.selectors).
    purpose = models.CharField(max_length=64)
    # Under this many members the segment is too small to hand out (re-identification risk,
    # meaningless statistics); ``fallback`` is served instead when set.
    min_size = models.PositiveIntegerField()
    fallback = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    version = models.PositiveIntegerField(default=1)  # the current SegmentVersion's number
    definition = models.JSONField()  # the current version's, denormalized for the compiler
    # Set by each recompute.
    member_count = models.PositiveBigIntegerField(default=0)
    too_small = models.BooleanField(default=True)
    computed_at = models.DateTimeField(null=True, blank=True)
    computed_version = models.PositiveIntegerField(null=True, blank=True)
    # Whether the definition depends on the clock ("-7d", "within"): such segments are
    # re-evaluated on a schedule, so people leave without any new event.
    time_dependent = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SegmentVersion(models.Model):
    """Every definition a segment has had, append-only."""

    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.JSONField()
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["segment", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "version"], name="segment_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.segment_id} v{self.version}"


class Membership(models.Model):
    """One stay of a profile in a segment: [entered_at, exited_at)."""

    class ExitReason(models.TextChoices):
        RULE = "rule"  # no longer matches the definition
        MERGED = "merged"  # the profile was merged into another (its survivor is evaluated)
        ERASED = "erased"
        DELETED = "deleted"  # the segment was deleted

    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+", db_index=False)
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(
        max_length=16, choices=ExitReason.choices, blank=True, default=""
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "profile"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_one_open_stay",
            )
        ]
        indexes = [
            # Current members in profile order (the members API's cursor).
            models.Index(
                fields=["segment", "profile"],
                condition=models.Q(exited_at__isnull=True),
                name="membership_current",
            ),
            # As-of and changes-since queries; the id orders the changes feed's ties (a full
            # recompute enters everyone at one instant) without sorting them.
            models.Index(fields=["segment", "entered_at", "id"], name="membership_entered"),
            models.Index(fields=["segment", "exited_at", "id"], name="membership_exited"),
            # A profile's segments; closing a merged or erased profile's stays.
            models.Index(fields=["profile", "segment"], name="membership_profile"),
        ]

    def __str__(self) -> str:
        return f"profile {self.profile_id} in segment {self.segment_id}"


class ProfileMetrics(models.Model):
    """Computed traits of a profile, maintained by workers from its events (segments.metrics)
    and usable in definitions like any trait (``{"computed": "total_spend", ...}``)."""

    profile = models.OneToOneField(
        Profile, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    total_spend = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    order_count = models.PositiveIntegerField(default=0)
    event_count = models.PositiveBigIntegerField(default=0)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_order_at = models.DateTimeField(null=True, blank=True)
    event_counts = models.JSONField(default=dict, blank=True)  # {event name: count}
    # RFM quintile scores 1..5 (5 = most recent / most frequent / highest spend), recomputed
    # over all profiles periodically; NULL for a profile without orders.
    rfm_recency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_frequency = models.PositiveSmallIntegerField(null=True, blank=True)
    rfm_monetary = models.PositiveSmallIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"metrics of profile {self.profile_id}"


class RecomputeRun(models.Model):
    """One recompute of one segment: what ran, how long, what changed (the operator's log)."""

    class Kind(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"
        SCHEDULED = "scheduled"  # time-dependent re-evaluation

    id = models.BigAutoField(primary_key=True)
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    version = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    evaluated = models.PositiveBigIntegerField(default=0)  # profiles evaluated (incremental)
    entered = models.PositiveBigIntegerField(default=0)
    exited = models.PositiveBigIntegerField(default=0)
    member_count = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["segment", "-id"], name="recompute_run_segment")]

    def __str__(self) -> str:
        return f"{self.kind} recompute of segment {self.segment_id}"


# Activation tables (exports, webhooks), in their own module; imported here so Django registers
# them with this app.
from segments.activation.models import (  # noqa: E402, F401
    SegmentExport,
    SegmentExportPart,
    Webhook,
    WebhookDelivery,
)
