from __future__ import annotations

from django.contrib import admin

from cdp.jobs.models import JobRun


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["task_name", "status", "attempts", "started_at", "finished_at"]
    list_filter = ["status", "task_name"]
    readonly_fields = [f.name for f in JobRun._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
