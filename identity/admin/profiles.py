"""The profile page: traits with provenance (never a PII value), identifiers by kind, links."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from identity.admin.base import ENCRYPTED, ReadOnlyAdmin, changelist
from identity.models import (
    Identifier,
    Profile,
)
from identity.selectors import profile_current


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
                (changelist("identifier", profile__id__exact=obj.pk, kind__exact=kind), kind, n)
                for kind, n in counts
            ),
        )
        url = changelist("identifier", profile__id__exact=obj.pk)
        return format_html(
            '<span id="profile-identifiers">{}</span> (<a href="{}">all</a>)', kinds, url
        )

    @admin.display(description="evidence")
    def evidence(self, obj: Profile) -> str:
        return format_html(
            '<a href="{}" id="profile-edges">evidence edges</a> · '
            '<a href="{}" id="profile-ledger">merge ledger</a>',
            changelist("edge", profile=obj.pk),
            changelist("mergeledgerentry", profile=obj.pk),
        )
