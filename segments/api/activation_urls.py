"""Routes of the activation API (exports, webhooks), included by ``segments.api.urls``."""

from django.urls import path

from segments.api import exports, webhooks

urlpatterns = [
    path(
        "segments/<int:segment_id>/exports",
        exports.SegmentExportCreateView.as_view(),
        name="segments-exports-create",
    ),
    path(
        "segments/exports/<int:export_id>",
        exports.SegmentExportDetailView.as_view(),
        name="segments-exports-detail",
    ),
    path(
        "segments/exports/<int:export_id>/download",
        exports.SegmentExportDownloadView.as_view(),
        name="segments-exports-download",
    ),
    path(
        "segments/<int:segment_id>/webhooks",
        webhooks.SegmentWebhookListView.as_view(),
        name="segments-webhooks",
    ),
    path(
        "segments/<int:segment_id>/webhooks/<int:webhook_id>",
        webhooks.SegmentWebhookDetailView.as_view(),
        name="segments-webhooks-detail",
    ),
    path(
        "segments/<int:segment_id>/webhooks/<int:webhook_id>/deliveries",
        webhooks.WebhookDeliveryListView.as_view(),
        name="segments-webhooks-deliveries",
    ),
]
