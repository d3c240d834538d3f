from django.urls import include, path

from segments.api import members, stats, views

urlpatterns = [
    path("segments", views.SegmentListView.as_view(), name="segments-list"),
    path("segments/preview", views.SegmentPreviewView.as_view(), name="segments-preview"),
    path("segments/<int:segment_id>", views.SegmentDetailView.as_view(), name="segments-detail"),
    path(
        "segments/<int:segment_id>/versions",
        views.SegmentVersionsView.as_view(),
        name="segments-versions",
    ),
    path(
        "segments/<int:segment_id>/recompute",
        views.SegmentRecomputeView.as_view(),
        name="segments-recompute",
    ),
    path(
        "segments/<int:segment_id>/members",
        members.SegmentMembersView.as_view(),
        name="segments-members",
    ),
    path(
        "segments/<int:segment_id>/changes",
        members.SegmentChangesView.as_view(),
        name="segments-changes",
    ),
    path(
        "segments/<int:segment_id>/stats", stats.SegmentStatsView.as_view(), name="segments-stats"
    ),
    path(
        "profiles/<int:profile_id>/segments",
        members.ProfileSegmentsView.as_view(),
        name="profiles-segments",
    ),
    # Exports and webhooks (the activation engineer's routes).
    path("", include("segments.api.activation_urls")),
]
