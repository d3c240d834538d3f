from __future__ import annotations

from django.contrib import admin

from cdp.ingestion.models import Event, Record, Source


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "write_key_prefix", "created_at", "disabled_at"]
    readonly_fields = ["write_key_prefix", "write_key_digest", "created_at"]
    search_fields = ["name"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # `manage.py create_source` creates sources, showing the write key once.
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "event_name", "source", "timestamp", "received_at"]
    list_filter = ["type", "source"]
    list_select_related = ["source"]
    show_full_result_count = False  # counting a large partitioned table is slow
    readonly_fields = [f.name for f in Event._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin):
    list_display = ["external_id", "source", "seq", "updated_at"]
    list_filter = ["source"]
    list_select_related = ["source"]
    search_fields = ["=external_id"]
    readonly_fields = [f.name for f in Record._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
