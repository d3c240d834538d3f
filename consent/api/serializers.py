"""Shapes of the consent API. Identifiers come in the body (never the URL), as in the profile
lookup."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from consent.models import ConsentStatus, LegalBasis
from identity.api.serializers import LookupQuerySerializer

MAX_CHOICES = 50


class ChoiceSerializer(serializers.Serializer):
    purpose = serializers.CharField(max_length=64)
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    legal_basis = serializers.ChoiceField(
        choices=LegalBasis.choices, default=LegalBasis.CONSENT, required=False
    )
    policy_version = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True
    )
    provider = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        allow_blank=True,
        help_text="The consent tool or form the choice was made in.",
    )


class ProofSerializer(serializers.Serializer):
    ip = serializers.IPAddressField(
        required=False, help_text="The person's IP address: stored only as a keyed digest."
    )
    user_agent = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class ConsentInputSerializer(LookupQuerySerializer):
    """One identifier (as in the lookup) and the choices made through it."""

    choices = ChoiceSerializer(many=True, allow_empty=False)
    given_at = serializers.DateTimeField(
        required=False, help_text="When the person chose; default: now. Not in the future."
    )
    proof = ProofSerializer(required=False)

    def validate_choices(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(value) > MAX_CHOICES:
            raise serializers.ValidationError(f"At most {MAX_CHOICES} choices per request.")
        purposes = [choice["purpose"] for choice in value]
        if len(set(purposes)) != len(purposes):
            raise serializers.ValidationError("Each purpose at most once per request.")
        return value


class PurposeStateSerializer(serializers.Serializer):
    purpose = serializers.CharField()
    status = serializers.ChoiceField(choices=ConsentStatus.choices)
    allowed = serializers.BooleanField(help_text="Whether activation for this purpose may use it.")
    is_default = serializers.BooleanField(
        help_text="No choice recorded: the purpose's configured default applies."
    )
    given_at = serializers.DateTimeField(allow_null=True)
    entry_id = serializers.IntegerField(allow_null=True, help_text="The deciding ledger entry.")
    opted_out_identifiers = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Identifier ids (addresses) whose own opt-out stands whatever the status.",
    )


class ConsentStateOutputSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField(allow_null=True)
    recorded = serializers.IntegerField(help_text="Ledger entries written by this request.")
    states = PurposeStateSerializer(many=True)


class ProfileConsentOutputSerializer(serializers.Serializer):
    profile_id = serializers.IntegerField()
    states = PurposeStateSerializer(many=True)


class LedgerEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    identifier_id = serializers.IntegerField()
    purpose = serializers.CharField()
    status = serializers.CharField()
    legal_basis = serializers.CharField()
    channel = serializers.CharField()
    source_id = serializers.IntegerField(allow_null=True)
    provider = serializers.CharField()
    policy_version = serializers.CharField()
    proof_ip_digest = serializers.CharField(help_text="Keyed digest of the IP, never the IP.")
    proof_user_agent = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)
    address_bound = serializers.BooleanField()
    actor = serializers.CharField()
    given_at = serializers.DateTimeField()
    recorded_at = serializers.DateTimeField()
