from __future__ import annotations

from django.contrib import admin

from cdp.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "display_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["name", "display_prefix", "digest", "scopes", "created_at", "last_used_at"]
    search_fields = ["name", "display_prefix"]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        # Tokens are issued by `manage.py create_api_token`, which shows the secret once.
        return False
