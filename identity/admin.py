"""Views of the identity graph for data stewards. Every change goes through services (the
resolver, and ``profile_unmerge`` from the two unmerge actions below, each behind its own
permission and a confirmation page asking why), never through admin forms.

No page decrypts anything: reading an identifier value or a PII trait is an audited action, not
a page view. An identifier shows its kind and the first bytes of its blind index, which say
nothing without the blind index key; a PII trait shows that it is encrypted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cdp.api.errors import ApplicationError
from cdp.ops.admin_base import CappedCountPaginator
from cdp.ops.admin_base import ReadOnlyAdmin as ViewOnlyAdmin
from identity.models import (
    ACTOR_MAX_LENGTH,
    Edge,
    Identifier,
    MergeLedgerEntry,
    Profile,
    ResolutionFailure,
)
from identity.selectors import profile_current
from identity.services.resolution import failures_retry
from identity.services.unmerge import MAX_REASON_LENGTH, UnmergeResult, profile_unmerge

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


class _ProfileParameterFilter(admin.SimpleListFilter):
    """``?profile=<id>``: the rows of one profile. Offered only as a link from the profile page
    (a list of every profile would be the whole table), so its one choice is the value given."""

    title = "profile"
    parameter_name = "profile"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, f"profile {value}")] if value else []

    def profile_id(self) -> int | None:
        value = self.value()
        return int(value) if value and value.isdigit() else None


class EdgeProfileFilter(_ProfileParameterFilter):
    """Edges touching the profile's identifiers, valid or not (also refused links to others)."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() is None:
            return None
        profile_id = self.profile_id()
        if profile_id is None:
            return queryset.none()
        # The ids first: `a_id IN (...) OR b_id IN (...)` is two scans of the a and b indexes.
        ids = list(Identifier.objects.filter(profile_id=profile_id).values_list("pk", flat=True))
        return queryset.filter(Q(a_id__in=ids) | Q(b_id__in=ids))


class LedgerProfileFilter(_ProfileParameterFilter):
    """Ledger entries naming the profile on either side."""

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() is None:
            return None
        profile_id = self.profile_id()
        if profile_id is None:
            return queryset.none()
        return queryset.filter(Q(profile_id=profile_id) | Q(other_profile_id=profile_id))


def _changelist(model: str, **params: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{reverse(f'admin:identity_{model}_changelist')}?{query}"


def _trait_value(entry: dict[str, Any]) -> str:
    if entry.get("pii"):
        return ENCRYPTED
    value = entry.get("value")
    return value if isinstance(value, str) else json.dumps(value)


def _trait_origin(entry: dict[str, Any]) -> SafeString:
    origin, origin_id = entry.get("origin"), entry.get("origin_id")
    if origin not in ("event", "record") or origin_id is None:
        return format_html("{}", origin or "")
    url = reverse(f"admin:ingestion_{origin}_change", args=[origin_id])
    return format_html('<a href="{}">{} {}</a>', url, origin, origin_id)


@admin.register(Profile)
class ProfileAdmin(ReadOnlyAdmin):
    list_display = ["id", "merged_into_id", "event_count", "first_seen_at", "last_seen_at"]
    fields = readonly_fields = (
        "id",
        "created_at",
        "survivor",
        "first_seen_at",
        "last_seen_at",
        "event_count",
        "traits_table",
        "identifier_kinds",
        "evidence",
    )
    search_fields = ["=id"]

    @admin.display(description="merged into")
    def survivor(self, obj: Profile) -> str:
        if obj.merged_into_id is None:
            return "—"
        # The live end of the merged_into chain, which holds this profile's identifiers now.
        current = profile_current(obj.pk)
        target = current.pk if current is not None else obj.merged_into_id
        url = reverse("admin:identity_profile_change", args=[target])
        return format_html('<a href="{}" id="survivor-link">profile {}</a>', url, target)

    @admin.display(description="traits")
    def traits_table(self, obj: Profile) -> str:
        traits: dict[str, dict[str, Any]] = obj.traits or {}
        if not traits:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    name,
                    _trait_value(entry),
                    entry.get("rule", ""),
                    entry.get("source", ""),
                    _trait_origin(entry),
                    entry.get("observed_at", ""),
                    entry.get("observations", ""),
                )
                for name, entry in sorted(traits.items())
            ),
        )
        return format_html(
            '<table id="profile-traits"><thead><tr><th>name</th><th>value</th><th>rule</th>'
            "<th>source</th><th>origin</th><th>observed at</th><th>observations</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="identifiers")
    def identifier_kinds(self, obj: Profile) -> str:
        counts = (
            Identifier.objects.filter(profile_id=obj.pk)
            .values_list("kind")
            .annotate(n=Count("pk"))
            .order_by("kind")
        )
        kinds = format_html_join(
            " · ",
            '<a href="{}">{}: {}</a>',
            (
                (_changelist("identifier", profile__id__exact=obj.pk, kind__exact=kind), kind, n)
                for kind, n in counts
            ),
        )
        url = _changelist("identifier", profile__id__exact=obj.pk)
        return format_html(
            '<span id="profile-identifiers">{}</span> (<a href="{}">all</a>)', kinds, url
        )

    @admin.display(description="evidence")
    def evidence(self, obj: Profile) -> str:
        return format_html(
            '<a href="{}" id="profile-edges">evidence edges</a> · '
            '<a href="{}" id="profile-ledger">merge ledger</a>',
            _changelist("edge", profile=obj.pk),
            _changelist("mergeledgerentry", profile=obj.pk),
        )


# --- unmerging from the admin -----------------------------------------------------------------
class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        max_length=MAX_REASON_LENGTH,
        help_text="Why: recorded with the invalidated evidence and in the merge ledger. No PII.",
    )


@dataclass(frozen=True)
class UnmergeTarget:
    """A selected row as the confirmation page lists it, and the live profile it would be
    removed from (None: skipped, ``skipped`` says why)."""

    pk: int
    cells: tuple[object, ...]
    profile_id: int | None
    skipped: str = ""


def can_unmerge(request: HttpRequest) -> bool:
    return request.user.has_perm(UNMERGE_PERMISSION)


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"[:ACTOR_MAX_LENGTH]


def _joined(ids: Sequence[int]) -> str:
    return ", ".join(str(pk) for pk in ids)


def _path_text(path: Sequence[int] | None) -> str:
    if not path:
        return "other evidence"
    kinds = dict(Identifier.objects.filter(pk__in=path).values_list("pk", "kind"))
    return " → ".join(f"{kinds.get(pk, '?')} #{pk}" for pk in path)


class UnmergeActions(ReadOnlyAdmin):
    """The confirmation flow both unmerge actions share (Django's ``delete_selected`` pattern):
    the first POST answers with a page listing the rows and asking for a reason, the confirming
    POST runs the service and goes back to the list with one message per profile."""

    def has_unmerge_permission(self, request: HttpRequest) -> bool:
        """Django's action permission: actions needing it are left out of ``get_actions``."""
        return can_unmerge(request)

    def _confirm_and_run(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        *,
        action: str,
        title: str,
        columns: Sequence[str],
        target: Callable[[Any], UnmergeTarget],
        run: Callable[[HttpRequest, list[UnmergeTarget], str], None],
    ) -> TemplateResponse | None:
        # get_actions already hides the action; this refuses a POST made some other way.
        if not can_unmerge(request):
            raise PermissionDenied
        rows = list(queryset.order_by("pk")[: MAX_UNMERGE_ROWS + 1])
        if len(rows) > MAX_UNMERGE_ROWS:
            self.message_user(
                request, f"Select at most {MAX_UNMERGE_ROWS} rows at a time.", messages.ERROR
            )
            return None
        targets = [target(row) for row in rows]
        form = ReasonForm(request.POST if CONFIRM_FIELD in request.POST else None)
        if form.is_valid():
            run(request, targets, form.cleaned_data["reason"])
            return None
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "confirm_field": CONFIRM_FIELD,
            "columns": columns,
            "targets": targets,
            "runnable": any(t.profile_id is not None for t in targets),
            "form": form,
        }
        return TemplateResponse(request, UNMERGE_TEMPLATE, context)

    def _report(self, request: HttpRequest, subject: str, result: UnmergeResult) -> None:
        removed = f"{subject}: removed edge(s) {_joined(result.edges)}"
        if result.split:
            profiles = _joined([result.profile_id, *result.profiles])
            self.message_user(
                request, f"{removed}; split into profiles {profiles}.", messages.SUCCESS
            )
            return
        path = _path_text(result.still_connected_by)
        self.message_user(
            request,
            f"{removed}; profile {result.profile_id} is still connected through {path}.",
            messages.WARNING,
        )

    def _report_skipped(self, request: HttpRequest, targets: Sequence[UnmergeTarget]) -> None:
        skipped = [t for t in targets if t.profile_id is None]
        if skipped:
            self.message_user(
                request,
                f"Skipped {self.model._meta.verbose_name} "
                + "; ".join(f"{t.pk} ({t.skipped})" for t in skipped)
                + ".",
                messages.WARNING,
            )


def _edge_target(edge: Edge) -> UnmergeTarget:
    cells = (edge.pk, edge.rule, str(edge.a), str(edge.b))
    if edge.invalidated_at is not None:
        return UnmergeTarget(edge.pk, cells, None, "already invalidated")
    if edge.a.profile_id is None or edge.a.profile_id != edge.b.profile_id:
        why = f"refused: {edge.conflict}" if not edge.applied else "not inside one profile"
        return UnmergeTarget(edge.pk, cells, None, why)
    return UnmergeTarget(edge.pk, cells, edge.a.profile_id)


def _identifier_target(identifier: Identifier) -> UnmergeTarget:
    cells = (identifier.pk, identifier.kind)
    if identifier.profile_id is None:
        return UnmergeTarget(identifier.pk, cells, None, "not resolved into a profile")
    return UnmergeTarget(identifier.pk, cells, identifier.profile_id)


@admin.register(Identifier)
class IdentifierAdmin(UnmergeActions):
    list_display = [
        "id",
        "kind",
        "blind_index_prefix",
        "profile_id",
        "first_seen_at",
        "last_seen_at",
    ]
    # Never value_ciphertext, and nothing that would decrypt it.
    fields = readonly_fields = (
        "id",
        "kind",
        "blind_index_prefix",
        "profile",
        "data_key_id",
        "first_seen_at",
        "last_seen_at",
    )
    search_fields = ["=id", "=profile__id"]
    actions = ["detach_from_profile"]

    @admin.display(description="blind index")
    def blind_index_prefix(self, obj: Identifier) -> str:
        return bytes(obj.blind_index)[:BLIND_INDEX_PREFIX_BYTES].hex() + "…"

    @admin.action(description="Detach from its profile", permissions=["unmerge"])
    def detach_from_profile(
        self, request: HttpRequest, queryset: QuerySet[Identifier]
    ) -> TemplateResponse | None:
        return self._confirm_and_run(
            request,
            queryset.defer("value_ciphertext"),
            action="detach_from_profile",
            title="Detach identifiers from their profiles",
            columns=["identifier", "kind"],
            target=_identifier_target,
            run=self._detach,
        )

    def _detach(self, request: HttpRequest, targets: list[UnmergeTarget], reason: str) -> None:
        for target in targets:
            if target.profile_id is None:
                continue
            # Where it is now: detaching an earlier one in this run may have moved it.
            profile_id = Identifier.objects.values_list("profile_id", flat=True).get(pk=target.pk)
            subject = f"Identifier {target.cells[1]} #{target.pk} (profile {profile_id})"
            try:
                result = profile_unmerge(
                    profile_id=profile_id,
                    identifier_id=target.pk,
                    actor=_actor(request),
                    reason=reason,
                )
            except ApplicationError as error:
                self.message_user(request, f"{subject}: {error.detail}", messages.ERROR)
            else:
                self._report(request, subject, result)
        self._report_skipped(request, targets)


@admin.register(Edge)
class EdgeAdmin(UnmergeActions):
    list_display = [
        "id",
        "rule",
        "a",
        "b",
        "profiles",
        "applied",
        "conflict",
        "invalidated_at",
        "created_at",
    ]
    list_filter = [EdgeProfileFilter, "rule", "applied"]
    list_select_related = ["a", "b"]
    fields = readonly_fields = (
        "id",
        "a",
        "b",
        "rule",
        "source",
        "event_id",
        "record",
        "score",
        "evidence",
        "created_at",
        "applied",
        "conflict",
        "invalidated_at",
        "invalidated_by",
        "invalidation_reason",
    )
    search_fields = ["=id", "=a__id", "=b__id"]
    actions = ["remove_evidence_and_unmerge"]

    @admin.display(description="profile")
    def profiles(self, obj: Edge) -> str:
        a, b = obj.a.profile_id, obj.b.profile_id
        return str(a) if a == b else f"{a} / {b}"

    @admin.action(description="Remove evidence and unmerge", permissions=["unmerge"])
    def remove_evidence_and_unmerge(
        self, request: HttpRequest, queryset: QuerySet[Edge]
    ) -> TemplateResponse | None:
        return self._confirm_and_run(
            request,
            queryset.select_related("a", "b"),
            action="remove_evidence_and_unmerge",
            title="Remove evidence and unmerge",
            columns=["edge", "rule", "a", "b"],
            target=_edge_target,
            run=self._unmerge_edges,
        )

    def _unmerge_edges(
        self, request: HttpRequest, targets: list[UnmergeTarget], reason: str
    ) -> None:
        by_profile: dict[int, list[int]] = {}
        for target in targets:
            if target.profile_id is not None:
                by_profile.setdefault(target.profile_id, []).append(target.pk)
        for profile_id, edge_ids in sorted(by_profile.items()):
            subject = f"Profile {profile_id}"
            try:
                result = profile_unmerge(
                    profile_id=profile_id, edge_ids=edge_ids, actor=_actor(request), reason=reason
                )
            except ApplicationError as error:
                self.message_user(request, f"{subject}: {error.detail}", messages.ERROR)
            else:
                self._report(request, subject, result)
        self._report_skipped(request, targets)


@admin.register(MergeLedgerEntry)
class MergeLedgerEntryAdmin(ReadOnlyAdmin):
    """The ledger is append-only: it explains every merge, so nobody edits it here."""

    list_display = ["id", "action", "profile_id", "other_profile_id", "actor", "created_at"]
    list_filter = [LedgerProfileFilter, "action"]
    fields = readonly_fields = (
        "id",
        "action",
        "profile",
        "other_profile",
        "edge",
        "actor",
        "reason",
        "details",
        "created_at",
    )
    search_fields = ["=profile__id", "=other_profile__id"]


@admin.register(ResolutionFailure)
class ResolutionFailureAdmin(ReadOnlyAdmin):
    """Rows the resolver set aside because they failed alone; retrying puts them back in its
    queue (``manage.py retry_resolution_failures`` does the same from a shell)."""

    list_display = ["id", "origin", "origin_id", "failed_at", "error"]
    list_filter = ["origin"]
    fields = readonly_fields = ("id", "origin", "origin_id", "failed_at", "error")
    search_fields = ["=origin_id"]
    actions = ["retry"]

    @admin.action(description="Put back in the resolver's queue", permissions=["view"])
    def retry(self, request: HttpRequest, queryset: QuerySet[ResolutionFailure]) -> None:
        retried = failures_retry(ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Requeued {retried} row(s) for resolution.")
