"""Segment exports: shapes (CSV, JSONL), consent filtering, PII (masked, revealed and audited,
encrypted at rest), channel opt-outs, too-small refusal and fallback, the async job, expiry and
scopes."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.models import DataKey
from cdp.ingestion.services import SourceWithKey
from segments.activation.exports import segment_export_run, segment_exports_expire
from segments.activation.models import ExportStatus, SegmentExport, SegmentExportPart
from segments.models import Segment
from tests.conftest import post_json
from tests.identity.resolving import T0
from tests.segments.activating import (
    activation_settings,
    consent_set,
    people_create,
    segment_with_members,
)

pytestmark = pytest.mark.django_db
Client = Callable[..., APIClient]
ADA, BOB, CY = "ada@example.com", "bob@example.com", "cy@example.com"
BOB_WORK = "bob@work.example.com"


@pytest.fixture
def people(source: SourceWithKey) -> dict[str, int]:
    ids = people_create(
        source.source.pk,
        [
            {"user": "ada", "traits": {"plan": "pro", "age": 36}, "emails": [ADA]},
            {"user": "bob", "traits": {"plan": "free"}, "emails": [BOB, BOB_WORK]},
            {"user": "cy", "traits": {"plan": "team"}, "emails": [CY]},
        ],
    )
    return dict(zip(["ada", "bob", "cy"], ids, strict=True))


def _export(client: APIClient, segment: Segment, **body: Any) -> Any:
    return post_json(client, f"/v1/segments/{segment.pk}/exports", body)


def _content(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def _jsonl(content: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in content.splitlines()]


# --- shapes ---------------------------------------------------------------------------------------
def test_a_small_segment_streams_as_csv(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("vip", [people["ada"], people["bob"]])
    response = _export(api_client("segments:read"), segment, format="csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    export = SegmentExport.objects.get()
    assert response["X-CDP-Export"] == str(export.pk)
    assert (
        f'filename="segment-{segment.pk}-export-{export.pk}.csv"'
        in (response["Content-Disposition"])
    )
    rows = list(csv.reader(io.StringIO(_content(response).decode())))
    assert rows[0] == ["profile_id", "entered_at", "traits"]
    assert [int(row[0]) for row in rows[1:]] == sorted([people["ada"], people["bob"]])
    by_id = {int(row[0]): row for row in rows[1:]}
    ada = by_id[people["ada"]]
    assert ada[1] == T0.isoformat()  # the start of the stay
    assert orjson.loads(ada[2]) == {"plan": "pro", "age": 36, "email": "[redacted]"}
    export.refresh_from_db()
    assert export.streamed and export.status == ExportStatus.COMPLETED and export.row_count == 2
    assert not SegmentExportPart.objects.exists()  # a streamed export stores nothing


def test_jsonl_has_one_object_per_member(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("all", list(people.values()))
    response = _export(api_client("segments:read"), segment, format="jsonl")
    assert response["Content-Type"] == "application/x-ndjson"
    rows = _jsonl(_content(response))
    assert [row["profile_id"] for row in rows] == sorted(people.values())
    assert set(rows[0]) == {"profile_id", "entered_at", "traits"}
    assert {row["traits"]["plan"] for row in rows} == {"pro", "free", "team"}
    assert all(row["traits"]["email"] == "[redacted]" for row in rows)


def test_an_invalid_format_is_refused(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("vip", [people["ada"]])
    response = _export(api_client("segments:read"), segment, format="xlsx")
    assert response.status_code == 400
    assert response.json()["attr"] == "format"


# --- consent --------------------------------------------------------------------------------------
def test_members_not_allowed_for_the_purpose_are_left_out(
    people: dict[str, int], api_client: Client
) -> None:
    consent_set("user_id", "bob", "analytics", "denied")  # analytics is granted by default
    segment = segment_with_members("all", list(people.values()), purpose="analytics")
    rows = _jsonl(_content(_export(api_client("segments:read"), segment, format="jsonl")))
    assert {row["profile_id"] for row in rows} == {people["ada"], people["cy"]}


def test_a_channel_export_leaves_out_opted_out_addresses(
    people: dict[str, int], api_client: Client
) -> None:
    # marketing_email is denied by default: ada and bob grant it, cy does not; bob's work
    # address was unsubscribed before (an unsubscribe link), and stays so.
    consent_set("email", BOB_WORK, "marketing_email", "withdrawn", address_bound=True)
    consent_set("user_id", "ada", "marketing_email", "granted")
    consent_set("user_id", "bob", "marketing_email", "granted")
    segment = segment_with_members("news", list(people.values()), purpose="marketing_email")
    client = api_client("segments:read", "pii:read")
    response = _export(client, segment, format="csv", include_pii=True)
    content = _content(response).decode()
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["profile_id", "entered_at", "email", "traits"]
    emails = {int(row[0]): row[2] for row in rows[1:]}
    assert emails == {people["ada"]: ADA, people["bob"]: BOB}  # not cy, not bob's work address
    assert BOB_WORK not in content and CY not in content
    # bob's email trait held the unsubscribed address: it is left out too.
    traits = {int(row[0]): orjson.loads(row[3]) for row in rows[1:]}
    assert traits[people["bob"]]["email"] is None and traits[people["ada"]]["email"] == ADA


def test_only_current_stays_are_exported(people: dict[str, int], api_client: Client) -> None:
    from segments.models import Membership

    segment = segment_with_members("all", list(people.values()))
    Membership.objects.filter(segment=segment, profile_id=people["cy"]).update(
        exited_at=T0 + timedelta(days=1), exit_reason=Membership.ExitReason.RULE
    )
    rows = _jsonl(_content(_export(api_client("segments:read"), segment, format="jsonl")))
    assert {row["profile_id"] for row in rows} == {people["ada"], people["bob"]}


def test_a_job_applies_consent_as_it_stands_when_it_runs(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)
    segment = segment_with_members("all", list(people.values()), purpose="analytics")
    client = api_client("segments:read")
    export_id = _job(client, segment, django_capture_on_commit_callbacks, format="jsonl")
    consent_set("user_id", "ada", "analytics", "withdrawn")  # after the request, before the run
    segment_export_run(export_id)
    rows = _jsonl(_content(client.get(f"/v1/segments/exports/{export_id}/download")))
    assert {row["profile_id"] for row in rows} == {people["bob"], people["cy"]}


# --- PII ------------------------------------------------------------------------------------------
def test_pii_is_revealed_with_pii_read_and_audited(
    people: dict[str, int], api_client: Client
) -> None:
    segment = segment_with_members("vip", [people["ada"]])
    response = _export(api_client("segments:read", "pii:read"), segment, include_pii=True)
    assert ADA in _content(response).decode()
    assert SegmentExport.objects.get().include_pii is True
    entry = AuditEntry.objects.get(action=AuditAction.PII_REVEALED)
    assert (entry.target_type, entry.target_id) == ("segment", str(segment.pk))
    assert entry.details == {"endpoint": "segment_export"}


def test_pii_stays_masked_without_pii_read(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("vip", [people["ada"]], purpose="analytics")
    response = _export(api_client("segments:read"), segment, format="jsonl", include_pii=True)
    content = _content(response).decode()
    assert ADA not in content and "[redacted]" in content
    assert SegmentExport.objects.get().include_pii is False
    assert not AuditEntry.objects.filter(action=AuditAction.PII_REVEALED).exists()


# --- too small --------------------------------------------------------------------------------
def test_a_too_small_segment_is_refused(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("tiny", [people["ada"]], too_small=True)
    response = _export(api_client("segments:read"), segment)
    assert response.status_code == 409
    assert response.json()["code"] == "segment_too_small"
    assert not SegmentExport.objects.exists()


def test_a_too_small_segment_with_a_fallback_exports_the_fallback(
    people: dict[str, int], api_client: Client
) -> None:
    parent = segment_with_members("parent", list(people.values()))
    segment = segment_with_members("tiny", [people["ada"]], too_small=True, fallback=parent)
    response = _export(api_client("segments:read"), segment, format="jsonl")
    assert response.status_code == 200
    assert response["X-CDP-Served-Segment"] == str(parent.pk)
    assert {row["profile_id"] for row in _jsonl(_content(response))} == set(people.values())
    export = SegmentExport.objects.get()
    status = api_client("segments:read").get(f"/v1/segments/exports/{export.pk}").json()
    assert status["segment_id"] == segment.pk and status["served_segment_id"] == parent.pk
    assert status["fallback"] is True


# --- the async job --------------------------------------------------------------------------------
def _job(client: APIClient, segment: Segment, capture: Any, **body: Any) -> int:
    with capture(execute=False) as callbacks:
        response = _export(client, segment, **body)
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1  # the job is enqueued once the request commits
    assert response.json()["status"] == "pending" and response.json()["download_url"] is None
    assert response["Location"] == f"/v1/segments/exports/{response.json()['id']}"
    return int(response.json()["id"])


def test_a_large_segment_is_an_async_job_stored_encrypted(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=2, EXPORT_BATCH_SIZE=2)
    segment = segment_with_members("all", list(people.values()))
    client = api_client("segments:read", "pii:read")
    export_id = _job(
        client, segment, django_capture_on_commit_callbacks, format="jsonl", include_pii=True
    )

    done = segment_export_run(export_id)
    assert done is not None and done.status == ExportStatus.COMPLETED
    assert segment_export_run(export_id) is None  # completed: never built again
    status = client.get(f"/v1/segments/exports/{export_id}").json()
    assert status["status"] == "completed" and status["row_count"] == 3
    assert status["include_pii"] is True and status["fallback"] is False
    assert status["download_url"] == f"/v1/segments/exports/{export_id}/download"

    # At rest: two parts (batches of 2 rows), neither holding an address in clear.
    parts = list(SegmentExportPart.objects.filter(export_id=export_id).order_by("number"))
    assert [part.rows for part in parts] == [2, 1]
    for part in parts:
        raw = bytes(part.ciphertext)
        assert ADA.encode() not in raw and b"ada@" not in raw and b"profile_id" not in raw

    response = client.get(status["download_url"])
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    rows = _jsonl(_content(response))
    assert [row["profile_id"] for row in rows] == sorted(people.values())
    # The email trait is the most recent one identified (bob's work address).
    assert {row["traits"]["email"] for row in rows} == {ADA, BOB_WORK, CY}
    reveals = AuditEntry.objects.filter(action=AuditAction.PII_REVEALED).order_by("id")
    assert [entry.target_type for entry in reveals] == ["segment", "segment_export"]

    # The file holds PII: pii:read is needed to download it.
    assert api_client("segments:read").get(status["download_url"]).status_code == 403


def test_a_job_without_pii_downloads_with_segments_read(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)
    segment = segment_with_members("all", list(people.values()))
    client = api_client("segments:read")
    export_id = _job(client, segment, django_capture_on_commit_callbacks, format="csv")
    not_ready = client.get(f"/v1/segments/exports/{export_id}/download")
    assert not_ready.status_code == 409 and not_ready.json()["code"] == "export_not_ready"

    segment_export_run(export_id)
    content = _content(client.get(f"/v1/segments/exports/{export_id}/download")).decode()
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["profile_id", "entered_at", "traits"] and len(rows) == 4
    assert ADA not in content


def test_the_job_runs_through_its_celery_task(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
    eager_tasks: None,
) -> None:
    from cdp.jobs.models import JobRun, JobStatus

    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)
    segment = segment_with_members("all", list(people.values()))
    with django_capture_on_commit_callbacks(execute=True):
        response = _export(api_client("segments:read"), segment)
    assert response.status_code == 202
    export = SegmentExport.objects.get(pk=response.json()["id"])
    assert export.status == ExportStatus.COMPLETED and export.row_count == 3
    run = JobRun.objects.get(task_name="segments.activation.tasks.segment_export_build")
    assert run.status == JobStatus.SUCCEEDED and run.args == [export.pk]


def test_a_job_fails_when_its_segment_became_too_small(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)
    segment = segment_with_members("all", list(people.values()))
    export_id = _job(api_client("segments:read"), segment, django_capture_on_commit_callbacks)
    Segment.objects.filter(pk=segment.pk).update(too_small=True)
    with pytest.raises(Exception, match="too small"):
        segment_export_run(export_id)
    export = SegmentExport.objects.get(pk=export_id)
    assert export.status == ExportStatus.FAILED
    assert export.error == "Conflict: segment_too_small"
    assert segment_export_run(export_id) is None  # not retried: it would fail alike


def test_expiry_destroys_the_key_and_the_file(
    people: dict[str, int],
    api_client: Client,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)
    segment = segment_with_members("all", list(people.values()))
    client = api_client("segments:read")
    export_id = _job(client, segment, django_capture_on_commit_callbacks)
    export = segment_export_run(export_id)
    assert export is not None and export.expires_at is not None
    assert export.data_key_id is not None
    assert segment_exports_expire(now=export.expires_at - timedelta(seconds=1)) == 0
    assert segment_exports_expire(now=export.expires_at) == 1
    assert segment_exports_expire(now=export.expires_at) == 0  # idempotent
    assert DataKey.objects.get(pk=export.data_key_id).destroyed_at is not None
    assert not SegmentExportPart.objects.filter(export_id=export_id).exists()
    gone = client.get(f"/v1/segments/exports/{export_id}/download")
    assert gone.status_code == 404 and gone.json()["code"] == "export_gone"
    assert client.get(f"/v1/segments/exports/{export_id}").json()["download_url"] is None


# --- scopes -----------------------------------------------------------------------------------
def test_exports_need_segments_read(people: dict[str, int], api_client: Client) -> None:
    segment = segment_with_members("vip", [people["ada"]])
    assert _export(api_client("profiles:read"), segment).status_code == 403
    assert _export(APIClient(), segment).status_code == 401
    assert api_client("profiles:read").get("/v1/segments/exports/1").status_code == 403


def test_unknown_and_deleted_segments_are_not_found(
    people: dict[str, int], api_client: Client
) -> None:
    segment = segment_with_members("vip", [people["ada"]])
    client = api_client("segments:read")
    assert _export(client, segment, format="csv").status_code == 200
    Segment.objects.filter(pk=segment.pk).update(deleted_at=T0)
    assert _export(client, segment).status_code == 404
    assert client.get("/v1/segments/exports/999999").status_code == 404
