"""The consent API: record choices by identifier, read a profile's states and ledger."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import InvalidInput, NotFound
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import request_actor
from cdp.audit.models import AuditAction
from consent import selectors
from consent.api import serializers as s
from consent.models import ConsentChannel
from consent.services import ChoiceInput, consent_record
from identity.api.views import PROFILE_ID, lookup_identifier
from identity.selectors import identifier_find, profile_current

TAGS = ["consent"]
ERRORS = {
    400: OpenApiResponse(description="Invalid body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
    404: OpenApiResponse(description="No identifier has this value / no such profile."),
}


class ConsentRecordView(APIView):
    required_scopes = {Scope.CONSENT_WRITE}

    @extend_schema(
        operation_id="consent_record",
        summary="Record consent choices made through one identifier",
        description=(
            "Give one identifier as in the profile lookup (email, phone, user_id, anonymous_id, "
            "or external_id with source) and the choices. Each choice is appended to the ledger "
            "of that identifier; a denial of a granted purpose is recorded as `withdrawn`. The "
            "answer is the person's resulting state for every purpose. The IP of `proof` is "
            "stored only as a keyed digest."
        ),
        tags=TAGS,
        request=s.ConsentInputSerializer,
        responses={200: s.ConsentStateOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.ConsentInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        given_at = data.get("given_at") or timezone.now()
        if given_at > timezone.now():
            raise InvalidInput("given_at must not be in the future.", attr="given_at")
        kind, raw = lookup_identifier(data)
        identifier = identifier_find(kind=kind, raw_value=raw)
        if identifier is None:
            raise NotFound("No identifier has this value.", code="identifier_not_found")
        proof: dict[str, Any] = data.get("proof") or {}
        recorded = consent_record(
            identifier_id=identifier.pk,
            choices=[
                ChoiceInput(
                    purpose=choice["purpose"],
                    status=choice["status"],
                    channel=ConsentChannel.API,
                    legal_basis=choice["legal_basis"],
                    provider=choice["provider"],
                    policy_version=choice["policy_version"],
                    ip=proof.get("ip"),
                    user_agent=proof.get("user_agent", ""),
                    given_at=given_at,
                )
                for choice in data["choices"]
            ],
            actor=request_actor(request),
            audit_action=AuditAction.CONSENT_RECORDED,
        )
        states = (
            selectors.profile_consent(recorded.profile_id)
            if recorded.profile_id is not None
            else []
        )
        return Response(
            s.ConsentStateOutputSerializer(
                {
                    "profile_id": recorded.profile_id,
                    "recorded": len(recorded.entries),
                    "states": states,
                }
            ).data
        )


def _profile_id(profile_id: int) -> int:
    profile = profile_current(profile_id)
    if profile is None:
        raise NotFound(f"No profile {profile_id}.", code="profile_not_found")
    return profile.pk


class ProfileConsentView(APIView):
    required_scopes = {Scope.PROFILES_READ}

    @extend_schema(
        operation_id="profiles_consent_retrieve",
        summary="A profile's consent state per purpose",
        description=(
            "Every configured purpose: the state derived from the ledger of the profile's "
            "identifiers, or the purpose's default when nothing was recorded. `allowed` is what "
            "activation (segment members, exports) goes by."
        ),
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: s.ProfileConsentOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        current = _profile_id(profile_id)
        states = selectors.profile_consent(current)
        return Response(
            s.ProfileConsentOutputSerializer({"profile_id": current, "states": states}).data
        )


class ProfileConsentLedgerView(APIView):
    required_scopes = {Scope.PROFILES_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="profiles_consent_ledger_list",
        summary="A profile's consent ledger, newest first (cursor-paginated)",
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: s.LedgerEntrySerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        entries = selectors.profile_consent_ledger(_profile_id(profile_id))
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self) or []
        return paginator.get_paginated_response(s.LedgerEntrySerializer(page, many=True).data)
