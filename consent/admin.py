"""Read-only admin of privacy requests and the suppression list: both are written by services
only (the API, the erasure worker, ``manage.py lift_suppression``)."""

from __future__ import annotations

from django.contrib import admin

from cdp.ops.admin_base import ReadOnlyAdmin
from consent.models import PrivacyRequest, Suppression


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "subject_kind",
        "profile_id",
        "created_at",
        "completed_at",
        "attempts",
    )
    list_filter = ("kind", "status")
    date_hierarchy = "created_at"
    # No subject_blind_index: it is not PII, but nothing a steward reads either.
    fields = (
        "id",
        "kind",
        "status",
        "subject_kind",
        "profile_id",
        "requested_by",
        "reason",
        "created_at",
        "started_at",
        "completed_at",
        "attempts",
        "error",
        "summary",
        "export_expires_at",
    )
    search_fields = ("=id",)


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "request", "created_at", "lifted_at", "lifted_by")
    list_filter = ("kind", ("lifted_at", admin.EmptyFieldListFilter))
    fields = ("id", "kind", "request", "created_at", "lifted_at", "lifted_by", "lift_reason")
    list_select_related = ("request",)
