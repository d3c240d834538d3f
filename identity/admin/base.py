"""What the identity admin pages share: view-only bases, limits, the profile filter."""

from __future__ import annotations

import abc
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse

from cdp.ops.admin_base import CappedCountPaginator
from cdp.ops.admin_base import ReadOnlyAdmin as ViewOnlyAdmin
from identity.models import (
    Identifier,
)

BLIND_INDEX_PREFIX_BYTES = 4
UNMERGE_PERMISSION = "identity.unmerge_profile"
UNMERGE_TEMPLATE = "admin/identity/unmerge_confirmation.html"
# The confirming POST carries this field (delete_selected's "post"); the first one does not.
CONFIRM_FIELD = "confirm"
# Each profile is one locked transaction and each row is listed on the confirmation page.
MAX_UNMERGE_ROWS = 100
ENCRYPTED = "encrypted"


class ReadOnlyAdmin(ViewOnlyAdmin):
    """View-only, and no counts or facets that scan a large table."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


class ProfileParameterFilter(admin.SimpleListFilter, abc.ABC):
    """``?profile=<id>``: the rows of one profile. Offered only as a link from the profile page
    (a list of every profile would be the whole table), so its one choice is the value given."""

    title = "profile"
    parameter_name = "profile"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, f"profile {value}")] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        if value is None:
            return None
        if not value.isdigit():
            return queryset.none()
        return self.of_profile(queryset, int(value))

    @abc.abstractmethod
    def of_profile(self, queryset: QuerySet[Any], profile_id: int) -> QuerySet[Any]:
        """The rows of ``queryset`` that belong to the profile."""


class EdgeProfileFilter(ProfileParameterFilter):
    """Edges touching the profile's identifiers, valid or not (also refused links to others)."""

    def of_profile(self, queryset: QuerySet[Any], profile_id: int) -> QuerySet[Any]:
        # The ids first: `a_id IN (...) OR b_id IN (...)` is two scans of the a and b indexes.
        ids = list(Identifier.objects.filter(profile_id=profile_id).values_list("pk", flat=True))
        return queryset.filter(Q(a_id__in=ids) | Q(b_id__in=ids))


class LedgerProfileFilter(ProfileParameterFilter):
    """Ledger entries naming the profile on either side."""

    def of_profile(self, queryset: QuerySet[Any], profile_id: int) -> QuerySet[Any]:
        return queryset.filter(Q(profile_id=profile_id) | Q(other_profile_id=profile_id))


def changelist(model: str, **params: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{reverse(f'admin:identity_{model}_changelist')}?{query}"
