"""Serializers of the ingestion API.

Tracking calls are validated by ``cdp.ingestion.validation`` (hand-written for the hot path);
the input serializers here describe the Segment spec for the OpenAPI schema.
"""

from __future__ import annotations

from rest_framework import serializers

from cdp.ingestion.models import Event, EventType


class _MessageSerializer(serializers.Serializer):
    messageId = serializers.CharField(required=False, max_length=255)  # noqa: N815
    userId = serializers.CharField(required=False, max_length=255)  # noqa: N815
    anonymousId = serializers.CharField(required=False, max_length=255)  # noqa: N815
    context = serializers.DictField(required=False)  # type: ignore[assignment]
    integrations = serializers.DictField(required=False)
    timestamp = serializers.DateTimeField(required=False)
    originalTimestamp = serializers.DateTimeField(required=False)  # noqa: N815
    sentAt = serializers.DateTimeField(required=False)  # noqa: N815
    writeKey = serializers.CharField(required=False, help_text="Alternative to HTTP Basic auth.")  # noqa: N815


class TrackInputSerializer(_MessageSerializer):
    event = serializers.CharField(max_length=255)
    properties = serializers.DictField(required=False)


class IdentifyInputSerializer(_MessageSerializer):
    traits = serializers.DictField(required=False)


class AliasInputSerializer(_MessageSerializer):
    previousId = serializers.CharField(max_length=255)  # noqa: N815


class PageInputSerializer(_MessageSerializer):
    name = serializers.CharField(required=False, max_length=255)
    properties = serializers.DictField(required=False)


class GroupInputSerializer(_MessageSerializer):
    groupId = serializers.CharField(max_length=255)  # noqa: N815
    traits = serializers.DictField(required=False)


class BatchItemSerializer(_MessageSerializer):
    type = serializers.ChoiceField(choices=EventType.choices)
    event = serializers.CharField(required=False, max_length=255)
    name = serializers.CharField(required=False, max_length=255)
    previousId = serializers.CharField(required=False, max_length=255)  # noqa: N815
    groupId = serializers.CharField(required=False, max_length=255)  # noqa: N815
    properties = serializers.DictField(required=False)
    traits = serializers.DictField(required=False)


class BatchInputSerializer(serializers.Serializer):
    batch = BatchItemSerializer(many=True)
    sentAt = serializers.DateTimeField(required=False)  # noqa: N815
    context = serializers.DictField(required=False)  # type: ignore[assignment]
    writeKey = serializers.CharField(required=False)  # noqa: N815


class ItemErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    messageId = serializers.CharField(allow_null=True)  # noqa: N815
    attr = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    detail = serializers.CharField()


class TrackingOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    accepted = serializers.IntegerField(help_text="Events stored by this request.")
    duplicates = serializers.IntegerField(help_text="Events already stored (same messageId).")
    rejected = ItemErrorSerializer(many=True)


class RecordInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=255)
    email = serializers.CharField(required=False, max_length=320)
    phone = serializers.CharField(required=False, max_length=64)
    first_name = serializers.CharField(required=False, max_length=200)
    last_name = serializers.CharField(required=False, max_length=200)
    street = serializers.CharField(required=False, max_length=300)
    city = serializers.CharField(required=False, max_length=200)
    postcode = serializers.CharField(required=False, max_length=32)
    country = serializers.CharField(required=False, max_length=64)
    birth_date = serializers.DateField(required=False)
    attributes = serializers.DictField(required=False)


class RecordsInputSerializer(serializers.Serializer):
    records = RecordInputSerializer(many=True)


class RecordErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    attr = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    detail = serializers.CharField()


class RecordsOutputSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    superseded = serializers.IntegerField(
        help_text="Earlier copies of an external_id repeated later in the same request."
    )
    rejected = RecordErrorSerializer(many=True)


class EventFilterSerializer(serializers.Serializer):
    source = serializers.SlugField(required=False)  # type: ignore[assignment]
    user_id = serializers.CharField(required=False, max_length=255)
    anonymous_id = serializers.CharField(required=False, max_length=255)
    type = serializers.ChoiceField(choices=EventType.choices, required=False)
    event = serializers.CharField(required=False, max_length=255)


class EventOutputSerializer(serializers.ModelSerializer):
    source = serializers.SlugRelatedField(slug_field="name", read_only=True)  # type: ignore[assignment,var-annotated]
    messageId = serializers.CharField(source="message_id")  # noqa: N815
    event = serializers.CharField(source="event_name", allow_null=True)
    userId = serializers.CharField(source="user_id", allow_null=True)  # noqa: N815
    anonymousId = serializers.CharField(source="anonymous_id", allow_null=True)  # noqa: N815
    previousId = serializers.CharField(source="previous_id", allow_null=True)  # noqa: N815
    groupId = serializers.CharField(source="group_id", allow_null=True)  # noqa: N815
    originalTimestamp = serializers.DateTimeField(source="original_timestamp", allow_null=True)  # noqa: N815
    sentAt = serializers.DateTimeField(source="sent_at", allow_null=True)  # noqa: N815
    receivedAt = serializers.DateTimeField(source="received_at")  # noqa: N815
    clockSkewClamped = serializers.BooleanField(source="clock_skew_clamped")  # noqa: N815

    class Meta:
        model = Event
        fields = [
            "id",
            "source",
            "messageId",
            "type",
            "event",
            "userId",
            "anonymousId",
            "previousId",
            "groupId",
            "timestamp",
            "originalTimestamp",
            "sentAt",
            "receivedAt",
            "clockSkewClamped",
            "properties",
            "traits",
            "context",
            "integrations",
        ]
