"""Serializers of the privacy request API (erasure, access): they validate and shape."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus
from consent.privacy.access.storage import export_available
from identity.api.serializers import LookupQuerySerializer

REASON_MAX_LENGTH = 1000


class PrivacyRequestInputSerializer(LookupQuerySerializer):
    """The subject: exactly one identifier (as in the profile lookup), and why."""

    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=REASON_MAX_LENGTH,
        help_text="Why (a ticket number): kept in the request and the audit log. No PII.",
    )


class PrivacyRequestOutputSerializer(serializers.Serializer):
    """A request's state. ``summary`` holds counts only (identifiers, events, records, ...)."""

    id = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=PrivacyRequestKind.choices)
    status = serializers.ChoiceField(choices=PrivacyRequestStatus.choices)
    subject_kind = serializers.CharField()
    profile_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField()
    error = serializers.CharField(allow_blank=True)
    summary = serializers.DictField()
    export_url = serializers.SerializerMethodField(
        help_text=(
            "Access requests: where the completed export is downloaded (needs privacy:write and "
            "pii:read); null before completion, after expiry and for erasure requests."
        )
    )
    export_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Access requests: when the export's key is destroyed (it cannot be read then).",
    )

    def get_export_url(self, request: PrivacyRequest) -> str | None:
        if not export_available(request):
            return None
        return reverse("privacy-requests-export", kwargs={"request_id": request.pk})
