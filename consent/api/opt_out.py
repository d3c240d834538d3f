"""POST /v1/privacy/opt-out: a do-not-sell/share request received server-side (a web form, a
support ticket, an authorized agent), recorded in the consent ledger like any other choice."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import NotFound
from cdp.api.models import Scope
from cdp.api.permissions import request_actor
from consent import selectors
from consent.api.serializers import ConsentStateOutputSerializer, ProofSerializer
from consent.opt_out import opt_out_record
from consent.purposes import GPC_PURPOSES
from identity.api.serializers import LookupQuerySerializer
from identity.api.views import lookup_identifier
from identity.selectors import identifier_find

REASON_MAX_LENGTH = 1000


class OptOutInputSerializer(LookupQuerySerializer):
    """One identifier (as in the profile lookup), what to opt out of, and the request's proof."""

    purposes = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        allow_empty=False,
        max_length=50,
        help_text=f"Default: {', '.join(GPC_PURPOSES)} (what Global Privacy Control opts out of).",
    )
    proof = ProofSerializer(required=False)
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=REASON_MAX_LENGTH,
        help_text="Why (a ticket number): kept in the audit log. No PII.",
    )


class PrivacyOptOutView(APIView):
    required_scopes = {Scope.PRIVACY_WRITE}

    @extend_schema(
        operation_id="privacy_opt_out",
        summary="Opt a person out of sale/sharing (or other purposes) server-side",
        description=(
            "Records, through the identifier given, a denial of each purpose (a withdrawal where "
            "it had been granted) with channel `opt_out` and legal basis `legal_obligation`, and "
            "one audit entry (privacy.opt_out, with the reason). The answer is the person's "
            "resulting state for every purpose. The opt-out is the person's: it follows merges "
            "(the most restrictive state wins) and only a later explicit grant by the same "
            "person lifts it. The IP of `proof` is stored only as a keyed digest."
        ),
        tags=["privacy"],
        request=OptOutInputSerializer,
        responses={
            200: ConsentStateOutputSerializer,
            400: OpenApiResponse(description="Invalid body, unknown purpose (error contract)."),
            401: OpenApiResponse(description="Missing or invalid bearer token."),
            403: OpenApiResponse(description="The token lacks privacy:write."),
            404: OpenApiResponse(description="No identifier has this value."),
        },
    )
    def post(self, request: Request) -> Response:
        body = OptOutInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        kind, raw = lookup_identifier(data)
        identifier = identifier_find(kind=kind, raw_value=raw)
        if identifier is None:
            raise NotFound("No identifier has this value.", code="identifier_not_found")
        proof: dict[str, Any] = data.get("proof") or {}
        recorded = opt_out_record(
            identifier_id=identifier.pk,
            purposes=data.get("purposes") or GPC_PURPOSES,
            actor=request_actor(request),
            ip=proof.get("ip"),
            user_agent=proof.get("user_agent", ""),
            reason=data.get("reason", ""),
        )
        states = (
            selectors.profile_consent(recorded.profile_id)
            if recorded.profile_id is not None
            else []
        )
        return Response(
            ConsentStateOutputSerializer(
                {
                    "profile_id": recorded.profile_id,
                    "recorded": len(recorded.entries),
                    "states": states,
                }
            ).data
        )
