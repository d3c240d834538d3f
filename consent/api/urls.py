from django.urls import path

from consent.api import views

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
]
