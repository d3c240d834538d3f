"""Building blocks shared by the apps' admin modules."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

ACTOR_MAX_LENGTH = 200


def admin_actor(request: HttpRequest) -> str:
    """Who an admin action acts as, for ledgers and the audit log."""
    return f"admin:{request.user.get_username()}"[:ACTOR_MAX_LENGTH]


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: rows are written by services (and commands), never through admin forms."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CappedCountPaginator(Paginator):
    """Counts at most ``cap`` rows: an exact ``COUNT(*)`` over a large table (the partitioned
    event table, with or without a filter) reads all of it on each page view. Past the cap the
    admin shows ``cap`` results and pages through that many, newest first."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        rows = cast(QuerySet[Any], self.object_list)
        return rows[: self.cap].count()
