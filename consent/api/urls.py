from django.urls import path

from consent.api import access_views, opt_out, privacy_views, unsubscribe, views

urlpatterns = [
    path("consent", views.ConsentRecordView.as_view(), name="consent-record"),
    path(
        "profiles/<int:profile_id>/consent",
        views.ProfileConsentView.as_view(),
        name="profiles-consent",
    ),
    path(
        "profiles/<int:profile_id>/consent/ledger",
        views.ProfileConsentLedgerView.as_view(),
        name="profiles-consent-ledger",
    ),
    path(
        "unsubscribe-links",
        unsubscribe.UnsubscribeLinkCreateView.as_view(),
        name="unsubscribe-links-create",
    ),
    path(
        "unsubscribe-links/batch",
        unsubscribe.UnsubscribeLinkBatchView.as_view(),
        name="unsubscribe-links-batch",
    ),
    path("unsubscribe/<str:token>", unsubscribe.UnsubscribePageView.as_view(), name="unsubscribe"),
    path("privacy/opt-out", opt_out.PrivacyOptOutView.as_view(), name="privacy-opt-out"),
    path("privacy/erasure", privacy_views.ErasureRequestView.as_view(), name="privacy-erasure"),
    path(
        "privacy/requests/<uuid:request_id>",
        privacy_views.PrivacyRequestDetailView.as_view(),
        name="privacy-requests-detail",
    ),
    path("privacy/access", access_views.AccessRequestView.as_view(), name="privacy-access"),
    path(
        "privacy/requests/<uuid:request_id>/export",
        access_views.AccessExportView.as_view(),
        name="privacy-requests-export",
    ),
]
