"""The export API: request an export of a segment's members (streamed at once when small, an
async job when large), read a job's status, download its file. docs/segments.md, "Activation:
exports and webhooks"."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.models import Scope
from cdp.api.permissions import pii_revealed, request_actor, request_has_scope
from segments.activation.exports import (
    segment_export_get,
    segment_export_open,
    segment_export_request,
)
from segments.activation.models import SegmentExport
from segments.activation.rows import CONTENT_TYPES
from segments.activation.serving import segment_get_live
from segments.api import activation_serializers as s

TAGS = ["segments"]
ERRORS = {
    400: OpenApiResponse(description="Invalid body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
    404: OpenApiResponse(description="No such segment or export."),
}
FILE = OpenApiResponse(
    response=OpenApiTypes.BINARY,
    description="The file: CSV (text/csv) or JSONL (application/x-ndjson).",
)


def _file_response(export: SegmentExport, content: Iterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(content, content_type=CONTENT_TYPES[export.format])
    response["Content-Disposition"] = (
        f'attachment; filename="segment-{export.segment_id}-export-{export.pk}.{export.format}"'
    )
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    response["X-Content-Type-Options"] = "nosniff"
    response["X-CDP-Export"] = str(export.pk)
    response["X-CDP-Served-Segment"] = str(export.served_segment_id)
    return response


class SegmentExportCreateView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_exports_create",
        summary="Export a segment's current members as CSV or JSONL",
        description=(
            "Rows: profile_id, entered_at, traits (PII redacted unless include_pii and the "
            "token holds pii:read; the reveal is audited) and, for a channel purpose with PII, "
            "the addresses that are not opted out. Only people allowed for the segment's "
            "consent purpose. A segment of at most EXPORT_SYNC_MAX_ROWS members (10,000) is "
            "answered at once with the file (200, streamed, Cache-Control: no-store; "
            "X-CDP-Export names the export record); a larger one with 202 and the job, whose "
            "download_url is set once completed. A too-small segment is refused (409 "
            "segment_too_small) unless it has a fallback, which is exported instead "
            "(X-CDP-Served-Segment, and the job's served_segment_id / fallback)."
        ),
        tags=TAGS,
        request=s.ExportInputSerializer,
        responses={
            200: FILE,
            202: s.ExportOutputSerializer,
            **ERRORS,
            409: OpenApiResponse(description="The segment is too small and has no fallback."),
        },
    )
    def post(self, request: Request, segment_id: int) -> Response | StreamingHttpResponse:
        body = s.ExportInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        segment = segment_get_live(segment_id)
        include_pii = body.validated_data["include_pii"] and pii_revealed(
            request, target_type="segment", target_id=segment.pk, what="segment_export"
        )
        requested = segment_export_request(
            segment=segment,
            export_format=body.validated_data["format"],
            include_pii=include_pii,
            requested_by=request_actor(request),
        )
        if requested.stream is not None:
            return _file_response(requested.export, requested.stream)
        response = Response(
            s.ExportOutputSerializer(requested.export).data, status=status.HTTP_202_ACCEPTED
        )
        response["Location"] = reverse(
            "segments-exports-detail", kwargs={"export_id": requested.export.pk}
        )
        return response


class SegmentExportDetailView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_exports_retrieve",
        summary="An export's status",
        tags=TAGS,
        responses={200: s.ExportOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, export_id: int) -> Response:
        return Response(s.ExportOutputSerializer(segment_export_get(export_id)).data)


class SegmentExportDownloadView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_exports_download",
        summary="Download a completed export job's file",
        description=(
            "Decrypted part by part as it streams (Cache-Control: no-store). A file holding PII "
            "needs pii:read too, and the download is audited. 409 while the job is not "
            "completed; 404 once expired (its key is destroyed) or for a streamed export."
        ),
        tags=TAGS,
        responses={
            200: FILE,
            **ERRORS,
            409: OpenApiResponse(description="Not completed yet."),
        },
    )
    def get(self, request: Request, export_id: int) -> StreamingHttpResponse:
        export = segment_export_get(export_id)
        if export.include_pii and not request_has_scope(request, Scope.PII_READ):
            raise PermissionDenied("This export holds PII: the token needs pii:read.")
        content = segment_export_open(export)
        if export.include_pii:
            pii_revealed(
                request,
                target_type="segment_export",
                target_id=export.pk,
                what="segment_export_download",
            )
        return _file_response(export, content)
