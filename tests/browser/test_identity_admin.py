"""The identity admin for a data steward, in a real browser: a profile's traits and identifiers
without any PII, its evidence, and unmerging through the confirmation page, behind its own
permission. Data comes from the real ingestion and resolution services."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.admin.sites import site
from django.contrib.auth.models import Permission, User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import Page, expect
from pytest_django.live_server_helper import LiveServer

from cdp.ingestion.services import source_create
from identity.admin import EdgeAdmin
from identity.models import Edge, EdgeRule, Identifier, LedgerAction, MergeLedgerEntry, Profile
from tests.browser.conftest import PASSWORD
from tests.identity.resolving import ingest, message, pid, resolve

EMAIL = "ada.visitor@analytical.org"
REASON = "Shared family laptop: two people"
VIEW_IDENTITY = ["view_profile", "view_identifier", "view_edge", "view_mergeledgerentry"]


def make_staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="identity", codename__in=codenames)
    )
    return user


@pytest.fixture
def steward(transactional_db: None, _fast_passwords: None) -> User:
    return make_staff("steward", *VIEW_IDENTITY, "unmerge_profile")


@pytest.fixture
def viewer(transactional_db: None, _fast_passwords: None) -> User:
    """Staff who may look at the identity graph but not change it."""
    return make_staff("viewer", *VIEW_IDENTITY)


def log_in(page: Page, live_server: LiveServer, user: User) -> Page:
    client = Client()
    client.force_login(user)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    return page


@pytest.fixture
def merged(transactional_db: None) -> dict[str, int]:
    """An anonymous visitor (who gave an email) and a signed-in user, each resolved into their
    own profile, then merged by an identify call naming both: the visitor's profile survives."""
    web = source_create(name="web").source.pk
    ingest(
        web,
        message("page", anonymousId="anon-1", name="Home"),
        message("identify", at=1, anonymousId="anon-1", traits={"plan": "free", "email": EMAIL}),
        message("track", at=2, userId="u1", event="Signed In"),
        message(
            "identify",
            at=3,
            userId="u1",
            traits={"plan": "pro", "city": "Leeds", "company": "Babbage & Co"},
        ),
    )
    resolve()
    visitor, user = pid("anonymous_id", "anon-1"), pid("user_id", "u1")
    assert visitor != user
    ingest(web, message("identify", at=4, userId="u1", anonymousId="anon-1"))
    resolve()
    assert pid("user_id", "u1") == visitor
    edge = Edge.objects.get(rule=EdgeRule.IDENTIFY, a__kind="anonymous_id", b__kind="user_id")
    return {"visitor": visitor, "user": user, "edge": edge.pk, "user_identifier": edge.b_id}


def run_action(page: Page, row_text: str, action: str) -> None:
    page.locator("#result_list tbody tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", label=action)
    page.get_by_role("button", name="Go").click()


@pytest.mark.live
def test_steward_sees_the_profile_and_unmerges_it_from_the_admin(
    page: Page, live_server: LiveServer, steward: User, merged: dict[str, int]
) -> None:
    visitor, user = merged["visitor"], merged["user"]
    log_in(page, live_server, steward)

    page.goto(f"/admin/identity/profile/{visitor}/change/")

    traits = page.locator("#profile-traits")
    expect(traits.locator("tr", has_text="plan")).to_contain_text("pro")
    expect(traits.locator("tr", has_text="company")).to_contain_text("Babbage & Co")
    expect(traits.locator("tr", has_text="email")).to_contain_text("encrypted")
    expect(traits.locator("tr", has_text="city")).to_contain_text("encrypted")
    expect(traits.locator("tr", has_text="plan")).to_contain_text("most_recent")
    identifiers = page.locator("#profile-identifiers")
    for kind in ["anonymous_id: 1", "email: 1", "user_id: 1"]:
        expect(identifiers).to_contain_text(kind)
    html = page.content()
    for secret in (EMAIL, "ada.visitor", "analytical.org", "Leeds"):
        assert secret not in html

    page.click("#profile-edges")

    expect(page).to_have_url(re.compile(rf"/admin/identity/edge/\?profile={visitor}"))
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)  # anon-1 to its email, anon-1 to u1
    run_action(page, f"user_id #{merged['user_identifier']}", "Remove evidence and unmerge")

    targets = page.locator("#unmerge-targets")
    expect(targets.locator("tbody tr")).to_have_count(1)
    expect(targets).to_contain_text(str(merged["edge"]))
    expect(targets).to_contain_text("identify")
    expect(targets).to_contain_text(f"profile {visitor}")
    page.get_by_role("button", name="Remove evidence and unmerge").click()

    expect(page.locator("#unmerge-form .errorlist")).to_contain_text("This field is required")
    assert Edge.objects.get(pk=merged["edge"]).invalidated_at is None
    page.fill("textarea[name=reason]", REASON)
    page.get_by_role("button", name="Remove evidence and unmerge").click()

    expect(page).to_have_url(re.compile(r"/admin/identity/edge/"))
    expect(page.locator(".messagelist .success")).to_contain_text(
        f"Profile {visitor}: removed edge(s) {merged['edge']}; "
        f"split into profiles {visitor}, {user}."
    )
    # The user's earlier profile is back, the visitor keeps the survivor's id.
    assert pid("user_id", "u1") == user
    assert pid("anonymous_id", "anon-1") == visitor
    assert Profile.objects.get(pk=user).merged_into_id is None
    entry = MergeLedgerEntry.objects.get(action=LedgerAction.UNMERGE)
    assert (entry.profile_id, entry.other_profile_id) == (visitor, user)
    assert (entry.actor, entry.reason, entry.edge_id) == ("admin:steward", REASON, merged["edge"])
    edge = Edge.objects.get(pk=merged["edge"])
    assert (edge.invalidated_by, edge.invalidation_reason) == ("admin:steward", REASON)

    # The ledger link of the profile page lists the merge and the unmerge.
    page.goto(f"/admin/identity/profile/{visitor}/change/")
    page.click("#profile-ledger")
    ledger = page.locator("#result_list tbody tr")
    expect(ledger).to_have_count(2)
    expect(page.locator("#result_list")).to_contain_text("admin:steward")


@pytest.mark.live
def test_merged_profile_links_to_its_survivor(
    page: Page, live_server: LiveServer, viewer: User, merged: dict[str, int]
) -> None:
    log_in(page, live_server, viewer)
    page.goto(f"/admin/identity/profile/{merged['user']}/change/")

    page.click("#survivor-link")

    expect(page).to_have_url(re.compile(rf"/admin/identity/profile/{merged['visitor']}/change/"))


@pytest.mark.live
def test_staff_without_the_permission_is_not_offered_the_unmerge_actions(
    page: Page, live_server: LiveServer, viewer: User, merged: dict[str, int]
) -> None:
    log_in(page, live_server, viewer)

    for model in ["edge", "identifier"]:
        page.goto(f"/admin/identity/{model}/")
        expect(page.locator("#result_list tbody tr").first).to_be_visible()
        expect(page.locator("select[name=action]")).to_have_count(0)
        expect(page.locator("input.action-select")).to_have_count(0)


@pytest.mark.live
def test_detaching_an_identifier_asks_why_and_splits_it_off(
    page: Page, live_server: LiveServer, steward: User, merged: dict[str, int]
) -> None:
    visitor, user_identifier = merged["visitor"], merged["user_identifier"]
    log_in(page, live_server, steward)
    page.goto(f"/admin/identity/identifier/?profile__id__exact={visitor}")

    run_action(page, "user_id", "Detach from its profile")
    page.fill("textarea[name=reason]", REASON)
    page.get_by_role("button", name="Detach identifiers from their profiles").click()

    expect(page.locator(".messagelist .success")).to_contain_text(
        f"Identifier user_id #{user_identifier} (profile {visitor}): removed edge(s) "
        f"{merged['edge']}; split into profiles {visitor}, {merged['user']}."
    )
    assert pid("user_id", "u1") == merged["user"]


def _unmerge_post(client: Client, edge_id: int, *, follow: bool = False) -> Any:
    return client.post(
        "/admin/identity/edge/",
        {
            "action": "remove_evidence_and_unmerge",
            "_selected_action": [edge_id],
            "confirm": "yes",
            "reason": REASON,
        },
        follow=follow,
    )


def test_the_confirming_post_needs_the_permission(
    viewer: User, steward: User, merged: dict[str, int]
) -> None:
    client = Client()
    client.force_login(viewer)

    response = _unmerge_post(client, merged["edge"])

    assert response.status_code in (200, 403)  # not offered, or refused by the action
    assert Edge.objects.get(pk=merged["edge"]).invalidated_at is None
    assert not MergeLedgerEntry.objects.filter(action=LedgerAction.UNMERGE).exists()
    assert pid("user_id", "u1") == merged["visitor"]
    # The action itself refuses too, however it is reached.
    request = RequestFactory().post("/admin/identity/edge/")
    request.user = viewer
    with pytest.raises(PermissionDenied):
        EdgeAdmin(Edge, site).remove_evidence_and_unmerge(request, Edge.objects.all())

    client.force_login(steward)
    response = _unmerge_post(client, merged["edge"])

    assert response.status_code == 302
    assert Edge.objects.get(pk=merged["edge"]).invalidated_by == "admin:steward"
    assert pid("user_id", "u1") == merged["user"]


def test_edges_outside_one_profile_are_skipped_and_domain_errors_are_messages(
    steward: User, merged: dict[str, int]
) -> None:
    client = Client()
    client.force_login(steward)
    assert _unmerge_post(client, merged["edge"]).status_code == 302

    # Invalidated now: listed as skipped, never an error page.
    response = client.post(
        "/admin/identity/edge/",
        {"action": "remove_evidence_and_unmerge", "_selected_action": [merged["edge"]]},
    )
    assert response.status_code == 200
    assert "skipped: already invalidated" in response.content.decode()
    response = _unmerge_post(client, merged["edge"], follow=True)
    shown = [str(m) for m in response.context["messages"]]
    assert shown == [f"Skipped edge {merged['edge']} (already invalidated)."]

    # The identifier, split off alone, has no evidence left to detach: the service says so.
    response = client.post(
        "/admin/identity/identifier/",
        {
            "action": "detach_from_profile",
            "_selected_action": [merged["user_identifier"]],
            "confirm": "yes",
            "reason": REASON,
        },
        follow=True,
    )
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    assert errors == [
        f"Identifier user_id #{merged['user_identifier']} (profile {merged['user']}): "
        f"Identifier {merged['user_identifier']} has no valid evidence left to remove."
    ]
    assert EMAIL not in response.content.decode()


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200, url
    return len(queries)


def test_identity_lists_run_a_fixed_number_of_queries(
    steward: User, merged: dict[str, int]
) -> None:
    client = Client()
    client.force_login(steward)
    visitor = merged["visitor"]
    urls = [
        "/admin/identity/profile/",
        "/admin/identity/identifier/",
        f"/admin/identity/identifier/?profile__id__exact={visitor}",
        "/admin/identity/edge/",
        f"/admin/identity/edge/?profile={visitor}",
        "/admin/identity/mergeledgerentry/",
        f"/admin/identity/mergeledgerentry/?profile={visitor}",
    ]
    few = {url: _queries(client, url) for url in urls}

    web = source_create(name="more").source.pk
    for n in range(8):  # more people, merges, and links to the visitor its user id refuses
        ingest(
            web,
            message("identify", anonymousId=f"a{n}", traits={"email": f"p{n}@example.org"}),
            message("identify", at=1, anonymousId=f"a{n}", userId=f"user-{n}"),
            message("identify", at=2, anonymousId="anon-1", userId=f"user-{n}"),
        )
    for n in range(3):  # and more evidence inside the visitor's profile
        ingest(web, message("identify", at=3, anonymousId="anon-1", traits={"email": f"q{n}@x.io"}))
    resolve()
    assert Identifier.objects.filter(profile_id=visitor).count() > 3  # the visitor's list grew

    assert {url: _queries(client, url) for url in urls} == few
