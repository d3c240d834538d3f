"""An unsubscribe link in a real browser: the confirmation page shows the address masked, the
button unsubscribes, and the page says so. Data comes from the real ingestion and resolver."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from pytest_django import Settings
from pytest_django.live_server_helper import LiveServer

from cdp.ingestion.services import source_create
from consent.models import ConsentChannel, ConsentEntry
from consent.unsubscribe import unsubscribe_link
from identity.selectors import identifier_find
from tests.identity.resolving import ingest, message, resolve

EMAIL = "ada.reader@example.com"


@pytest.fixture
def email_id(transactional_db: None) -> int:
    source = source_create(name="web")
    ingest(source.source.pk, message("identify", userId="u1", traits={"email": EMAIL}))
    resolve()
    identifier = identifier_find(kind="email", raw_value=EMAIL)
    assert identifier is not None
    return identifier.pk


def test_unsubscribe_through_the_confirmation_page(
    page: Page, live_server: LiveServer, email_id: int, settings: Settings
) -> None:
    settings.CDP_PUBLIC_BASE_URL = live_server.url
    page.goto(unsubscribe_link(identifier_id=email_id, purpose="marketing_email"))
    expect(page.get_by_role("heading")).to_have_text("Unsubscribe from marketing email?")
    expect(page.locator("main")).to_contain_text("a***@example.com")
    assert EMAIL not in page.content()
    assert not ConsentEntry.objects.exists()  # opening the link changed nothing

    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading")).to_have_text("You are unsubscribed")
    assert EMAIL not in page.content()
    entry = ConsentEntry.objects.get()
    assert (entry.channel, entry.address_bound, entry.provider) == (
        ConsentChannel.UNSUBSCRIBE,
        True,
        "unsubscribe-page",
    )
