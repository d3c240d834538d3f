"""Erasure end to end: a person ingested through the tracking API, resolved, erased by email."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.api.errors import NotFound
from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.envelope import decrypt
from cdp.crypto.errors import KeyDestroyed
from cdp.ingestion.models import Event, Record
from cdp.ingestion.services import SourceWithKey
from consent.models import (
    ConsentEntry,
    ConsentState,
    PrivacyRequest,
    PrivacyRequestStatus,
    Suppression,
)
from consent.privacy import shredding
from consent.privacy.erasure import erasure_request, erasure_run, erasures_run
from consent.privacy.requests import STALE_AFTER
from consent.privacy.suppression import suppression_lift
from identity.models import (
    Edge,
    Identifier,
    MergeLedgerEntry,
    Profile,
    ProfileChange,
    TraitObservation,
)
from identity.selectors import identifier_find
from tests.conftest import post_json
from tests.consent.erasing import (
    EMAIL,
    OTHER_EMAIL,
    PHONE,
    Held,
    held_by,
    person_ingest,
    send,
)
from tests.identity.resolving import message, pid, resolve

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(tracking_client: APIClient, source: SourceWithKey) -> dict[str, Held]:
    person_ingest(tracking_client, user_id="ada", email=EMAIL, phone=PHONE, tracks=5)
    person_ingest(
        tracking_client, user_id="grace", email=OTHER_EMAIL, phone="+1 415 555 0100", tracks=3
    )
    return {"ada": held_by("ada"), "grace": held_by("grace")}


def erase(kind: str = "email", value: str = EMAIL) -> PrivacyRequest:
    request = erasure_request(subject=(kind, value), requested_by="test", reason="TICKET-1")
    assert erasure_run(request.pk)
    request.refresh_from_db()
    return request


def unreadable(ciphertext: bytes, aad: bytes) -> bool:
    try:
        decrypt(ciphertext, aad=aad)
    except KeyDestroyed:
        return True
    return False


def test_erasure_removes_the_whole_cluster_and_shreds_its_keys(people: dict[str, Held]) -> None:
    ada, grace = people["ada"], people["grace"]
    assert ada.ciphertexts and ada.events and ada.records and ada.observations and ada.consent
    assert not any(unreadable(*pair) for pair in ada.ciphertexts)

    request = erase()

    assert request.status == PrivacyRequestStatus.COMPLETED
    assert request.summary["identifiers"] == len(ada.identifiers)
    assert request.summary["keys_destroyed"] == len(ada.identifiers)
    assert request.summary["events"] == len(ada.events)
    assert request.summary["records"] == 1
    assert request.summary["observations"] == len(ada.observations)
    assert request.summary["profiles"] == len(ada.profiles)
    # Every former ciphertext, read raw before the erasure, is undecryptable now.
    assert all(unreadable(*pair) for pair in ada.ciphertexts)
    assert not Identifier.objects.filter(pk__in=ada.identifiers).exists()
    assert not Profile.objects.filter(pk__in=ada.profiles).exists()
    assert not Event.objects.filter(pk__in=ada.events).exists()
    assert not Record.objects.filter(pk__in=ada.records).exists()
    assert not TraitObservation.objects.filter(pk__in=ada.observations).exists()
    assert not Edge.objects.filter(pk__in=ada.edges).exists()
    assert not ConsentEntry.objects.filter(pk__in=ada.consent).exists()
    assert not ConsentState.objects.filter(profile_id__in=ada.profiles).exists()
    assert not MergeLedgerEntry.objects.filter(profile_id__in=ada.profiles).exists()
    assert not ProfileChange.objects.filter(profile_id__in=ada.profiles).exists()
    assert Suppression.objects.filter(request=request).count() == len(ada.identifiers)
    # The other person is untouched.
    assert held_by("grace") == grace
    assert not any(unreadable(*pair) for pair in grace.ciphertexts)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", EMAIL),
        ("phone", PHONE),
        ("user_id", "ada"),
        ("anonymous_id", "ada-phone"),
        ("anonymous_id", "ada-laptop"),
        ("external", "web:C-ada"),
    ],
)
def test_every_former_identifier_lookup_is_404(
    people: dict[str, Held], api_client: Any, kind: str, value: str
) -> None:
    client = api_client("profiles:read")
    lookup = {"external": {"external_id": "C-ada", "source": "web"}}.get(kind, {kind: value})
    assert client.post("/v1/profiles/lookup", lookup, format="json").status_code == 200
    erase()
    assert identifier_find(kind=kind, raw_value=value) is None
    response = client.post("/v1/profiles/lookup", lookup, format="json")
    assert response.status_code == 404
    assert pid("user_id", "grace")


def test_reingesting_the_email_does_not_recreate_the_person(
    people: dict[str, Held], tracking_client: APIClient
) -> None:
    erase()
    send(
        tracking_client,
        "/v1/identify",
        message("identify", at=500, anonymousId="new-device", traits={"email": EMAIL}),
    )
    result = resolve()
    assert result.suppressed == 1
    assert identifier_find(kind="email", raw_value=EMAIL) is None
    assert not Event.objects.filter(anonymous_id="new-device").exists()
    # The anchor created at ingest has no profile: nothing answers a lookup by it.
    anonymous = identifier_find(kind="anonymous_id", raw_value="new-device")
    assert anonymous is None or anonymous.profile_id is None


def test_a_suppressed_anchor_gets_no_identifier_at_ingest(
    people: dict[str, Held], tracking_client: APIClient
) -> None:
    erase()
    send(
        tracking_client,
        "/v1/identify",
        message("identify", at=500, userId="ada", traits={"email": EMAIL, "plan": "x"}),
    )
    # Ingestion's PII sealing did not create the user id again: the PII was dropped.
    assert identifier_find(kind="user_id", raw_value="ada") is None
    (event,) = Event.objects.filter(user_id="ada")
    assert event.pii is None and "email" not in event.traits
    assert resolve().suppressed == 1
    assert not Event.objects.filter(user_id="ada").exists()


def test_a_crm_record_carrying_a_suppressed_identifier_is_dropped(
    people: dict[str, Held], tracking_client: APIClient
) -> None:
    erase()
    response = post_json(
        tracking_client, "/v1/records", {"records": [{"external_id": "C-new", "email": EMAIL}]}
    )
    assert response.status_code == 200
    assert resolve().suppressed == 1
    assert not Record.objects.filter(external_id="C-new").exists()
    assert identifier_find(kind="email", raw_value=EMAIL) is None


def test_after_lifting_the_email_can_come_back(
    people: dict[str, Held], tracking_client: APIClient
) -> None:
    request = erase()
    lifted = suppression_lift(kind="email", raw_value=EMAIL, actor="dpo", reason="signed up again")
    assert lifted.request_id == request.pk and lifted.lifted_by == "dpo"
    assert Suppression.objects.filter(pk=lifted.pk).exists()  # kept, stamped
    send(
        tracking_client,
        "/v1/identify",
        message("identify", at=600, userId="ada-2", traits={"email": EMAIL}),
    )
    assert resolve().suppressed == 0
    assert pid("email", EMAIL) == pid("user_id", "ada-2")
    entry = AuditEntry.objects.get(action=AuditAction.SUPPRESSION_LIFTED)
    assert entry.target_id == str(lifted.pk) and entry.details["reason"] == "signed up again"
    with pytest.raises(NotFound):
        suppression_lift(kind="email", raw_value=EMAIL, actor="dpo", reason="again")


def test_audit_entries_name_ids_and_counts_never_values(people: dict[str, Held]) -> None:
    request = erase()
    requested = AuditEntry.objects.get(action=AuditAction.ERASURE_REQUESTED)
    completed = AuditEntry.objects.get(action=AuditAction.ERASURE_COMPLETED)
    assert requested.target_id == completed.target_id == str(request.pk)
    assert requested.details["reason"] == "TICKET-1"
    assert completed.details["events"] == request.summary["events"] > 0
    for entry in (requested, completed):
        text = orjson.dumps(entry.details).decode().lower()
        assert EMAIL.lower() not in text and "ada" not in text


def test_status_moves_pending_running_completed(
    people: dict[str, Held], monkeypatch: pytest.MonkeyPatch
) -> None:
    request = erasure_request(subject=("email", EMAIL), requested_by="test")
    assert request.status == PrivacyRequestStatus.PENDING and request.attempts == 0
    seen: list[str] = []
    original = shredding.scope_erase

    def spy(scope: shredding.Scope, requests: Any) -> Any:
        seen.extend(PrivacyRequest.objects.filter(pk=request.pk).values_list("status", flat=True))
        return original(scope, requests)

    monkeypatch.setattr("consent.privacy.erasure.scope_erase", spy)
    assert erasure_run(request.pk)
    request.refresh_from_db()
    assert seen == [PrivacyRequestStatus.RUNNING]
    assert request.status == PrivacyRequestStatus.COMPLETED
    assert request.attempts == 1 and request.started_at and request.completed_at


def test_a_crash_after_the_keys_are_destroyed_rolls_back_and_a_rerun_completes(
    people: dict[str, Held], monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = people["ada"]
    request = erasure_request(subject=("email", EMAIL), requested_by="test")

    def crash(scope: shredding.Scope) -> None:
        raise RuntimeError("worker died")

    monkeypatch.setattr(shredding, "_events_delete", crash)
    assert not erasure_run(request.pk)
    request.refresh_from_db()
    assert (request.status, request.error, request.attempts) == ("failed", "RuntimeError", 1)
    assert AuditEntry.objects.filter(action=AuditAction.REQUEST_FAILED).count() == 1
    # Rolled back as a whole: nothing half-erased.
    assert not any(unreadable(*pair) for pair in ada.ciphertexts)
    assert pid("email", EMAIL)

    monkeypatch.undo()
    assert erasure_run(request.pk)
    request.refresh_from_db()
    assert (request.status, request.attempts) == ("completed", 2)
    assert all(unreadable(*pair) for pair in ada.ciphertexts)


def test_a_second_run_of_a_completed_request_is_a_no_op(people: dict[str, Held]) -> None:
    request = erase()
    audit = AuditEntry.objects.count()
    assert not erasure_run(request.pk)
    assert not erasures_run()
    again = PrivacyRequest.objects.get(pk=request.pk)
    assert (again.summary, again.attempts, again.completed_at) == (
        request.summary,
        request.attempts,
        request.completed_at,
    )
    assert AuditEntry.objects.count() == audit


def test_a_running_request_whose_worker_died_is_taken_up_again(people: dict[str, Held]) -> None:
    request = erasure_request(subject=("email", EMAIL), requested_by="test")
    PrivacyRequest.objects.filter(pk=request.pk).update(
        status=PrivacyRequestStatus.RUNNING, attempts=1, started_at=timezone.now()
    )
    assert erasures_run() == []  # another worker's, still fresh
    PrivacyRequest.objects.filter(pk=request.pk).update(
        started_at=timezone.now() - STALE_AFTER - timedelta(seconds=1)
    )
    assert erasures_run() == [request.pk]


def test_one_batch_erases_several_people_and_a_repeated_subject_once(
    people: dict[str, Held],
) -> None:
    first = erasure_request(subject=("email", EMAIL), requested_by="test")
    same_person = erasure_request(subject=("user_id", "ada"), requested_by="test")
    other = erasure_request(subject=("phone", "+1 415 555 0100"), requested_by="test")
    assert sorted(erasures_run(), key=str) == sorted([first.pk, same_person.pk, other.pk], key=str)
    summaries = {r.pk: r.summary for r in PrivacyRequest.objects.all()}
    assert summaries[first.pk]["identifiers"] == len(people["ada"].identifiers)
    assert summaries[same_person.pk]["identifiers"] == 0  # erased by the first request
    assert summaries[other.pk]["identifiers"] == len(people["grace"].identifiers)
    assert (
        not Identifier.objects.exists()
        or not Identifier.objects.filter(profile__isnull=False).exists()
    )


def test_unknown_subject_creates_no_request(people: dict[str, Held]) -> None:
    with pytest.raises(NotFound) as raised:
        erasure_request(subject=("email", "nobody@example.com"), requested_by="test")
    assert "nobody" not in str(raised.value)
    assert not PrivacyRequest.objects.exists()


def test_every_foreign_key_to_an_erased_row_is_covered() -> None:
    """A new table pointing at identifiers, profiles, edges or records (segment memberships)
    is deleted with the person unless it is listed as another person's row to null."""
    covered = {(model._meta.label, f.name) for model, f, _ in shredding.references()}
    assert ("consent.ConsentEntry", "identifier") in covered
    assert ("consent.ConsentState", "profile") in covered
    assert ("identity.MergeLedgerEntry", "profile") in covered
    assert ("identity.ProfileChange", "profile") in covered
    assert covered >= shredding.NULLED
