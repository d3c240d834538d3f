"""Read-only admin of privacy requests and the suppression list: both are written by services
only (the API, the erasure worker, ``manage.py lift_suppression``)."""

from __future__ import annotations

from django.contrib import admin

from cdp.ops.admin_base import CappedCountPaginator, ReadOnlyAdmin
from consent.models import ConsentEntry, ConsentState, PrivacyRequest, Suppression


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


@admin.register(ConsentEntry)
class ConsentEntryAdmin(ReadOnlyAdmin):
    """The ledger, for stewards answering "why may we (not) email this person?"."""

    list_display = (
        "id",
        "identifier",
        "purpose",
        "status",
        "channel",
        "legal_basis",
        "policy_version",
        "given_at",
    )
    list_filter = ("purpose", "status", "channel")
    list_select_related = ("identifier",)
    search_fields = ("=identifier__id", "=identifier__profile__id")
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = (
        "identifier",
        "purpose",
        "status",
        "legal_basis",
        "channel",
        "source",
        "provider",
        "policy_version",
        "proof_ip_digest",
        "proof_user_agent",
        "event_id",
        "address_bound",
        "actor",
        "given_at",
        "recorded_at",
    )


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ("profile", "purpose", "status", "given_at", "entry")
    list_filter = ("purpose", "status")
    search_fields = ("=profile__id",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = ("profile", "purpose", "status", "given_at", "entry", "opted_out_identifiers")
