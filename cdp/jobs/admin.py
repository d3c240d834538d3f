from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from cdp.jobs.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["task_name", "status", "attempts", "started_at", "finished_at"]
    list_filter = ["status", "task_name"]
    show_facets = admin.ShowFacets.NEVER  # each facet count scans the whole table
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False
