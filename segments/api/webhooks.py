"""The webhook API: a segment's webhooks (create: the secret shown once; list; delete) and each
webhook's delivery log. docs/segments.md, "Activation: exports and webhooks"."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import NotFound
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import request_actor
from segments.activation.models import Webhook, WebhookDelivery
from segments.activation.serving import segment_get_live
from segments.activation.webhooks import webhook_create, webhook_delete
from segments.api import activation_serializers as s

TAGS = ["segments"]
ERRORS = {
    400: OpenApiResponse(description="Invalid body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
    404: OpenApiResponse(description="No such segment or webhook."),
}


def _webhook_of(segment_id: int, webhook_id: int) -> Webhook:
    segment_get_live(segment_id)
    webhook = Webhook.objects.filter(
        pk=webhook_id, segment_id=segment_id, deleted_at__isnull=True
    ).first()
    if webhook is None:
        raise NotFound("No such webhook.", code="webhook_not_found")
    return webhook


class SegmentWebhookListView(APIView):
    required_scopes = {"GET": {Scope.SEGMENTS_READ}, "POST": {Scope.SEGMENTS_WRITE}}

    @extend_schema(
        operation_id="segments_webhooks_list",
        summary="A segment's webhooks",
        tags=TAGS,
        responses={200: s.WebhookOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        segment_get_live(segment_id)
        hooks = Webhook.objects.filter(segment_id=segment_id, deleted_at__isnull=True).order_by(
            "pk"
        )
        return Response(s.WebhookOutputSerializer(hooks, many=True).data)

    @extend_schema(
        operation_id="segments_webhooks_create",
        summary="Add a webhook on the segment's enter / exit events",
        description=(
            "Each member who enters or exits (and is allowed for the segment's consent purpose) "
            "is POSTed as JSON, signed with X-CDP-Signature: t=<unix>,v1=<hex "
            "HMAC-SHA256(secret, '<t>.<body>')>, with X-CDP-Delivery and X-CDP-Event headers; "
            "failures are retried with backoff (docs/segments.md). The secret is in this "
            "response only. The URL must be https:// and resolve to public addresses."
        ),
        tags=TAGS,
        request=s.WebhookInputSerializer,
        responses={201: s.WebhookCreatedSerializer, **ERRORS},
    )
    def post(self, request: Request, segment_id: int) -> Response:
        body = s.WebhookInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        created = webhook_create(
            segment=segment_get_live(segment_id),
            url=body.validated_data["url"],
            events=body.validated_data["events"],
            created_by=request_actor(request),
        )
        data = {**s.WebhookOutputSerializer(created.webhook).data, "secret": created.secret}
        return Response(s.WebhookCreatedSerializer(data).data, status=status.HTTP_201_CREATED)


class SegmentWebhookDetailView(APIView):
    required_scopes = {"DELETE": {Scope.SEGMENTS_WRITE}}

    @extend_schema(
        operation_id="segments_webhooks_destroy",
        summary="Delete a webhook",
        description="Undelivered deliveries end (dead); the delivery log stays readable.",
        tags=TAGS,
        responses={204: None, **ERRORS},
    )
    def delete(self, request: Request, segment_id: int, webhook_id: int) -> Response:
        webhook_delete(webhook=_webhook_of(segment_id, webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookDeliveryListView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="segments_webhooks_deliveries_list",
        summary="A webhook's delivery log, newest first (cursor-paginated)",
        description="Every attempt's time, status code and error; never a response body.",
        tags=TAGS,
        parameters=[s.DeliveryQuerySerializer],
        responses={200: s.DeliveryOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, segment_id: int, webhook_id: int) -> Response:
        segment_get_live(segment_id)
        if not Webhook.objects.filter(pk=webhook_id, segment_id=segment_id).exists():
            raise NotFound("No such webhook.", code="webhook_not_found")
        query = s.DeliveryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        deliveries = WebhookDelivery.objects.filter(webhook_id=webhook_id)
        if "status" in query.validated_data:
            deliveries = deliveries.filter(status=query.validated_data["status"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(deliveries, request, view=self) or []
        return paginator.get_paginated_response(s.DeliveryOutputSerializer(page, many=True).data)
