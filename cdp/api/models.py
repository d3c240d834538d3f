from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Scope(models.TextChoices):
    PROFILES_READ = "profiles:read"
    PROFILES_WRITE = "profiles:write"
    PII_READ = "pii:read"
    SEGMENTS_READ = "segments:read"
    SEGMENTS_WRITE = "segments:write"
    PRIVACY_WRITE = "privacy:write"
    CONSENT_WRITE = "consent:write"
    EVENTS_READ = "events:read"


class ApiToken(models.Model):
    """A bearer token for the management API; only its digest is stored."""

    name = models.CharField(max_length=200)
    display_prefix = models.CharField(max_length=20, help_text="First characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    scopes = ArrayField(models.CharField(max_length=40, choices=Scope.choices))
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def has_scopes(self, required: set[str]) -> bool:
        return required.issubset(self.scopes)
