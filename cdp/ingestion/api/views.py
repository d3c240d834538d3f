"""Tracking API (Segment HTTP API shape, write-key auth) and the events read API."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.authentication import WriteKeyAuthentication
from cdp.api.errors import InvalidInput, PayloadTooLarge
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.parsers import DEFAULT_MAX_BODY_BYTES
from cdp.api.permissions import IsSource, pii_revealed
from cdp.api.throttling import SourceRateThrottle
from cdp.ingestion import selectors, services
from cdp.ingestion.api import serializers as s
from cdp.ingestion.models import EventType
from cdp.ingestion.pii import REDACTED, events_show_pii
from cdp.ingestion.selectors import SourcePrincipal

ERRORS = {
    400: OpenApiResponse(description="Malformed JSON or every event invalid (per-event errors)."),
    401: OpenApiResponse(description="Missing or invalid write key."),
    413: OpenApiResponse(description="Body or event larger than the limit."),
    415: OpenApiResponse(description="Body is not JSON."),
    429: OpenApiResponse(description="Rate limited; see Retry-After."),
}


class _SourceView(APIView):
    authentication_classes = [WriteKeyAuthentication]
    permission_classes = [IsSource]
    throttle_classes = [SourceRateThrottle]

    @property
    def max_body_bytes(self) -> int:
        return int(settings.CDP_INGEST["MAX_BATCH_BYTES"])

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        # Segment's and RudderStack's SDKs read `message` from an error body (RudderStack's
        # treats a body without it as a transient failure and retries a rejected batch).
        if isinstance(response.data, dict) and "detail" in response.data:
            response.data["message"] = response.data["detail"]
        return response

    def source_id(self, request: Request) -> int:
        principal = request.auth
        assert isinstance(principal, SourcePrincipal)
        return principal.source_id


def _object_body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise InvalidInput("The body must be a JSON object.", code="not_an_object")
    return request.data


def request_context(request: Request, batch_context: Any) -> Any:
    """The batch-level context, with ``gpc: true`` when the request carries the Global Privacy
    Control header (``Sec-GPC: 1``): browsers send it, and it is an opt-out of sale and sharing
    for the person (consent/extraction.py). An event's own ``context.gpc`` wins over it."""
    if request.headers.get("Sec-GPC", "").strip() != "1":
        return batch_context
    if isinstance(batch_context, dict):
        return {"gpc": True, **batch_context}
    return {"gpc": True}


def _tracking_response(result: services.IngestResult) -> Response:
    services.raise_if_all_rejected(result, noun="event")
    return Response(
        {
            "success": True,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": [error.as_dict() for error in result.rejected],
        }
    )


class _SingleCallView(_SourceView):
    call_type: ClassVar[str]

    @property
    def max_body_bytes(self) -> int:
        return int(settings.CDP_INGEST["MAX_EVENT_BYTES"])

    def post(self, request: Request) -> Response:
        result = services.events_ingest(
            source_id=self.source_id(request),
            messages=[_object_body(request)],
            call_type=self.call_type,
            context=request_context(request, None),
        )
        return _tracking_response(result)


def _single_call_view(
    call_type: str, input_serializer: type[serializers.Serializer]
) -> type[_SingleCallView]:
    @extend_schema(
        operation_id=f"tracking_{call_type}",
        summary=f"Segment {call_type} call",
        tags=["tracking"],
        request=input_serializer,
        responses={200: s.TrackingOutputSerializer, **ERRORS},
    )
    def post(self: _SingleCallView, request: Request) -> Response:
        return _SingleCallView.post(self, request)

    name = f"{call_type.capitalize()}View"
    return type(
        name, (_SingleCallView,), {"call_type": call_type, "post": post, "__qualname__": name}
    )


TrackView = _single_call_view(EventType.TRACK, s.TrackInputSerializer)
IdentifyView = _single_call_view(EventType.IDENTIFY, s.IdentifyInputSerializer)
AliasView = _single_call_view(EventType.ALIAS, s.AliasInputSerializer)
PageView = _single_call_view(EventType.PAGE, s.PageInputSerializer)
ScreenView = _single_call_view(EventType.SCREEN, s.PageInputSerializer)
GroupView = _single_call_view(EventType.GROUP, s.GroupInputSerializer)


class BatchView(_SourceView):
    @extend_schema(
        operation_id="tracking_batch",
        summary="Segment batch call: many messages of any type",
        tags=["tracking"],
        request=s.BatchInputSerializer,
        responses={200: s.TrackingOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = _object_body(request)
        batch = body.get("batch")
        if not isinstance(batch, list) or not batch:
            raise InvalidInput("batch must be a non-empty list of messages.", attr="batch")
        result = services.events_ingest(
            source_id=self.source_id(request),
            messages=batch,
            sent_at=body.get("sentAt"),
            context=request_context(request, body.get("context")),
        )
        return _tracking_response(result)


class RecordsView(_SourceView):
    @extend_schema(
        operation_id="records_upsert",
        summary="Upsert up to 1,000 CRM records by (source, external_id)",
        tags=["records"],
        request=s.RecordsInputSerializer,
        responses={200: s.RecordsOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = _object_body(request)
        records = body.get("records")
        if not isinstance(records, list) or not records:
            raise InvalidInput("records must be a non-empty list.", attr="records")
        limit = settings.CDP_INGEST["MAX_RECORDS_PER_REQUEST"]
        if len(records) > limit:
            raise PayloadTooLarge(
                f"At most {limit} records per request.", code="too_many_records", attr="records"
            )
        result = services.records_upsert(source_id=self.source_id(request), records=records)
        services.raise_if_all_rejected(result, noun="record")
        return Response(
            {
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "superseded": result.superseded,
                "rejected": [error.as_dict() for error in result.rejected],
            }
        )

    max_body_bytes = DEFAULT_MAX_BODY_BYTES  # 1,000 records of a few KB each


class EventListView(APIView):
    required_scopes = {Scope.EVENTS_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="events_list",
        summary="Stored events, newest first (cursor-paginated)",
        description=(
            "PII values in traits and context (the CDP_PII_TRAITS keys of traits, "
            "context.traits and context.ip) are shown only to tokens that also hold the "
            f"pii:read scope; otherwise each is present with the value {REDACTED!r}."
        ),
        tags=["events"],
        parameters=[s.EventFilterSerializer],
        responses={200: s.EventOutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = s.EventFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        events = selectors.events_list(
            source=data.get("source"),
            user_id=data.get("user_id"),
            anonymous_id=data.get("anonymous_id"),
            type=data.get("type"),
            event_name=data.get("event"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self) or []
        reveal = bool(page) and pii_revealed(
            request,
            target_type="events",
            target_id=f"{page[-1].pk}-{page[0].pk}",
            what="events_list",
        )
        events_show_pii(page, reveal=reveal)
        return paginator.get_paginated_response(s.EventOutputSerializer(page, many=True).data)
