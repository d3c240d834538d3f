"""The identity admin is read-only and never shows an identifier's value."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from identity.models import Edge, EdgeRule, LedgerAction, MergeLedgerEntry, Profile
from identity.services import identifiers_get_or_create

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "ada.lovelace@analytical.org"
USER = "u-ada-1815"


def test_identity_pages_render_without_plaintext_values(admin_client: Any) -> None:
    found = identifiers_get_or_create(items=[("email", EMAIL), ("user_id", USER)], seen_at=T0)
    email, user = found[("email", EMAIL)], found[("user_id", USER)]
    survivor, merged = Profile.objects.create(), Profile.objects.create()
    email.profile = user.profile = survivor
    email.save(update_fields=["profile"])
    user.save(update_fields=["profile"])
    a, b = sorted([email, user], key=lambda row: row.pk)
    edge = Edge.objects.create(
        a=a, b=b, rule=EdgeRule.IDENTIFY, event_id=1, evidence={"fields": ["traits.email"]}
    )
    entry = MergeLedgerEntry.objects.create(
        action=LedgerAction.MERGE,
        profile=survivor,
        other_profile=merged,
        edge=edge,
        actor="resolver",
    )
    pages = [
        "/admin/identity/profile/",
        f"/admin/identity/profile/{survivor.pk}/change/",
        "/admin/identity/identifier/",
        f"/admin/identity/identifier/?profile__id__exact={survivor.pk}",
        f"/admin/identity/identifier/{email.pk}/change/",
        f"/admin/identity/identifier/{user.pk}/change/",
        "/admin/identity/edge/",
        f"/admin/identity/edge/{edge.pk}/change/",
        "/admin/identity/mergeledgerentry/",
        f"/admin/identity/mergeledgerentry/{entry.pk}/change/",
    ]
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        content = response.content.decode()
        for value in (EMAIL, "ada.lovelace", "analytical.org", USER):
            assert value not in content, page
    shown = admin_client.get(f"/admin/identity/identifier/{email.pk}/change/").content.decode()
    assert bytes(email.blind_index)[:4].hex() in shown
    assert (
        "traits.email"
        in admin_client.get(f"/admin/identity/edge/{edge.pk}/change/").content.decode()
    )


@pytest.mark.parametrize("model", ["profile", "identifier", "edge", "mergeledgerentry"])
def test_identity_admin_cannot_add_change_or_delete(admin_client: Any, model: str) -> None:
    assert admin_client.get(f"/admin/identity/{model}/add/").status_code == 403
    profile = Profile.objects.create()
    if model == "profile":
        response = admin_client.post(f"/admin/identity/profile/{profile.pk}/delete/")
        assert response.status_code == 403
        response = admin_client.post(
            f"/admin/identity/profile/{profile.pk}/change/", {"event_count": 5}
        )
        assert response.status_code == 403
        profile.refresh_from_db()
        assert profile.event_count == 0
    page = admin_client.get(f"/admin/identity/{model}/").content.decode()
    assert "delete_selected" not in page
