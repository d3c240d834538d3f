from django.urls import path

from identity.api import views

urlpatterns = [
    path("profiles/lookup", views.ProfileLookupView.as_view(), name="profiles-lookup"),
    path("profiles/merge-preview", views.MergePreviewView.as_view(), name="profiles-merge-preview"),
    path("profiles/<int:profile_id>", views.ProfileDetailView.as_view(), name="profiles-detail"),
    path(
        "profiles/<int:profile_id>/identifiers",
        views.ProfileIdentifiersView.as_view(),
        name="profiles-identifiers",
    ),
    path(
        "profiles/<int:profile_id>/events",
        views.ProfileEventsView.as_view(),
        name="profiles-events",
    ),
    path(
        "profiles/<int:profile_id>/graph", views.ProfileGraphView.as_view(), name="profiles-graph"
    ),
    path(
        "profiles/<int:profile_id>/merges",
        views.ProfileMergesView.as_view(),
        name="profiles-merges",
    ),
    path(
        "profiles/<int:profile_id>/unmerge",
        views.ProfileUnmergeView.as_view(),
        name="profiles-unmerge",
    ),
]
