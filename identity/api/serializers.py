"""Serializers of the profile API: they validate and shape, the selectors and services decide."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from cdp.ingestion.pii import REDACTED
from identity.models import ACTOR_MAX_LENGTH, LedgerAction
from identity.selectors import MERGE_PREVIEW_MAX_ITEMS
from identity.services.unmerge import MAX_REASON_LENGTH

PII_NOTE = (
    f"PII values are shown only to tokens that also hold the pii:read scope; otherwise the value "
    f"is {REDACTED!r}."
)
# The identifier kinds a lookup accepts, as query parameters (external needs source).
LOOKUP_KINDS = ("email", "phone", "user_id", "anonymous_id", "external_id")


def _field_error(attr: str, detail: str, code: str) -> serializers.ValidationError:
    return serializers.ValidationError({attr: [ErrorDetail(detail, code=code)]})


# --- input ------------------------------------------------------------------------------------
class LookupQuerySerializer(serializers.Serializer):
    """Exactly one identifier; ``external_id`` with the ``source`` whose CRM record it is."""

    email = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    phone = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    user_id = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    anonymous_id = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    external_id = serializers.CharField(required=False, max_length=1000, trim_whitespace=False)
    source = serializers.CharField(  # type: ignore[assignment]
        required=False, max_length=100, help_text="The source of external_id (its CRM)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [name for name in LOOKUP_KINDS if name in attrs]
        if len(given) != 1:
            raise serializers.ValidationError(
                f"Give exactly one of {', '.join(LOOKUP_KINDS)}.", code="lookup_identifier"
            )
        if given == ["external_id"] and "source" not in attrs:
            raise _field_error("source", "external_id needs source.", code="required")
        if "source" in attrs and given != ["external_id"]:
            raise _field_error("source", "source goes with external_id only.", code="invalid")
        return attrs


class PathQuerySerializer(serializers.Serializer):
    from_ = serializers.IntegerField(
        required=False, min_value=1, help_text="Identifier id where the evidence path starts."
    )
    to = serializers.IntegerField(
        required=False, min_value=1, help_text="Identifier id where the evidence path ends."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")  # a Python keyword
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("from" in attrs) != ("to" in attrs):
            missing = "to" if "from" in attrs else "from"
            raise _field_error(missing, "Give both from and to for an evidence path.", "required")
        return attrs


class UnmergeInputSerializer(serializers.Serializer):
    edge_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        allow_empty=False,
        max_length=1000,
        help_text="Evidence edges inside the profile to invalidate.",
    )
    identifier_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Detach this identifier: invalidate every valid edge of it in the profile.",
    )
    reason = serializers.CharField(max_length=MAX_REASON_LENGTH)


class PreviewIdentifierSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=32)
    value = serializers.CharField(
        max_length=1000,
        trim_whitespace=False,
        allow_blank=True,
        help_text="As it would arrive; normalized the way the resolver does. For external: "
        "'<source>:<external_id>'.",
    )


class MergePreviewInputSerializer(serializers.Serializer):
    identifiers = serializers.ListField(
        child=PreviewIdentifierSerializer(), min_length=2, max_length=MERGE_PREVIEW_MAX_ITEMS
    )


# --- output -----------------------------------------------------------------------------------
class TraitSerializer(serializers.Serializer):
    value = serializers.JSONField(
        allow_null=True,
        help_text=f"The surviving value. {PII_NOTE} null when the PII was erased.",
    )
    pii = serializers.BooleanField()
    rule = serializers.CharField(help_text="The survivorship rule that chose the value.")
    source = serializers.CharField(help_text="Name of the source of the winning observation.")  # type: ignore[assignment]
    origin = serializers.CharField(help_text="'event' (an identify call) or 'record' (CRM).")
    origin_id = serializers.IntegerField(help_text="The event or CRM record id it came from.")
    observation_id = serializers.IntegerField()
    observed_at = serializers.DateTimeField()
    observations = serializers.IntegerField(help_text="Observations of this trait considered.")
    distinct_values = serializers.IntegerField()


class ProfileOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The live profile's id.")
    requested_id = serializers.IntegerField(help_text="The id that was asked for.")
    merged_into = serializers.IntegerField(
        allow_null=True,
        help_text="Set when the requested profile was merged away: the survivor's id (the id "
        "of this body). Lookups by an old id keep working and answer with the survivor.",
    )
    created_at = serializers.DateTimeField()
    first_seen_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField(allow_null=True)
    event_count = serializers.IntegerField()
    traits = serializers.DictField(child=TraitSerializer(), help_text="By trait name.")
    identifier_counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="The profile's identifiers by kind."
    )


class IdentifierOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    value = serializers.CharField(
        allow_null=True, help_text=f"{PII_NOTE} null when the identifier was erased."
    )
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    event_count = serializers.IntegerField(help_text="Events anchored on this identifier.")
    first_event_at = serializers.DateTimeField(allow_null=True)
    last_event_at = serializers.DateTimeField(allow_null=True)


class GraphNodeSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Identifier id.")
    kind = serializers.CharField()
    value = serializers.CharField(allow_null=True, help_text=PII_NOTE)


class GraphEdgeSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="edge.pk")
    a = serializers.IntegerField(source="edge.a_id", help_text="Identifier id (a < b).")
    b = serializers.IntegerField(source="edge.b_id", help_text="Identifier id.")
    rule = serializers.CharField(source="edge.rule")
    source = serializers.CharField(source="edge.source.name", allow_null=True, default=None)  # type: ignore[assignment]
    event_id = serializers.IntegerField(source="edge.event_id", allow_null=True)
    record_id = serializers.IntegerField(source="edge.record_id", allow_null=True)
    score = serializers.FloatField(source="edge.score", allow_null=True)
    evidence = serializers.JSONField(
        source="edge.evidence", help_text="Fields and feature weights, never values."
    )
    applied = serializers.BooleanField(source="edge.applied")
    conflict = serializers.CharField(
        source="edge.conflict", help_text="Why a merge rule refused it ('' when applied)."
    )
    created_at = serializers.DateTimeField(source="edge.created_at")
    invalidated_at = serializers.DateTimeField(source="edge.invalidated_at", allow_null=True)
    invalidated_by = serializers.CharField(source="edge.invalidated_by")
    invalidation_reason = serializers.CharField(source="edge.invalidation_reason")
    other_profile_id = serializers.IntegerField(
        allow_null=True, help_text="The profile of the end outside this profile, if any."
    )


class EvidencePathSerializer(serializers.Serializer):
    identifiers = serializers.ListField(child=serializers.IntegerField())
    edges = serializers.ListField(child=serializers.IntegerField())


class GraphOutputSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField()
    nodes = GraphNodeSerializer(many=True)
    edges = GraphEdgeSerializer(many=True)
    truncated = serializers.BooleanField(
        help_text="More identifiers or edges than the caps: the first ones by id are shown."
    )
    path = EvidencePathSerializer(
        allow_null=True, required=False, help_text="With ?from=&to=: the evidence path."
    )


class LedgerEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.CharField(help_text=f"One of: {', '.join(LedgerAction.values)}.")
    profile = serializers.IntegerField(source="profile_id")
    other_profile = serializers.IntegerField(source="other_profile_id", allow_null=True)
    edge = serializers.IntegerField(source="edge_id", allow_null=True)
    actor = serializers.CharField(max_length=ACTOR_MAX_LENGTH)
    reason = serializers.CharField()
    details = serializers.JSONField()
    created_at = serializers.DateTimeField()


class UnmergeOutputSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField(help_text="The profile unmerged; it keeps its id.")
    edges = serializers.ListField(
        child=serializers.IntegerField(), help_text="The edges invalidated."
    )
    split = serializers.BooleanField(help_text="Whether the profile fell apart.")
    profiles = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="The split-off sides' profiles: an earlier profile id of theirs restored, or "
        "a new one.",
    )
    still_connected_by = serializers.ListField(
        child=serializers.IntegerField(),
        allow_null=True,
        help_text="When other evidence still holds the profile together: identifier ids of one "
        "path between the ends of the first edge removed.",
    )


class PreviewItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request.")
    kind = serializers.CharField()
    identifier_id = serializers.IntegerField(
        allow_null=True, help_text="null: no such identifier yet, linking would create it."
    )
    profile_id = serializers.IntegerField(allow_null=True, help_text="Its profile now.")
    linked = serializers.BooleanField(help_text="Whether its link would be applied.")
    conflict = serializers.CharField(
        help_text="Why the link would be refused: limit:<kind> or max_profile_identifiers."
    )


class PreviewRejectedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    attr = serializers.CharField()
    code = serializers.CharField()
    detail = serializers.CharField()


class MergePreviewOutputSerializer(serializers.Serializer):
    merges = serializers.BooleanField(help_text="Whether existing profiles would merge.")
    profiles = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="The existing profiles that would become one (ascending).",
    )
    survivor_id = serializers.IntegerField(
        allow_null=True,
        help_text="The profile that would survive (the oldest); null: a new one would be made.",
    )
    hub_index = serializers.IntegerField(
        allow_null=True, help_text="The strongest identifier, linked to every other one."
    )
    identifiers = PreviewItemSerializer(many=True, source="items")
    new_identifiers = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Indexes of the identifiers that do not exist yet.",
    )
    refused = PreviewItemSerializer(many=True, help_text="The links a merge rule would refuse.")
    rejected = PreviewRejectedSerializer(
        many=True, help_text="Items that are not usable identifiers."
    )
