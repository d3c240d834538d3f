"""Unmerging from the admin: two actions behind a permission and a confirmation page asking why,
both calling ``profile_unmerge``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from identity.admin.base import (
    CONFIRM_FIELD,
    MAX_UNMERGE_ROWS,
    UNMERGE_PERMISSION,
    UNMERGE_TEMPLATE,
    ReadOnlyAdmin,
)
from identity.models import (
    Edge,
    Identifier,
)
from identity.services.unmerge import MAX_REASON_LENGTH, UnmergeResult


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


def edge_target(edge: Edge) -> UnmergeTarget:
    cells = (edge.pk, edge.rule, str(edge.a), str(edge.b))
    if edge.invalidated_at is not None:
        return UnmergeTarget(edge.pk, cells, None, "already invalidated")
    if edge.a.profile_id is None or edge.a.profile_id != edge.b.profile_id:
        why = f"refused: {edge.conflict}" if not edge.applied else "not inside one profile"
        return UnmergeTarget(edge.pk, cells, None, why)
    return UnmergeTarget(edge.pk, cells, edge.a.profile_id)


def identifier_target(identifier: Identifier) -> UnmergeTarget:
    cells = (identifier.pk, identifier.kind)
    if identifier.profile_id is None:
        return UnmergeTarget(identifier.pk, cells, None, "not resolved into a profile")
    return UnmergeTarget(identifier.pk, cells, identifier.profile_id)
