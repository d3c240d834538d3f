"""Serializers of the segments API: they validate and shape; definitions are validated by
``segments.dsl`` in the services, the guardrails live in the selectors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, timedelta
from typing import Any

from rest_framework import serializers

from cdp.ingestion.pii import REDACTED
from segments.models import NAME_MAX_LENGTH
from segments.selectors import PREVIEW_SAMPLE_SIZE

PII_NOTE = (
    "PII trait values are shown only to tokens that also hold the pii:read scope (each reveal is "
    f"audited); otherwise the value is {REDACTED!r}."
)
DEFINITION_HELP = "A definition in the segment language (docs/segments.md)."
PURPOSE_HELP = (
    "The consent purpose activation serves (consent.purposes): members and changes only ever "
    "include people allowed for it."
)
MAX_WINDOW_DAYS = 3650
_WINDOW = re.compile(r"(\d{1,5})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# --- input ------------------------------------------------------------------------------------
class SegmentCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=NAME_MAX_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    purpose = serializers.CharField(max_length=64, help_text=PURPOSE_HELP)
    min_size = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="Under this many members the segment is not served "
        "(default: settings CDP_SEGMENTS['MIN_SIZE'], 100).",
    )
    fallback = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="A segment served instead while this one is too small.",
    )
    definition = serializers.JSONField(help_text=DEFINITION_HELP)


class SegmentUpdateSerializer(SegmentCreateSerializer):
    """Every field optional; a changed definition makes a new version."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for field in fields.values():
            field.required = False
        return fields


class PreviewInputSerializer(serializers.Serializer):
    definition = serializers.JSONField(help_text=DEFINITION_HELP)
    purpose = serializers.CharField(
        required=False,
        max_length=64,
        help_text="Count and sample only people allowed for this consent purpose.",
    )


class MembersQuerySerializer(serializers.Serializer):
    as_of = serializers.DateTimeField(
        required=False,
        help_text="An ISO 8601 date-time: the members at that instant (their stays open then). "
        "Consent still applies as it stands now.",
    )
    cursor = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class ChangesQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(
        help_text="An ISO 8601 date-time: the entries and exits after it (exclusive)."
    )
    cursor = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class ProfileSegmentsQuerySerializer(serializers.Serializer):
    history = serializers.BooleanField(
        required=False, default=False, help_text="Also the stays that ended, newest first."
    )


class StatsQuerySerializer(serializers.Serializer):
    event = serializers.CharField(
        max_length=255, help_text="The event name (track event, page or screen name)."
    )
    window = serializers.CharField(
        required=False,
        default="30d",
        max_length=10,
        help_text="Did the event within this long before now: 30m, 12h, 30d, 4w (default 30d).",
    )

    def validate_window(self, value: str) -> timedelta:
        match = _WINDOW.fullmatch(value)
        if match is None:
            raise serializers.ValidationError(
                "A duration like 30m, 12h, 30d or 4w.", code="invalid_window"
            )
        window = timedelta(**{_UNITS[match[2]]: int(match[1])})
        if not timedelta(0) < window <= timedelta(days=MAX_WINDOW_DAYS):
            raise serializers.ValidationError(
                f"Between 1m and {MAX_WINDOW_DAYS}d.", code="invalid_window"
            )
        return window


# --- output -----------------------------------------------------------------------------------
class SegmentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    purpose = serializers.CharField()
    min_size = serializers.IntegerField()
    fallback = serializers.IntegerField(source="fallback_id", allow_null=True)
    version = serializers.IntegerField(help_text="The current definition's version number.")
    definition = serializers.JSONField()
    time_dependent = serializers.BooleanField(
        help_text="The definition reads the clock: re-evaluated on a schedule."
    )
    member_count = serializers.IntegerField(help_text="Members at the last recompute.")
    too_small = serializers.BooleanField(
        help_text="Fewer members than min_size (or never computed): not served, the fallback is."
    )
    computed_at = serializers.DateTimeField(allow_null=True)
    computed_version = serializers.IntegerField(
        allow_null=True, help_text="The version the members were computed from."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SegmentVersionOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    definition = serializers.JSONField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class PreviewOutputSerializer(serializers.Serializer):
    estimated_size = serializers.IntegerField(source="size")
    method = serializers.ChoiceField(
        choices=["exact", "planner_estimate"],
        help_text="exact: counted within the time budget; planner_estimate: PostgreSQL's row "
        "estimate for the query (EXPLAIN), when counting ran out of time.",
    )
    sample = serializers.ListField(
        child=serializers.IntegerField(),
        help_text=f"Up to {PREVIEW_SAMPLE_SIZE} matching profile ids (random when exact).",
    )


class RecomputeOutputSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    version = serializers.IntegerField()
    status = serializers.CharField(help_text="'enqueued'.")


class MemberOutputSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField()
    entered_at = serializers.DateTimeField()
    traits = serializers.DictField(
        child=serializers.JSONField(), help_text=f"Trait name -> value. {PII_NOTE}"
    )


class MembersEnvelopeSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page; null at the end.")
    segment_id = serializers.IntegerField(help_text="The segment asked for.")
    served_segment_id = serializers.IntegerField(
        help_text="The segment whose members these are: the fallback's id when fallback is true."
    )
    fallback = serializers.BooleanField(
        help_text="The segment asked for is too small; its fallback's members are served."
    )
    as_of = serializers.DateTimeField(allow_null=True)


# The page as documented; the view shapes ``results`` itself (``member_rows``): a page of 1,000
# through field-by-field serialization costs more than its query.
class MembersPageSerializer(MembersEnvelopeSerializer):
    """One page of members, by profile id."""

    results = MemberOutputSerializer(many=True)


def member_rows(members: Iterable[Any], traits: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """``MemberOutputSerializer``'s shape, built directly (times as DRF renders them, UTC "Z")."""
    return [
        {
            "profile_id": member.profile_id,
            "entered_at": member.entered_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "traits": traits[member.profile_id],
        }
        for member in members
    ]


class ChangeOutputSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    change = serializers.ChoiceField(choices=["entered", "exited"])
    profile_id = serializers.IntegerField()
    exit_reason = serializers.CharField(help_text="rule, merged, erased, deleted; '' on entry.")


class ChangesPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page; null at the end.")
    segment_id = serializers.IntegerField()
    served_segment_id = serializers.IntegerField()
    fallback = serializers.BooleanField()
    results = ChangeOutputSerializer(many=True)


class ProfileSegmentOutputSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    name = serializers.CharField(source="segment.name")
    purpose = serializers.CharField(source="segment.purpose")
    entered_at = serializers.DateTimeField()
    exited_at = serializers.DateTimeField(allow_null=True)
    exit_reason = serializers.CharField()


class StatsGroupSerializer(serializers.Serializer):
    did = serializers.IntegerField(help_text="Did the event within the window.")
    did_not = serializers.IntegerField()
    total = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="did / total (conversion rate).")


class ChiSquareSerializer(serializers.Serializer):
    statistic = serializers.FloatField(allow_null=True)
    p_value = serializers.FloatField(allow_null=True)
    dof = serializers.IntegerField()
    expected = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()),
        allow_null=True,
        help_text="Expected counts [[members did, did not], [rest did, did not]].",
    )
    fisher_p_value = serializers.FloatField(
        allow_null=True, help_text="Fisher's exact test, when an expected count is under 5."
    )


class StatsOutputSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    event = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    members = StatsGroupSerializer()
    rest = StatsGroupSerializer(help_text="Every other current profile.")
    test = ChiSquareSerializer(help_text="Chi-square test of independence (Yates-corrected).")
    note = serializers.CharField(allow_null=True)
