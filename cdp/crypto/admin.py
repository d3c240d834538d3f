from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from cdp.crypto.models import DataKey


@admin.register(DataKey)
class DataKeyAdmin(admin.ModelAdmin):
    """Read-only: which keys exist, under which master key, and which are destroyed. The wrapped
    bytes are never shown; keys are destroyed by erasure and re-wrapped by ``rotate_keys``."""

    list_display = ["id", "master_key_id", "created_at", "destroyed_at"]
    list_filter = ["master_key_id", ("destroyed_at", admin.EmptyFieldListFilter)]
    show_facets = admin.ShowFacets.NEVER  # each facet count scans the whole table
    fields = ("id", "master_key_id", "created_at", "destroyed_at")  # never wrapped_key
    readonly_fields = fields
    search_fields = ["=id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DataKey | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DataKey | None = None) -> bool:
        # A deleted row would turn "key destroyed" into "unknown key" for its ciphertexts.
        return False
