"""The audit log: who did what to whom, when. Append-only, enforced by the database.

An entry names its actor and target by kind and id and carries details without values: an
identifier is ``identifier #42``, never its email. Rows can neither be changed nor deleted (a
trigger refuses UPDATE and DELETE, see migration 0001), so the log is evidence; erasing a person
leaves the entries that prove the erasure, which name only ids that no longer exist.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

ACTOR_MAX_LENGTH = 200


class AuditAction(models.TextChoices):
    CONSENT_RECORDED = "consent.recorded"
    OPT_OUT = "privacy.opt_out"
    UNSUBSCRIBE = "privacy.unsubscribe"
    ERASURE_REQUESTED = "privacy.erasure_requested"
    ERASURE_COMPLETED = "privacy.erasure_completed"
    ACCESS_REQUESTED = "privacy.access_requested"
    ACCESS_COMPLETED = "privacy.access_completed"
    ACCESS_DOWNLOADED = "privacy.access_downloaded"
    REQUEST_FAILED = "privacy.request_failed"
    SUPPRESSION_LIFTED = "privacy.suppression_lifted"
    PII_REVEALED = "pii.revealed"
    PROFILE_MERGED = "identity.merged"
    PROFILE_UNMERGED = "identity.unmerged"
    TOKEN_CREATED = "token.created"  # noqa: S105 (an action name)
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    KEYS_ROTATED = "keys.rotated"


class AuditEntry(models.Model):
    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(default=timezone.now)
    # "api:<token name> #<token id>", "admin:<username>", "resolver", "command:<name>",
    # "subject" (the person themselves, through an unsubscribe link).
    actor = models.CharField(max_length=ACTOR_MAX_LENGTH)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    # What was acted on, by kind and id: "profile", "identifier", "privacy_request", "api_token".
    target_type = models.CharField(max_length=40, blank=True, default="")
    target_id = models.CharField(max_length=64, blank=True, default="")
    # Counts, purposes, statuses, reasons, scopes: never a PII value.
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["target_type", "target_id", "-id"], name="audit_target"),
            models.Index(fields=["action", "-id"], name="audit_action"),
        ]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        target = f" {self.target_type} {self.target_id}" if self.target_type else ""
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}{target}"
