"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

The browser is the system one (``/usr/bin/chromium``), never a Playwright download. Without it
the tests fail, naming the package to install, unless ``CDP_SKIP_BROWSER_TESTS=1`` says that
skipping is intended.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission, User
from django.test import Client
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_django import Settings
from pytest_django.live_server_helper import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
# The apps whose admin these tests exercise; the staff user gets every permission on them, so
# that "not offered" in the admin is the ModelAdmin's decision, not a missing permission.
ADMIN_APPS = ["ingestion", "cdp_api", "jobs"]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CDP_SKIP_BROWSER_TESTS") == "1":
        pytest.skip(f"{CHROMIUM} is missing and CDP_SKIP_BROWSER_TESTS=1")
    pytest.fail(
        f"Browser tests need Chromium at {CHROMIUM}: run `apt-get install chromium` "
        "(or set CDP_SKIP_BROWSER_TESTS=1 to skip them).",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium per test module, stopped with the module.

    Playwright's sync API keeps an asyncio loop running in this thread while it is started, and
    Django refuses synchronous ORM calls under a running loop. Tests here call the ORM only
    between browser steps, never concurrently with them, so the guard is lifted for exactly as
    long as Playwright runs; stopping it with the module keeps other test modules guarded.
    """
    _require_chromium()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def _fast_passwords(settings: Settings) -> None:
    # The live server thread reads the same settings object, so logins stay fast too.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_user(transactional_db: None, _fast_passwords: None) -> User:
    user = User.objects.create_user("staff", "staff@example.com", PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
    return user


@pytest.fixture
def plain_user(transactional_db: None, _fast_passwords: None) -> User:
    return User.objects.create_user("member", "member@example.com", PASSWORD)


def submit_login(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill and submit the real admin login form."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


@pytest.fixture
def admin_page(page: Page, staff_user: User, live_server: LiveServer) -> Page:
    """A page with the staff user's session cookie. The login form itself is tested once;
    every other test starts logged in, which saves a form round trip per test."""
    client = Client()
    client.force_login(staff_user)
    session = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": django_settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    return page
