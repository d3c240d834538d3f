from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cdp.ingestion.models import Event, Record, Source
from cdp.ingestion.services import source_disable
from cdp.ops.admin_base import CappedCountPaginator, ReadOnlyAdmin


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ["name", "write_key_prefix", "created_at", "disabled_at"]
    # The digest stays out of the page: it is what a write key is looked up and checked by.
    fields = ["name", "write_key_prefix", "created_at", "disabled_at"]
    # Disabling goes through the service, which also drops cached write keys.
    # Renaming goes through no service and changes nothing a client sees: read-only too.
    readonly_fields = ["name", "write_key_prefix", "created_at", "disabled_at"]
    search_fields = ["name"]
    actions = ["disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # `manage.py create_source` creates sources, showing the write key once.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Source | None = None) -> bool:
        # Sources are disabled, never deleted: their events and records refer to them, and the
        # delete page would look those up in every event partition (source_id has no index).
        return False

    @admin.action(description="Disable selected sources", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Source]) -> None:
        sources = list(queryset.filter(disabled_at__isnull=True))
        for source in sources:
            source_disable(source=source)
        self.message_user(request, f"Disabled {len(sources)} source(s).")


# Traits and context of events stored before PII was encrypted still hold it; ``pii`` is its
# ciphertext (bytes mean nothing on a page).
PII_BEARING_EVENT_FIELDS = {"traits", "context", "pii"}


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):  # events are append-only; retention drops partitions
    list_display = ["id", "type", "event_name", "source", "timestamp", "received_at"]
    list_filter = ["type", "source"]
    list_select_related = ["source"]
    # Counting or sorting the partitioned table scans every partition: counts are capped, facet
    # counts are off, and the only order is the default one (newest id first, from the primary
    # key indexes).
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    sortable_by = ()
    # Identify traits and event context carry PII (email, phone, ip...): stewards see them only
    # through an audited reveal, never on an ordinary page.
    fields = readonly_fields = tuple(
        f.name for f in Event._meta.fields if f.name not in PII_BEARING_EVENT_FIELDS
    )


@admin.register(Record)
class RecordAdmin(ReadOnlyAdmin):  # written by the upsert service only
    list_display = ["external_id", "source", "seq", "updated_at"]
    list_filter = ["source"]
    list_select_related = ["source"]
    search_fields = ["=external_id"]
    show_facets = admin.ShowFacets.NEVER
    # The person fields and free attributes of a CRM record are PII: not shown here (see above).
    fields = readonly_fields = (
        "source",
        "external_id",
        "seq",
        "content_digest",
        "created_at",
        "updated_at",
    )
