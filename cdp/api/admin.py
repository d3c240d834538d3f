from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from cdp.api.models import ApiToken
from cdp.api.services import api_token_revoke
from cdp.ops.admin_base import ReadOnlyAdmin, admin_actor


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """Tokens are issued by `manage.py create_api_token` (which shows the secret once) and
    revoked through the service (the "revoke" action), never deleted, so the record of who had
    access stays."""

    list_display = ["name", "display_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    # The digest stays out of the page: it is what a token is looked up and checked by.
    fields = ("name", "display_prefix", "scopes", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    search_fields = ["name", "display_prefix"]
    actions = ["revoke"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("cdp_api.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            api_token_revoke(token=token, actor=admin_actor(request))
        self.message_user(request, f"Revoked {len(tokens)} token(s).")
