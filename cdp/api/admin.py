from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from cdp.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "display_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["name", "display_prefix", "digest", "scopes", "created_at", "last_used_at"]
    search_fields = ["name", "display_prefix"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens are issued by `manage.py create_api_token`, which shows the secret once.
        return False
