"""The Django admin in a real browser: login, navigation, lists, filters, secrets kept out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from playwright.sync_api import Page, expect

from cdp.api.models import ApiToken
from cdp.api.services import api_token_create
from cdp.ingestion.models import Event, Source
from cdp.ingestion.services import SourceWithKey, events_ingest, records_upsert, source_create
from tests.browser.conftest import submit_login


@pytest.fixture
def web(transactional_db: None) -> SourceWithKey:
    return source_create(name="web")


@pytest.fixture
def ingested(web: SourceWithKey) -> SourceWithKey:
    """Three tracks and two identifies, stored through the real ingestion service."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    tracks = [
        {
            "type": "track",
            "messageId": f"track-{n}",
            "userId": f"user-{n}",
            "event": "Order Completed",
            "timestamp": (start + timedelta(minutes=n)).isoformat(),
            "properties": {"revenue": 10 * (n + 1), "coupon": f"SPRING-{n}"},
        }
        for n in range(3)
    ]
    identifies = [
        {
            "type": "identify",
            "messageId": f"identify-{n}",
            "userId": f"user-{n}",
            "timestamp": start.isoformat(),
            "traits": {"plan": "pro"},
        }
        for n in range(2)
    ]
    result = events_ingest(source_id=web.source.id, messages=[*tracks, *identifies])
    assert (result.accepted, result.rejected) == (5, [])
    return web


def result_rows(page: Page) -> list[str]:
    return page.locator("#result_list tbody tr").all_inner_texts()


@pytest.mark.live
def test_staff_user_logs_in_through_the_form(page: Page, staff_user: User) -> None:
    submit_login(page, staff_user.username)

    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.locator("#user-tools")).to_contain_text("staff")


@pytest.mark.live
def test_non_staff_user_cannot_log_in(page: Page, plain_user: User) -> None:
    submit_login(page, plain_user.username)

    expect(page).to_have_url(re.compile(r"/admin/login/"))
    expect(page.locator(".errornote")).to_contain_text("staff account")
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))


@pytest.mark.live
def test_wrong_password_is_refused(page: Page, staff_user: User) -> None:
    submit_login(page, staff_user.username, "not the password")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/admin/login/"))


@pytest.mark.live
def test_index_lists_the_cdp_models(admin_page: Page) -> None:
    admin_page.goto("/admin/")

    models = admin_page.locator("#content-main")
    for name in ["Sources", "Events", "Records", "API tokens", "Job runs"]:
        expect(models.get_by_role("link", name=re.compile(f"^{name}$", re.I))).to_be_visible()


@pytest.mark.live
def test_events_changelist_renders_and_filters_by_type(
    admin_page: Page, ingested: SourceWithKey, tmp_path: Path
) -> None:
    admin_page.goto("/admin/ingestion/event/")

    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(5)
    expect(admin_page.locator("#result_list")).to_contain_text("Order Completed")
    screenshot = tmp_path / "events_changelist.png"
    admin_page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    # Append-only and large: nothing to delete, no facet counts (each a full scan), no sorting.
    expect(admin_page.locator("select[name=action]")).to_have_count(0)
    expect(admin_page.locator("#changelist-filter")).not_to_contain_text("Show counts")
    expect(admin_page.locator("#result_list thead a")).to_have_count(0)

    admin_page.locator("#changelist-filter").get_by_role("link", name="Identify").click()

    expect(admin_page).to_have_url(re.compile(r"type__exact=identify"))
    expect(rows).to_have_count(2)
    assert all("\tIdentify\t" in row for row in result_rows(admin_page)), result_rows(admin_page)
    expect(admin_page.locator("#result_list")).not_to_contain_text("Order Completed")


@pytest.mark.live
def test_event_detail_shows_properties(admin_page: Page, ingested: SourceWithKey) -> None:
    event = Event.objects.get(message_id="track-2")

    admin_page.goto(f"/admin/ingestion/event/{event.pk}/change/")

    content = admin_page.locator("#content-main")
    expect(content).to_contain_text("SPRING-2")
    expect(content).to_contain_text("revenue")
    expect(content).to_contain_text("track-2")
    # Events are append-only: the page is read-only and offers no save.
    expect(admin_page.locator("input[name=_save]")).to_have_count(0)


@pytest.mark.live
def test_sources_page_shows_the_prefix_never_the_key_or_digest(
    admin_page: Page, web: SourceWithKey
) -> None:
    source = web.source

    admin_page.goto("/admin/ingestion/source/")

    expect(admin_page.locator("#result_list")).to_contain_text(source.write_key_prefix)
    html = admin_page.content()
    assert web.write_key not in html
    assert source.write_key_digest not in html

    admin_page.get_by_role("link", name="web", exact=True).click()

    expect(admin_page).to_have_url(re.compile(rf"/admin/ingestion/source/{source.pk}/change/"))
    expect(admin_page.locator("#content-main")).to_contain_text(source.write_key_prefix)
    html = admin_page.content()
    assert web.write_key not in html
    assert source.write_key_digest not in html


@pytest.mark.live
def test_api_token_page_shows_the_prefix_never_the_token_or_digest(admin_page: Page) -> None:
    issued = api_token_create(name="warehouse", scopes=["events:read"])

    admin_page.goto("/admin/cdp_api/apitoken/")
    expect(admin_page.locator("#result_list")).to_contain_text(issued.token.display_prefix)
    admin_page.get_by_role("link", name="warehouse", exact=True).click()

    expect(admin_page.locator("#content-main")).to_contain_text(issued.token.display_prefix)
    html = admin_page.content()
    assert issued.plaintext not in html
    assert issued.token.digest not in html


@pytest.mark.live
@pytest.mark.parametrize("model", ["ingestion/source", "cdp_api/apitoken"])
def test_secrets_are_not_created_through_the_admin(admin_page: Page, model: str) -> None:
    admin_page.goto(f"/admin/{model}/")
    expect(admin_page.locator("#content-main")).to_be_visible()
    expect(admin_page.locator("a.addlink")).to_have_count(0)

    response = admin_page.goto(f"/admin/{model}/add/")

    assert response is not None and response.status == 403


@pytest.mark.live
def test_records_search_by_external_id(admin_page: Page, web: SourceWithKey) -> None:
    result = records_upsert(
        source_id=web.source.id,
        records=[
            {"external_id": "crm-100", "email": "ada@example.com"},
            {"external_id": "crm-200", "email": "grace@example.com"},
            {"external_id": "crm-300", "email": "alan@example.com"},
        ],
    )
    assert result.created == 3
    admin_page.goto("/admin/ingestion/record/")
    rows = admin_page.locator("#result_list tbody tr")
    expect(rows).to_have_count(3)

    admin_page.fill("#searchbar", "crm-200")
    admin_page.press("#searchbar", "Enter")

    expect(admin_page).to_have_url(re.compile(r"q=crm-200"))
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("crm-200")


def run_action(page: Page, row_text: str, action: str) -> None:
    page.locator("#result_list tbody tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", label=action)
    page.get_by_role("button", name="Go").click()


@pytest.mark.live
def test_disabling_a_source_goes_through_the_service(admin_page: Page, web: SourceWithKey) -> None:
    source_create(name="mobile")
    admin_page.goto("/admin/ingestion/source/")

    run_action(admin_page, "web", "Disable selected sources")

    expect(admin_page.locator(".messagelist")).to_contain_text("Disabled 1 source(s).")
    disabled = dict(Source.objects.values_list("name", "disabled_at"))
    assert disabled["web"] is not None
    assert disabled["mobile"] is None
    # Sources are disabled, never deleted; the change form cannot set disabled_at by hand.
    expect(admin_page.locator("select[name=action] option", has_text="Delete")).to_have_count(0)
    admin_page.goto(f"/admin/ingestion/source/{web.source.pk}/change/")
    expect(admin_page.locator("input[name=disabled_at_0]")).to_have_count(0)


@pytest.mark.live
def test_revoking_a_token_goes_through_the_service(admin_page: Page) -> None:
    kept = api_token_create(name="kept", scopes=["events:read"]).token
    revoked = api_token_create(name="leaked", scopes=["events:read"]).token
    admin_page.goto("/admin/cdp_api/apitoken/")

    run_action(admin_page, "leaked", "Revoke selected tokens")

    expect(admin_page.locator(".messagelist")).to_contain_text("Revoked 1 token(s).")
    revoked.refresh_from_db()
    kept.refresh_from_db()
    assert revoked.revoked_at is not None
    assert kept.revoked_at is None
    # The change page is read-only: no form can un-revoke a token or edit its scopes.
    admin_page.goto(f"/admin/cdp_api/apitoken/{revoked.pk}/change/")
    expect(admin_page.locator("input[name=_save]")).to_have_count(0)
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 1


def changelist_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def add_rows(source: Source, start: int, count: int) -> None:
    numbers = range(start, start + count)
    events_ingest(
        source_id=source.id,
        messages=[
            {"type": "track", "event": "Seen", "userId": f"u{n}", "messageId": f"m{n}"}
            for n in numbers
        ],
    )
    records_upsert(source_id=source.id, records=[{"external_id": f"crm-{n}"} for n in numbers])
    api_token_create(name=f"token-{start}", scopes=["events:read"])


def test_changelists_run_a_fixed_number_of_queries(admin_client: Client) -> None:
    """No per-row queries: one row or twenty, each list costs the same."""
    sources = [source_create(name=f"source-{n}").source for n in range(2)]
    add_rows(sources[0], 0, 1)
    urls = [
        "/admin/ingestion/event/",
        "/admin/ingestion/event/?type__exact=track",
        "/admin/ingestion/record/",
        "/admin/ingestion/record/?q=crm-1",
        "/admin/ingestion/source/",
        "/admin/cdp_api/apitoken/",
        "/admin/jobs/jobrun/",
    ]
    few = {url: changelist_queries(admin_client, url) for url in urls}

    for n, source in enumerate(sources):
        add_rows(source, 100 * (n + 1), 10)

    assert {url: changelist_queries(admin_client, url) for url in urls} == few
