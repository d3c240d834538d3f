"""Identifiers, evidence edges, the merge ledger and set-aside rows."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from cdp.api.errors import ApplicationError
from cdp.ops.admin_base import admin_actor
from identity.admin.base import (
    BLIND_INDEX_PREFIX_BYTES,
    EdgeProfileFilter,
    LedgerProfileFilter,
    ReadOnlyAdmin,
)
from identity.admin.unmerging import (
    UnmergeActions,
    UnmergeTarget,
    edge_target,
    identifier_target,
)
from identity.models import (
    Edge,
    Identifier,
    MergeLedgerEntry,
    ResolutionFailure,
)
from identity.services.resolution import failures_retry
from identity.services.unmerge import profile_unmerge


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
            target=identifier_target,
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
                    actor=admin_actor(request),
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
            target=edge_target,
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
                    profile_id=profile_id,
                    edge_ids=edge_ids,
                    actor=admin_actor(request),
                    reason=reason,
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
