"""Consent and privacy: the consent ledger, the current state derived from it, privacy requests
and the suppression list.

Ledger entries hang on the identifier the choice arrived through (the user id of an identify
call, the email address of an unsubscribe link), like events do. A profile's ledger is the union
of its identifiers' entries, so merges and unmerges move consent with the identifiers and give
each side of an unmerge its own choices back. ``ConsentState`` is derived (``consent.services``
recomputes it whenever a profile's entries or identifiers change) and exists so that segment
queries and activation can filter by purpose in SQL.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from cdp.crypto.blind_index import INDEX_BYTES
from cdp.crypto.models import DataKey
from cdp.ingestion.models import Source
from identity.models import KIND_MAX_LENGTH, Identifier, Profile

ACTOR_MAX_LENGTH = 200
PURPOSE_MAX_LENGTH = 64


class ConsentStatus(models.TextChoices):
    GRANTED = "granted"
    DENIED = "denied"  # refused when asked (or never asked, for an opt-in purpose's default)
    WITHDRAWN = "withdrawn"  # granted earlier, taken back


class LegalBasis(models.TextChoices):
    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTEREST = "vital_interest"
    PUBLIC_TASK = "public_task"


class ConsentChannel(models.TextChoices):
    EVENT = "event"  # context.consent / consentManagement of a tracked call
    GPC = "gpc"  # Global Privacy Control: Sec-GPC header or context.gpc
    API = "api"  # POST /v1/consent
    UNSUBSCRIBE = "unsubscribe"  # a signed unsubscribe link
    OPT_OUT = "opt_out"  # POST /v1/privacy/opt-out (do not sell or share)


class ConsentEntry(models.Model):
    """One recorded choice: append-only. Repeating the current choice records nothing."""

    id = models.BigAutoField(primary_key=True)
    identifier = models.ForeignKey(Identifier, on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=PURPOSE_MAX_LENGTH)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    legal_basis = models.CharField(
        max_length=32, choices=LegalBasis.choices, default=LegalBasis.CONSENT
    )
    channel = models.CharField(max_length=16, choices=ConsentChannel.choices)
    source = models.ForeignKey(
        Source, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    # The consent tool and the version of the policy text the person saw, as sent.
    provider = models.CharField(max_length=100, blank=True, default="")
    policy_version = models.CharField(max_length=100, blank=True, default="")
    # Proof: a keyed digest of the client IP (never the address) and the user agent.
    proof_ip_digest = models.CharField(max_length=64, blank=True, default="")
    proof_user_agent = models.CharField(max_length=500, blank=True, default="")
    event_id = models.BigIntegerField(null=True, blank=True)
    # Tied to the address itself (an unsubscribed email): no grant through another identifier
    # lifts it.
    address_bound = models.BooleanField(default=False)
    actor = models.CharField(max_length=ACTOR_MAX_LENGTH, blank=True, default="")
    # When the person made the choice (the event's time, or the request's).
    given_at = models.DateTimeField()
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["identifier", "purpose", "-id"], name="consent_identifier_purpose")
        ]
        verbose_name_plural = "consent entries"

    def __str__(self) -> str:
        return f"{self.purpose} {self.status} ({self.identifier})"


class ConsentState(models.Model):
    """A profile's current state for one purpose, derived from its identifiers' entries. No row:
    the person never chose, the purpose's default applies."""

    id = models.BigAutoField(primary_key=True)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+", db_index=False)
    purpose = models.CharField(max_length=PURPOSE_MAX_LENGTH)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    # The entry that decided it, and when its choice was made.
    entry = models.ForeignKey(ConsentEntry, on_delete=models.PROTECT, related_name="+")
    given_at = models.DateTimeField()
    # Identifiers (by id) whose own address-bound opt-out stands, whatever the status says.
    opted_out_identifiers = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # Also the index a profile's states are read through.
            models.UniqueConstraint(fields=["profile", "purpose"], name="consent_state_unique")
        ]
        indexes = [models.Index(fields=["purpose", "status"], name="consent_state_purpose")]

    def __str__(self) -> str:
        return f"profile {self.profile_id} {self.purpose}: {self.status}"


class PrivacyRequestKind(models.TextChoices):
    ERASURE = "erasure"
    ACCESS = "access"


class PrivacyRequestStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class PrivacyRequest(models.Model):
    """An erasure or access request, worked on asynchronously. Holds no PII: the subject is the
    identifier's kind and blind index (kept after erasure, as proof of what was erased)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=PrivacyRequestKind.choices)
    status = models.CharField(
        max_length=16, choices=PrivacyRequestStatus.choices, default=PrivacyRequestStatus.PENDING
    )
    subject_kind = models.CharField(max_length=KIND_MAX_LENGTH)
    subject_blind_index = models.BinaryField(max_length=INDEX_BYTES)
    # The profile at request time (an id only: erasure deletes the row).
    profile_id = models.BigIntegerField(null=True, blank=True)
    requested_by = models.CharField(max_length=ACTOR_MAX_LENGTH)
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # Counts of what was erased or exported: never values.
    summary = models.JSONField(default=dict, blank=True)
    # An access export: the zip, AES-GCM encrypted under its own data key (destroyed when the
    # export expires or is deleted).
    export_ciphertext = models.BinaryField(null=True, blank=True, editable=False)
    export_data_key = models.ForeignKey(
        DataKey, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    export_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"], name="privacy_request_status")]

    def __str__(self) -> str:
        return f"{self.kind} request {self.pk} ({self.status})"


class Suppression(models.Model):
    """An erased identifier, by blind index: ingestion and resolution drop what carries it."""

    id = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=KIND_MAX_LENGTH)
    blind_index = models.BinaryField(max_length=INDEX_BYTES)
    request = models.ForeignKey(
        PrivacyRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=ACTOR_MAX_LENGTH, blank=True, default="")
    lift_reason = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "blind_index"],
                condition=models.Q(lifted_at__isnull=True),
                name="suppression_live_unique",
            )
        ]

    def __str__(self) -> str:
        state = "lifted" if self.lifted_at else "active"
        return f"suppressed {self.kind} #{self.pk} ({state})"
