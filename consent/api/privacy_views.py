"""The privacy request API: erasure requests and every request's status.

The subject's identifier value arrives in the body only (never a URL) and no response, error or
log line repeats it. Requests run asynchronously: a POST answers 202 with the request's id, and
``GET /v1/privacy/requests/{id}`` tells how it went.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import NotFound
from cdp.api.models import Scope
from cdp.api.permissions import request_actor
from consent.api import privacy_serializers as s
from consent.models import PrivacyRequest
from consent.privacy.erasure import erasure_request
from identity.api.views import lookup_identifier

TAGS = ["privacy"]
ERRORS = {
    400: OpenApiResponse(description="Invalid body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks the privacy:write scope."),
    404: OpenApiResponse(description="No identifier has this value / no such request."),
}


def privacy_request_post(request: Request, submit: Callable[..., PrivacyRequest]) -> Response:
    """The body of every request-creating endpoint: one identifier and a reason in, 202 with
    the request out; ``submit`` is the kind's service (erasure, access)."""
    body = s.PrivacyRequestInputSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    created = submit(
        subject=lookup_identifier(body.validated_data),
        requested_by=request_actor(request),
        reason=body.validated_data.get("reason", ""),
    )
    return Response(s.PrivacyRequestOutputSerializer(created).data, status=status.HTTP_202_ACCEPTED)


class _PrivacyView(APIView):
    required_scopes = {Scope.PRIVACY_WRITE}


class ErasureRequestView(_PrivacyView):
    @extend_schema(
        operation_id="privacy_erasure_create",
        summary="Erase a person: the whole identity cluster of one identifier",
        description=(
            "Give exactly one of email, phone, user_id, anonymous_id, or external_id with source "
            "(normalized like the profile lookup), and optionally a reason. Every identifier of "
            "the person's profile (and of the profiles merged into it) is suppressed, their data "
            "keys are destroyed (crypto-shredding: copies of the ciphertext in backups become "
            "unreadable), and their events, CRM records, traits, consent, evidence and profiles "
            "are deleted. Runs asynchronously: poll GET /v1/privacy/requests/{id}."
        ),
        tags=TAGS,
        request=s.PrivacyRequestInputSerializer,
        responses={202: s.PrivacyRequestOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        return privacy_request_post(request, erasure_request)


class PrivacyRequestDetailView(_PrivacyView):
    @extend_schema(
        operation_id="privacy_requests_retrieve",
        summary="A privacy request's status, timestamps and summary counts",
        description=(
            "A completed access request also gives `export_url`, where its export is downloaded "
            "(privacy:write and pii:read) until `export_expires_at`."
        ),
        tags=TAGS,
        responses={200: s.PrivacyRequestOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, request_id: uuid.UUID) -> Response:
        # Not the export itself: up to CDP_ACCESS_EXPORT_MAX_BYTES of ciphertext.
        found = PrivacyRequest.objects.filter(pk=request_id).defer("export_ciphertext").first()
        if found is None:
            raise NotFound("No such privacy request.", code="privacy_request_not_found")
        return Response(s.PrivacyRequestOutputSerializer(found).data)
