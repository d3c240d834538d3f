"""Serializers of the activation API (exports, webhooks): they validate and shape."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from segments.activation.exports import export_available
from segments.activation.models import (
    URL_MAX_LENGTH,
    DeliveryStatus,
    ExportFormat,
    ExportStatus,
    SegmentExport,
    WebhookEvent,
)


class ExportInputSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=ExportFormat.choices, default=ExportFormat.CSV)
    include_pii = serializers.BooleanField(
        default=False,
        help_text="Decrypt PII traits (and, for a channel purpose, include the addresses). "
        "Honoured only for a token holding pii:read (audited); otherwise PII stays redacted "
        "and the export says include_pii false.",
    )


class ExportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    segment_id = serializers.IntegerField()
    served_segment_id = serializers.IntegerField(
        help_text="The segment whose members were exported: the segment's fallback when it "
        "was too small (then `fallback` is true)."
    )
    fallback = serializers.SerializerMethodField()
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    status = serializers.ChoiceField(choices=ExportStatus.choices)
    include_pii = serializers.BooleanField()
    streamed = serializers.BooleanField(
        help_text="Answered in the request as a streamed download: nothing was stored."
    )
    requested_by = serializers.CharField()
    row_count = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    completed_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(
        allow_null=True, help_text="When the file's key is destroyed (it cannot be read then)."
    )
    error = serializers.CharField(allow_blank=True)
    download_url = serializers.SerializerMethodField()

    def get_fallback(self, export: SegmentExport) -> bool:
        return bool(export.served_segment_id != export.segment_id)

    def get_download_url(self, export: SegmentExport) -> str | None:
        if not export_available(export):
            return None
        return reverse("segments-exports-download", kwargs={"export_id": export.pk})


class WebhookInputSerializer(serializers.Serializer):
    url = serializers.CharField(
        max_length=URL_MAX_LENGTH,
        help_text="https:// and a public address (http and private addresses only in development).",
    )
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEvent.choices),
        min_length=1,
        max_length=2,
        default=lambda: [WebhookEvent.ENTER, WebhookEvent.EXIT],
    )


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    segment_id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=WebhookEvent.choices))
    active = serializers.BooleanField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookCreatedSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(
        help_text="The signing secret, shown only in this response: keep it to verify "
        "X-CDP-Signature."
    )


class DeliveryAttemptSerializer(serializers.Serializer):
    attempt = serializers.IntegerField()
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    webhook_id = serializers.IntegerField()
    event_type = serializers.CharField()
    profile_id = serializers.IntegerField()
    payload = serializers.DictField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    attempt_log = DeliveryAttemptSerializer(many=True)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)


class DeliveryQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
