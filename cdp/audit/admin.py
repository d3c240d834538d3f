from __future__ import annotations

from django.contrib import admin

from cdp.audit.models import AuditEntry
from cdp.ops.admin_base import CappedCountPaginator, ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["=target_id", "actor"]
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = ["at", "actor", "action", "target_type", "target_id", "details"]
