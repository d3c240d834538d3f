"""Read-only views of the identity graph. Changes go through services (the resolver, merges and
unmerges with their ledger entries), never through these pages.

No page decrypts an identifier value: reading one is an audited action, not a page view. An
identifier shows its kind and the first bytes of its blind index, which say nothing without the
blind index key.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from cdp.ops.admin_base import CappedCountPaginator
from cdp.ops.admin_base import ReadOnlyAdmin as ViewOnlyAdmin
from identity.models import Edge, Identifier, MergeLedgerEntry, Profile

BLIND_INDEX_PREFIX_BYTES = 4


class ReadOnlyAdmin(ViewOnlyAdmin):
    """View-only, and no counts or facets that scan a large table."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdmin):
    list_display = ["id", "merged_into_id", "event_count", "first_seen_at", "last_seen_at"]
    fields = readonly_fields = (
        "id",
        "created_at",
        "merged_into",
        "first_seen_at",
        "last_seen_at",
        "event_count",
        "identifiers_link",
    )
    search_fields = ["=id"]

    @admin.display(description="identifiers")
    def identifiers_link(self, obj: Profile) -> str:
        url = reverse("admin:identity_identifier_changelist")
        return format_html('<a href="{}?profile__id__exact={}">identifiers</a>', url, obj.pk)


@admin.register(Identifier)
class IdentifierAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "blind_index_prefix",
        "profile_id",
        "first_seen_at",
        "last_seen_at",
    ]
    # Never value_ciphertext, and nothing that would decrypt it.
    fields = readonly_fields = (
        "id",
        "kind",
        "blind_index_prefix",
        "profile",
        "data_key_id",
        "first_seen_at",
        "last_seen_at",
    )
    search_fields = ["=id", "=profile__id"]

    @admin.display(description="blind index")
    def blind_index_prefix(self, obj: Identifier) -> str:
        return bytes(obj.blind_index)[:BLIND_INDEX_PREFIX_BYTES].hex() + "…"


@admin.register(Edge)
class EdgeAdmin(ReadOnlyAdmin):
    list_display = ["id", "rule", "a", "b", "applied", "conflict", "invalidated_at", "created_at"]
    list_filter = ["rule", "applied"]
    list_select_related = ["a", "b"]
    fields = readonly_fields = (
        "id",
        "a",
        "b",
        "rule",
        "source",
        "event_id",
        "record",
        "score",
        "evidence",
        "created_at",
        "applied",
        "conflict",
        "invalidated_at",
        "invalidated_by",
        "invalidation_reason",
    )
    search_fields = ["=id", "=a__id", "=b__id"]


@admin.register(MergeLedgerEntry)
class MergeLedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger is append-only: it explains every merge, so nobody edits it here."""

    list_display = ["id", "action", "profile_id", "other_profile_id", "actor", "created_at"]
    list_filter = ["action"]
    fields = readonly_fields = (
        "id",
        "action",
        "profile",
        "other_profile",
        "edge",
        "actor",
        "reason",
        "details",
        "created_at",
    )
    search_fields = ["=profile__id", "=other_profile__id"]
