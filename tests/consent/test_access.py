"""Access requests (DSAR): the export holds everything about the person's cluster, decrypted; it
is stored encrypted, expires by crypto-shredding, is downloaded only with pii:read, and every step
is audited without values."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.envelope import decrypt_bytes
from cdp.crypto.errors import KeyDestroyed
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.crypto.services import data_keys_destroy
from cdp.ingestion.models import Event
from cdp.jobs.models import JobRun, JobStatus
from consent.models import PrivacyRequest, PrivacyRequestKind, PrivacyRequestStatus
from consent.privacy.access import (
    ExportSection,
    ExportSubject,
    ExportTooLarge,
    access_export_build,
    access_export_write,
    access_sections_register,
    access_sections_unregister,
    access_subject,
)
from consent.privacy.access import sections as builtin
from consent.privacy.access.run import access_run
from consent.privacy.access.storage import (
    access_export_open,
    access_exports_expire,
    export_aad,
)
from consent.privacy.requests import privacy_request_create
from consent.tasks import access_exports_expire_due, access_requests_run_pending
from identity.models import Identifier
from tests.conftest import post_json
from tests.consent.access_person import (
    CRM_PHONE,
    EMAIL,
    IP,
    SHARED_ANON,
    Person,
    export_read,
    person_build,
)
from tests.identity.resolving import ingest, message, resolve

pytestmark = pytest.mark.django_db

ACCESS = "/v1/privacy/access"
Client = Callable[..., APIClient]


@pytest.fixture
def person() -> Person:
    return person_build(tracks=5)


def _request(client: APIClient, body: dict[str, Any], capture: Any) -> Any:
    """POST an access request without reaching the broker (the test runs the worker itself)."""
    with capture(execute=False):
        return post_json(client, ACCESS, body)


def _requested(api_client: Client, capture: Any, **body: Any) -> uuid.UUID:
    response = _request(api_client("privacy:write"), body, capture)
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending" and response.json()["kind"] == "access"
    return uuid.UUID(response.json()["id"])


def _download(client: APIClient, request_id: uuid.UUID) -> Any:
    return client.get(f"/v1/privacy/requests/{request_id}/export")


def _files_of(response: Any) -> dict[str, Any]:
    return export_read(b"".join(response.streaming_content))


# --- completeness -----------------------------------------------------------------------------
def test_the_export_holds_everything_about_the_cluster(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request_id = _requested(api_client, django_capture_on_commit_callbacks, email=EMAIL.upper())
    done = access_run(request_id)
    assert done is not None and done.status == PrivacyRequestStatus.COMPLETED

    status = api_client("privacy:write").get(f"/v1/privacy/requests/{request_id}").json()
    assert status["status"] == "completed"
    assert status["export_url"] == f"/v1/privacy/requests/{request_id}/export"
    response = _download(api_client("privacy:write", "pii:read"), request_id)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Cache-Control"] == "no-store"
    assert f'filename="access-export-{request_id}.zip"' in response["Content-Disposition"]
    files = _files_of(response)

    identifiers = {row["id"]: row for row in files["identifiers.json"]}
    held = Identifier.objects.filter(profile_id=person.profile_id)
    assert set(identifiers) == set(held.values_list("pk", flat=True))
    values = {(row["kind"], row["value"]) for row in identifiers.values()}
    assert {
        ("user_id", "ada"),
        ("anonymous_id", "anon-ada"),
        ("anonymous_id", "anon-phone"),  # the alias-merged profile's
        ("email", EMAIL),
        ("external", "crm:C-1"),
        ("phone", "+442079460958"),
    } == values
    assert all(row["first_seen_at"] and row["last_seen_at"] for row in identifiers.values())
    assert identifiers[held.get(kind="user_id").pk]["event_count"] == 8  # 2 identify, 5, alias

    events = files["events.jsonl"]
    in_db = list(
        Event.objects.filter(identifier_id__in=list(identifiers)).values_list("pk", flat=True)
    )
    assert [row["id"] for row in events] == sorted(in_db)
    assert len(events) == 9 == files["manifest.json"]["counts"]["events"]
    identify = next(row for row in events if row["type"] == "identify" and row["traits"])
    assert identify["traits"] == {"email": EMAIL, "firstName": "Ada", "plan": "pro"}
    assert identify["context"] == {"ip": IP, "locale": "en-GB"}
    assert {row["identifier_id"] for row in events} <= set(identifiers)

    traits = {row["name"]: row for row in files["traits.json"]}
    assert traits["email"]["value"] == EMAIL and traits["email"]["pii"] is True
    assert traits["firstName"]["value"] == "Ada" and traits["firstName"]["source"] == "web"
    assert traits["phone"]["value"] == CRM_PHONE and traits["phone"]["origin"] == "record"
    assert traits["plan"]["value"] == "pro" and traits["plan"]["rule"] == "most_recent"
    assert all("observation_id" in row and "observed_at" in row for row in traits.values())
    observed = {
        (row["name"], row["source"]): row["value"] for row in files["trait_observations.json"]
    }
    assert observed[("email", "web")] == observed[("email", "crm")] == EMAIL

    (record,) = files["records.json"]
    assert record["source"] == "crm" and record["external_id"] == "C-1"
    assert record["fields"] == {"email": EMAIL, "phone": CRM_PHONE, "last_name": "Byron"}

    ledger = files["consent_ledger.json"]
    assert [(row["purpose"], row["status"], row["channel"]) for row in ledger] == [
        ("marketing_email", "granted", "api"),
        ("sale_or_share", "denied", "gpc"),
    ]
    assert ledger[1]["proof_user_agent"] == "Firefox"
    states = {row["purpose"]: row for row in files["consent_states.json"]}
    assert states["marketing_email"]["status"] == "granted" and states["marketing_email"]["allowed"]
    assert states["sale_or_share"]["allowed"] is False
    assert states["analytics"]["is_default"] is True

    profiles = files["profiles.json"]
    assert [(row["id"], row["current"], row["merged_into"]) for row in profiles] == [
        (person.profile_id, True, None),
        (person.absorbed_profile_id, False, person.profile_id),
    ]
    history = files["merge_history.json"]
    merge = next(row for row in history if row["action"] == "merge")
    assert merge["other_profile_id"] == person.absorbed_profile_id
    assert merge["edge"]["rule"] == "alias"
    assert merge["edge"]["evidence"] == {"fields": ["userId", "previousId"]}
    unmerge = next(row for row in history if row["action"] == "unmerge")
    assert unmerge["other_profile_id"] == person.split_profile_id
    assert unmerge["reason"] == "shared laptop"
    assert unmerge["edge"]["invalidated_by"] == "api:steward"
    rules = {row["rule"] for row in files["evidence.json"]}
    assert {"identify", "alias", "crm_record"} <= rules

    # The shared laptop's anonymous id was split off: it is someone else's identifier now (the
    # person's own identify call that named it stays among their events).
    assert all(value != SHARED_ANON for _, value in values)

    manifest = files["manifest.json"]
    assert manifest["format_version"] == 1
    assert manifest["request_id"] == str(request_id)
    assert manifest["profile_id"] == person.profile_id
    assert sorted(manifest["profile_ids"]) == sorted(
        [person.profile_id, person.absorbed_profile_id]
    )
    listed = {entry["name"]: entry for entry in manifest["files"]}
    assert set(listed) | {"manifest.json"} == set(files)
    for name, entry in listed.items():
        assert entry["rows"] == len(files[name]) == manifest["counts"][entry["section"]]


def test_events_are_read_in_batches_and_all_exported(
    source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches smaller than the event count: nothing lost or repeated at the seams."""
    web = source.source.pk
    ingest(
        web,
        *(
            message("identify", at=i, userId="bo", traits={"email": f"bo{i}@example.com"})
            for i in range(11)
        ),
    )
    resolve()
    monkeypatch.setattr(builtin, "BATCH_SIZE", 4)
    user = Identifier.objects.get(kind="user_id")
    assert user.profile_id is not None
    files = export_read(access_export_build(profile_id=user.profile_id))
    events = files["events.jsonl"]
    assert [row["id"] for row in events] == sorted(Event.objects.values_list("pk", flat=True))
    assert [row["traits"]["email"] for row in events] == [f"bo{i}@example.com" for i in range(11)]


def test_a_merged_profile_id_exports_its_survivor_cluster(person: Person) -> None:
    subject = access_subject(profile_id=person.absorbed_profile_id)
    assert subject.profile_id == person.profile_id
    assert set(subject.profile_ids) == {person.profile_id, person.absorbed_profile_id}


def test_a_value_whose_key_was_destroyed_is_exported_as_null(person: Person) -> None:
    phone = Identifier.objects.get(kind="phone", profile_id=person.profile_id)
    data_keys_destroy(ids=[phone.data_key_id])
    data_key_cache.clear()
    files = export_read(access_export_build(profile_id=person.profile_id))
    rows = {row["id"]: row for row in files["identifiers.json"]}
    assert rows[phone.pk]["value"] is None
    assert rows[Identifier.objects.get(kind="email").pk]["value"] == EMAIL


# --- storage, expiry ----------------------------------------------------------------------------
def _table_text(request_id: uuid.UUID) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t::text FROM consent_privacyrequest AS t WHERE id = %s", [request_id]
        )
        (row,) = cursor.fetchall()
    return row[0].encode()


def test_the_export_is_stored_encrypted_under_its_own_key(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request_id = _requested(api_client, django_capture_on_commit_callbacks, user_id="ada")
    access_run(request_id)
    stored = PrivacyRequest.objects.get(pk=request_id)
    ciphertext = bytes(stored.export_ciphertext or b"")
    content = decrypt_bytes(ciphertext, aad=export_aad(request_id))
    # A zip names its files in clear in its headers; the stored bytes show none of it.
    assert content.startswith(b"PK\x03\x04") and b"events.jsonl" in content
    text = _table_text(request_id)
    for needle in (b"PK\x03\x04", b"events.jsonl", b"manifest", EMAIL.encode(), b"ada."):
        assert needle not in ciphertext
        assert needle.hex().encode() not in text  # bytea shows as hex
    assert stored.export_data_key_id is not None
    keys_in_use = Identifier.objects.values_list("data_key_id", flat=True)
    assert stored.export_data_key_id not in set(keys_in_use)
    assert stored.export_expires_at is not None
    days = (stored.export_expires_at - (stored.completed_at or stored.created_at)).days
    assert days in (6, 7)  # CDP_ACCESS_EXPORT_DAYS, 7 by default


def test_an_expired_export_is_destroyed(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request_id = _requested(api_client, django_capture_on_commit_callbacks, email=EMAIL)
    access_run(request_id)
    stored = PrivacyRequest.objects.get(pk=request_id)
    copy = bytes(stored.export_ciphertext or b"")  # as a backup would hold it
    assert access_exports_expire() == 0  # not due yet
    PrivacyRequest.objects.filter(pk=request_id).update(export_expires_at="2026-01-01T00:00Z")

    downloader = api_client("privacy:write", "pii:read")
    response = _download(downloader, request_id)  # refused on time alone, before beat runs
    assert response.status_code == 404 and response.json()["code"] == "export_expired"
    assert access_exports_expire() == 1
    assert access_exports_expire() == 0

    stored.refresh_from_db()
    assert stored.export_ciphertext is None
    key = DataKey.objects.get(pk=stored.export_data_key_id or 0)
    assert key.destroyed_at is not None and key.wrapped_key is None
    data_key_cache.clear()
    with pytest.raises(KeyDestroyed):
        decrypt_bytes(copy, aad=export_aad(request_id))
    assert _download(downloader, request_id).status_code == 404
    status = api_client("privacy:write").get(f"/v1/privacy/requests/{request_id}").json()
    assert status["status"] == "completed" and status["export_url"] is None


def test_an_export_past_the_cap_fails_its_request(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    with pytest.raises(ExportTooLarge):
        access_export_write(access_subject(profile_id=person.profile_id), max_bytes=1000)
    settings.CDP_CONSENT = {**settings.CDP_CONSENT, "ACCESS_EXPORT_MAX_BYTES": 1000}
    request_id = _requested(api_client, django_capture_on_commit_callbacks, user_id="ada")
    with pytest.raises(ExportTooLarge):
        access_run(request_id)
    failed = PrivacyRequest.objects.get(pk=request_id)
    assert failed.status == PrivacyRequestStatus.FAILED and failed.error == "ExportTooLarge"
    assert failed.export_ciphertext is None and failed.export_data_key_id is None
    assert AuditEntry.objects.filter(
        action=AuditAction.REQUEST_FAILED, target_id=str(request_id)
    ).exists()
    response = _download(api_client("privacy:write", "pii:read"), request_id)
    assert response.status_code == 409


# --- API: scopes, errors, audit, idempotence -----------------------------------------------------
def test_scopes_and_errors(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    assert (
        _request(
            api_client("pii:read"), {"email": EMAIL}, django_capture_on_commit_callbacks
        ).status_code
        == 403
    )
    unknown = _request(
        api_client("privacy:write"),
        {"email": "nobody@example.com"},
        django_capture_on_commit_callbacks,
    )
    assert unknown.status_code == 404 and "nobody" not in unknown.content.decode()
    invalid = _request(
        api_client("privacy:write"),
        {"email": EMAIL, "user_id": "ada"},
        django_capture_on_commit_callbacks,
    )
    assert invalid.status_code == 400
    assert not PrivacyRequest.objects.exists()

    request_id = _requested(api_client, django_capture_on_commit_callbacks, email=EMAIL)
    full = api_client("privacy:write", "pii:read")
    not_ready = _download(full, request_id)
    assert not_ready.status_code == 409 and not_ready.json()["code"] == "export_not_ready"
    access_run(request_id)
    assert _download(api_client("privacy:write"), request_id).status_code == 403
    assert _download(api_client("pii:read"), request_id).status_code == 403
    assert _download(full, uuid.uuid4()).status_code == 404
    assert _download(full, request_id).status_code == 200


def test_each_step_is_audited_without_values(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request_id = _requested(
        api_client, django_capture_on_commit_callbacks, email=EMAIL, reason="ticket 42"
    )
    access_run(request_id)
    b"".join(_download(api_client("privacy:write", "pii:read"), request_id).streaming_content)
    entries = list(AuditEntry.objects.filter(target_id=str(request_id)).order_by("id"))
    assert [entry.action for entry in entries] == [
        AuditAction.ACCESS_REQUESTED,
        AuditAction.ACCESS_COMPLETED,
        AuditAction.ACCESS_DOWNLOADED,
    ]
    requested, completed, downloaded = entries
    assert requested.actor.startswith("api:") and requested.details["reason"] == "ticket 42"
    assert completed.details["events"] == 9 and completed.details["identifiers"] == 6
    assert completed.details["profiles_merged"] == 1 and completed.details["bytes"] > 0
    assert downloaded.details["bytes"] > completed.details["bytes"] / 2
    for entry in AuditEntry.objects.all():
        text = f"{entry.actor} {entry.target_id} {entry.details}".lower()
        assert "lovelace" not in text and "7946" not in text and "203.0.113" not in text


def test_a_completed_request_is_not_built_again(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    request_id = _requested(api_client, django_capture_on_commit_callbacks, email=EMAIL)
    assert access_run(request_id) is not None
    before = PrivacyRequest.objects.get(pk=request_id)
    assert access_run(request_id) is None
    after = PrivacyRequest.objects.get(pk=request_id)
    assert bytes(after.export_ciphertext or b"") == bytes(before.export_ciphertext or b"")
    assert (after.attempts, after.completed_at, after.export_data_key_id) == (
        1,
        before.completed_at,
        before.export_data_key_id,
    )
    assert AuditEntry.objects.filter(action=AuditAction.ACCESS_COMPLETED).count() == 1


def test_the_export_follows_the_cluster_at_run_time(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    """Requested by an identifier whose profile merges into the person's before the run."""
    ingest(person.web_id, message("page", at=300, anonymousId="anon-tablet", name="Home"))
    resolve()
    request_id = _requested(
        api_client, django_capture_on_commit_callbacks, anonymous_id="anon-tablet"
    )
    ingest(person.web_id, message("identify", at=301, userId="ada", anonymousId="anon-tablet"))
    resolve()
    access_run(request_id)
    files = _files_of(_download(api_client("privacy:write", "pii:read"), request_id))
    assert files["manifest.json"]["profile_id"] == person.profile_id
    assert ("email", EMAIL) in {(r["kind"], r["value"]) for r in files["identifiers.json"]}


# --- the hook for other apps ----------------------------------------------------------------------
@pytest.fixture
def extra_section() -> Iterator[list[ExportSubject]]:
    seen: list[ExportSubject] = []

    def rows(subject: ExportSubject) -> Iterator[dict[str, Any]]:
        seen.append(subject)
        for profile_id in subject.profile_ids:
            yield {"profile_id": profile_id, "segment_id": 7}

    access_sections_register(ExportSection(name="loyalty_points", description="Points.", rows=rows))
    yield seen
    access_sections_unregister("loyalty_points")


def test_another_app_adds_a_section(person: Person, extra_section: list[ExportSubject]) -> None:
    files = export_read(access_export_build(profile_id=person.profile_id))
    (subject,) = extra_section
    assert subject.profile_id == person.profile_id
    assert {row["profile_id"] for row in files["loyalty_points.json"]} == set(subject.profile_ids)
    names = [entry["name"] for entry in files["manifest.json"]["files"]]
    assert names[-1] == "loyalty_points.json"
    assert files["manifest.json"]["counts"]["loyalty_points"] == 2


def test_a_builtin_or_reserved_section_name_is_refused() -> None:
    for name in ("events", "manifest", "not a name"):
        with pytest.raises(ValueError):
            access_sections_register(ExportSection(name=name, description="", rows=lambda s: []))


def test_a_subject_gone_before_the_run_fails_the_request(source: Any) -> None:
    """The subject's identifier no longer exists (erased meanwhile): nothing to export."""
    request = PrivacyRequest.objects.create(
        kind=PrivacyRequestKind.ACCESS,
        subject_kind="email",
        subject_blind_index=b"\x00" * 32,
        requested_by="test",
    )
    with pytest.raises(Exception, match="no longer exists"):
        access_run(request.pk)
    assert PrivacyRequest.objects.get(pk=request.pk).status == PrivacyRequestStatus.FAILED


# --- tasks --------------------------------------------------------------------------------------
def test_the_enqueued_task_builds_the_export_and_records_its_job_run(
    person: Person,
    api_client: Client,
    django_capture_on_commit_callbacks: Any,
    eager_tasks: None,
) -> None:
    """The task itself, run eagerly in this process once the request commits."""
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_json(api_client("privacy:write"), ACCESS, {"user_id": "ada"})
    assert response.status_code == 202 and len(callbacks) == 1
    request = PrivacyRequest.objects.get(pk=response.json()["id"])
    assert request.status == PrivacyRequestStatus.COMPLETED and request.summary["events"] == 9
    run = JobRun.objects.get(task_name="consent.tasks.access_request_run")
    assert run.status == JobStatus.SUCCEEDED and run.result == {
        "request_id": str(request.pk),
        "completed": True,
    }


def test_beat_runs_requests_whose_enqueue_was_lost_and_expires_exports(
    person: Person, api_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    first = _requested(api_client, django_capture_on_commit_callbacks, email=EMAIL)
    second = _requested(api_client, django_capture_on_commit_callbacks, user_id="ada")
    assert access_requests_run_pending() == 2
    assert access_requests_run_pending() == 0
    statuses = PrivacyRequest.objects.filter(pk__in=[first, second]).values_list(
        "status", flat=True
    )
    assert set(statuses) == {PrivacyRequestStatus.COMPLETED}
    PrivacyRequest.objects.filter(pk=first).update(export_expires_at="2026-01-01T00:00Z")
    assert access_exports_expire_due() == 1
    assert PrivacyRequest.objects.get(pk=second).export_ciphertext is not None


def test_an_identifier_not_resolved_yet_exports_itself(source: Any) -> None:
    """Ingestion created the anchor (to encrypt its PII) but the resolver has not run."""
    ingest(source.source.pk, message("identify", userId="cy", traits={"email": "cy@example.com"}))
    request = privacy_request_create(
        kind=PrivacyRequestKind.ACCESS, subject=("user_id", "cy"), requested_by="test"
    )
    assert request.profile_id is None
    done = access_run(request.pk)
    assert done is not None and done.summary["identifiers"] == 1
    assert done.summary["profiles"] == done.summary["events"] == 0
    opened = access_export_open(request_id=request.pk, actor="test")
    files = export_read(opened.content)
    assert [(row["kind"], row["value"]) for row in files["identifiers.json"]] == [("user_id", "cy")]
    assert files["manifest.json"]["profile_id"] is None
