"""The access request API (DSAR): request an export of everything held about a person, and
download it once built.

The subject's identifier value arrives in the body only. The export is built asynchronously
(``consent.tasks.access_request_run``); ``GET /v1/privacy/requests/{id}`` shows its status and,
once completed, ``export_url``. The download is the one response that carries the person's PII
in clear, so it needs ``pii:read`` on top of ``privacy:write``, is never cached and is audited.
"""

from __future__ import annotations

import io
import uuid

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.models import Scope
from cdp.api.permissions import request_actor
from consent.api import privacy_serializers as s
from consent.api.privacy_views import ERRORS, TAGS, privacy_request_post
from consent.privacy.access.run import access_request
from consent.privacy.access.storage import access_export_open


class AccessRequestView(APIView):
    required_scopes = {Scope.PRIVACY_WRITE}

    @extend_schema(
        operation_id="privacy_access_create",
        summary="Request an export of everything held about a person (DSAR)",
        description=(
            "Give exactly one of email, phone, user_id, anonymous_id, or external_id with source "
            "(normalized like the profile lookup), and optionally a reason. The export covers "
            "the person's whole cluster (the profile and every profile merged into it): "
            "identifiers, traits with provenance, trait observations, events, CRM records, "
            "consent states and ledger, merge history and evidence, as JSON files in a zip with "
            "a manifest (docs/privacy.md). Built asynchronously: poll GET "
            "/v1/privacy/requests/{id}; when completed, `export_url` downloads it until "
            "`export_expires_at`. 404 when no identifier has this value."
        ),
        tags=TAGS,
        request=s.PrivacyRequestInputSerializer,
        responses={202: s.PrivacyRequestOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        return privacy_request_post(request, access_request)


class AccessExportView(APIView):
    required_scopes = {Scope.PRIVACY_WRITE, Scope.PII_READ}

    @extend_schema(
        operation_id="privacy_requests_export",
        summary="Download a completed access request's export (a zip of JSON files)",
        description=(
            "Needs privacy:write and pii:read: the zip holds the person's data in clear. "
            "Decrypted on the fly; answered with Cache-Control: no-store and recorded in the "
            "audit log. 409 while the request is not completed, 404 for an unknown request, an "
            "erasure request, or an export past its expiry (its key is destroyed)."
        ),
        tags=TAGS,
        responses={
            (200, "application/zip"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The export zip."
            ),
            401: ERRORS[401],
            403: OpenApiResponse(description="The token lacks privacy:write or pii:read."),
            404: OpenApiResponse(description="No such access request, or its export expired."),
            409: OpenApiResponse(description="The request is not completed yet."),
        },
    )
    def get(self, request: Request, request_id: uuid.UUID) -> FileResponse:
        opened = access_export_open(request_id=request_id, actor=request_actor(request))
        response = FileResponse(
            io.BytesIO(opened.content),
            as_attachment=True,
            filename=opened.filename,
            content_type="application/zip",
        )
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        response["X-Content-Type-Options"] = "nosniff"
        return response
