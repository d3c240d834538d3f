"""manage.py seed_demo: demo login, sources, token and deterministic data through the services."""

from __future__ import annotations

import io
import json
import re
import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from cdp.api import keys
from cdp.api.models import ApiToken, Scope
from cdp.ingestion.models import Event, Record, Source
from cdp.ingestion.pii import events_pii

pytestmark = pytest.mark.django_db

PEOPLE = "40"


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the credentials file out of the checkout's .cdp/."""
    monkeypatch.setenv("CDP_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CDP_DEMO_PASSWORD", raising=False)
    return tmp_path


def seed(*args: str) -> dict[str, str]:
    stdout = io.StringIO()
    call_command("seed_demo", "--people", PEOPLE, *args, stdout=stdout, stderr=io.StringIO())
    output = stdout.getvalue()
    printed = dict(
        re.findall(r"^\s+(Admin|Username|Password|Write key|API token):\s+(\S+)", output, re.M)
    )
    return {**printed, "output": output}


def test_creates_login_sources_token_and_data(state_dir: Path) -> None:
    printed = seed("--seed", "3")

    assert printed["Admin"] == "http://127.0.0.1:8000/admin/"
    assert printed["Username"] == "admin"
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(printed["Password"])
    credentials = state_dir / "demo_credentials.json"
    assert json.loads(credentials.read_text())["password"] == printed["Password"]
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    web = Source.objects.get(name="demo-web")
    crm = Source.objects.get(name="demo-crm")
    assert keys.same(keys.digest(printed["Write key"]), web.write_key_digest)
    token = ApiToken.objects.get(digest=keys.digest(printed["API token"]))
    assert token.is_active and sorted(token.scopes) == sorted(Scope.values)

    events = Event.objects.filter(source=web)
    stored_types = set(events.values_list("type", flat=True))
    assert {"page", "track", "identify", "screen"} <= stored_types
    identifies = list(events.filter(type="identify"))
    assert any(
        "traits.email" in pii
        for pii in events_pii([(e.pii, e.source_id, e.message_id) for e in identifies])
    )
    assert not events.filter(traits__has_key="email").exists()  # only encrypted
    assert events.filter(event_name="Order Completed", properties__has_key="revenue").exists()
    assert Record.objects.filter(source=crm).exists()
    assert f"stored={events.count()} duplicate=0 rejected=0" in printed["output"]


def test_a_second_run_stores_no_new_events_and_changes_no_records() -> None:
    first = seed("--seed", "3")
    event_ids = set(Event.objects.values_list("message_id", flat=True))
    records = dict(Record.objects.values_list("external_id", "seq"))

    second = seed("--seed", "3")

    assert set(Event.objects.values_list("message_id", flat=True)) == event_ids
    assert dict(Record.objects.values_list("external_id", "seq")) == records
    assert f"stored=0 duplicate={len(event_ids)} rejected=0" in second["output"]
    assert f"created=0 updated=0 unchanged={len(records)}" in second["output"]
    # Same login; the write key and the token are new (only digests are stored) ...
    assert second["Password"] == first["Password"]
    web = Source.objects.get(name="demo-web")
    assert keys.same(keys.digest(second["Write key"]), web.write_key_digest)
    assert not keys.same(keys.digest(first["Write key"]), web.write_key_digest)
    # ... and the previous demo token no longer works.
    assert not ApiToken.objects.get(digest=keys.digest(first["API token"])).is_active
    assert get_user_model().objects.filter(username="admin").count() == 1


def test_another_seed_is_other_people() -> None:
    seed("--seed", "3")
    before = Event.objects.count()

    seed("--seed", "4")

    assert Event.objects.count() > before


def test_password_from_the_environment_is_not_written_down(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CDP_DEMO_PASSWORD", "correct horse battery")

    printed = seed()

    assert get_user_model().objects.get(username="admin").check_password("correct horse battery")
    assert "Password:   correct horse battery" in printed["output"]
    assert not (state_dir / "demo_credentials.json").exists()
