from __future__ import annotations

from django.contrib import admin

from cdp.crypto.models import DataKey
from cdp.ops.admin_base import ReadOnlyAdmin


@admin.register(DataKey)
class DataKeyAdmin(ReadOnlyAdmin):
    """Read-only: which keys exist, under which master key, and which are destroyed. The wrapped
    bytes are never shown; keys are destroyed by erasure and re-wrapped by ``rotate_keys``. Rows
    are never deleted: a deleted row would turn "key destroyed" into "unknown key"."""

    list_display = ["id", "master_key_id", "created_at", "destroyed_at"]
    list_filter = ["master_key_id", ("destroyed_at", admin.EmptyFieldListFilter)]
    show_facets = admin.ShowFacets.NEVER  # each facet count scans the whole table
    fields = ("id", "master_key_id", "created_at", "destroyed_at")  # never wrapped_key
    readonly_fields = fields
    search_fields = ["=id"]
