from django.urls import path

from identity.api import matching, views

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
    path(
        "match-candidates",
        matching.MatchCandidateListView.as_view(),
        name="match-candidates",
    ),
    path(
        "match-candidates/<int:candidate_id>/approve",
        matching.MatchCandidateApproveView.as_view(),
        name="match-candidates-approve",
    ),
    path(
        "match-candidates/<int:candidate_id>/reject",
        matching.MatchCandidateRejectView.as_view(),
        name="match-candidates-reject",
    ),
]
