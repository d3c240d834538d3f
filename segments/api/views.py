"""The segments API, definitions: CRUD with versioned definitions, preview, recompute.
Reads go through ``segments.selectors``, writes through ``segments.services.definitions``.
Members, changes and a profile's segments are in ``segments.api.members``, statistics in
``segments.api.stats``."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import request_actor
from segments import selectors
from segments.api import serializers as s
from segments.services import definitions as services
from segments.services.definitions import UNSET

TAGS = ["segments"]
ERRORS = {
    400: OpenApiResponse(
        description="Invalid body or parameters (error contract); an invalid definition answers "
        "code invalid_definition with every problem in `errors` as {path, reason}."
    ),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
    404: OpenApiResponse(description="No such segment (or it was deleted)."),
}
CONFLICT = OpenApiResponse(description="The name is taken / the segment is still in use.")
SEGMENT_ID = OpenApiParameter("segment_id", int, OpenApiParameter.PATH, description="A segment id.")
READ_WRITE = {"GET": {Scope.SEGMENTS_READ}, "POST": {Scope.SEGMENTS_WRITE}}


def _segment_body(segment: object) -> dict[str, object]:
    return dict(s.SegmentOutputSerializer(segment).data)


class SegmentListView(APIView):
    required_scopes = READ_WRITE
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="segments_list",
        summary="Segments, newest first (cursor-paginated)",
        tags=TAGS,
        responses={200: s.SegmentOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.segments_live(), request, view=self) or []
        return paginator.get_paginated_response(s.SegmentOutputSerializer(page, many=True).data)

    @extend_schema(
        operation_id="segments_create",
        summary="Create a segment (version 1 of its definition); its recompute is enqueued",
        description=(
            "The definition is validated (docs/segments.md); references to other segments must "
            "name live ones. The segment has no members until its first recompute, and is "
            "`too_small` until then."
        ),
        tags=TAGS,
        request=s.SegmentCreateSerializer,
        responses={201: s.SegmentOutputSerializer, 409: CONFLICT, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.SegmentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        segment = services.segment_create(
            name=data["name"],
            description=data.get("description", ""),
            purpose=data["purpose"],
            min_size=data.get("min_size"),
            fallback_id=data.get("fallback"),
            definition=data["definition"],
            actor=request_actor(request),
        )
        return Response(_segment_body(segment), status=status.HTTP_201_CREATED)


class SegmentDetailView(APIView):
    required_scopes = {
        "GET": {Scope.SEGMENTS_READ},
        "PATCH": {Scope.SEGMENTS_WRITE},
        "DELETE": {Scope.SEGMENTS_WRITE},
    }

    @extend_schema(
        operation_id="segments_retrieve",
        summary="A segment",
        tags=TAGS,
        parameters=[SEGMENT_ID],
        responses={200: s.SegmentOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        return Response(_segment_body(selectors.segment_get(segment_id)))

    @extend_schema(
        operation_id="segments_partial_update",
        summary="Change a segment; a new definition becomes a new version",
        description=(
            "Give any of the fields. A definition different from the current one is stored as "
            "the next version (`version` + 1) and a recompute is enqueued; name, description, "
            "purpose, min_size and fallback change in place, without a new version."
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID],
        request=s.SegmentUpdateSerializer,
        responses={200: s.SegmentOutputSerializer, 409: CONFLICT, **ERRORS},
    )
    def patch(self, request: Request, segment_id: int) -> Response:
        body = s.SegmentUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        segment = services.segment_update(
            segment_id=segment_id,
            actor=request_actor(request),
            name=data.get("name", UNSET),
            description=data.get("description", UNSET),
            purpose=data.get("purpose", UNSET),
            min_size=data.get("min_size", UNSET),
            fallback_id=data.get("fallback", UNSET),
            definition=data.get("definition", UNSET),
        )
        return Response(_segment_body(segment))

    @extend_schema(
        operation_id="segments_destroy",
        summary="Delete a segment (soft: its versions and past memberships are kept)",
        description=(
            "Its open memberships end (exit reason `deleted`) and its name is free again. "
            "Refused (409 segment_in_use) while another segment's definition refers to it or "
            "falls back on it."
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID],
        responses={204: None, 409: CONFLICT, **ERRORS},
    )
    def delete(self, request: Request, segment_id: int) -> Response:
        services.segment_delete(segment_id=segment_id, actor=request_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SegmentVersionsView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="segments_versions_list",
        summary="Every definition a segment has had, newest first (cursor-paginated)",
        tags=TAGS,
        parameters=[SEGMENT_ID],
        responses={200: s.SegmentVersionOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        segment = selectors.segment_get(segment_id)
        paginator = self.pagination_class()
        versions = selectors.segment_versions(segment.pk)
        page = paginator.paginate_queryset(versions, request, view=self) or []
        return paginator.get_paginated_response(
            s.SegmentVersionOutputSerializer(page, many=True).data
        )


class SegmentPreviewView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_preview",
        summary="Estimated size and a sample of an unsaved definition (nothing is stored)",
        description=(
            "The definition is validated and compiled as when saved, then its query is counted "
            "under a time budget (CDP_SEGMENTS_PREVIEW_BUDGET_MS, default 1000 ms): within it, "
            "`method` is `exact`, the size is the exact count now and `sample` a random sample "
            "of up to 20 matching profile ids drawn in the same pass. When counting runs out of "
            "time, `method` is `planner_estimate`: the size is PostgreSQL's row estimate for "
            "the query (EXPLAIN, from table statistics; it can be far off for selective "
            "conditions) and the sample the first matches found within a second budget (maybe "
            "fewer, maybe none). With `purpose`, only people allowed for it are counted."
        ),
        tags=TAGS,
        request=s.PreviewInputSerializer,
        responses={200: s.PreviewOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.PreviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        preview = selectors.segment_preview(
            body.validated_data["definition"],
            purpose=body.validated_data.get("purpose"),
            now=timezone.now(),
        )
        return Response(s.PreviewOutputSerializer(preview).data)


class SegmentRecomputeView(APIView):
    required_scopes = {Scope.SEGMENTS_WRITE}

    @extend_schema(
        operation_id="segments_recompute",
        summary="Recompute a segment's members fully (asynchronous)",
        description=(
            "Enqueues a full recompute and answers 202 at once. One recompute of a segment runs "
            "at a time; `computed_at` and `member_count` on the segment tell when it has run."
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID],
        request=None,
        responses={202: s.RecomputeOutputSerializer, **ERRORS},
    )
    def post(self, request: Request, segment_id: int) -> Response:
        segment = services.segment_recompute_request(segment_id=segment_id)
        body = {"segment_id": segment.pk, "version": segment.version, "status": "enqueued"}
        return Response(s.RecomputeOutputSerializer(body).data, status=status.HTTP_202_ACCEPTED)
