"""POST /v1/privacy/erasure, GET /v1/privacy/requests/{id}, and lift_suppression."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.jobs.models import JobRun, JobStatus
from consent.models import PrivacyRequest, PrivacyRequestStatus, Suppression
from consent.privacy.erasure import erasure_run
from identity.selectors import identifier_find
from tests.consent.erasing import EMAIL, person_ingest

pytestmark = pytest.mark.django_db
ERASURE = "/v1/privacy/erasure"


@pytest.fixture
def ada(tracking_client: APIClient, source: Any) -> None:
    person_ingest(tracking_client, user_id="ada", email=EMAIL, phone="+44 20 7946 0958", tracks=1)


def test_erasure_needs_privacy_write(api_client: Any, ada: None) -> None:
    response = api_client("profiles:read", "pii:read").post(
        ERASURE, {"email": EMAIL}, format="json"
    )
    assert response.status_code == 403
    assert APIClient().post(ERASURE, {"email": EMAIL}, format="json").status_code == 401
    assert not PrivacyRequest.objects.exists()


def test_erasure_answers_202_and_the_status_view_follows_it(
    api_client: Any, ada: None, django_capture_on_commit_callbacks: Any
) -> None:
    client = api_client("privacy:write")
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            ERASURE, {"email": " ada.lovelace@EXAMPLE.com", "reason": "T-9"}, format="json"
        )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending" and body["subject_kind"] == "email"
    assert EMAIL.lower() not in response.content.decode().lower()
    assert len(callbacks) == 1  # the worker is enqueued once the request committed
    request_id = body["id"]
    assert client.get(f"/v1/privacy/requests/{request_id}").json()["status"] == "pending"
    assert erasure_run(uuid.UUID(request_id))
    done = client.get(f"/v1/privacy/requests/{request_id}").json()
    assert done["status"] == "completed" and done["summary"]["events"] >= 1
    assert done["completed_at"] and done["attempts"] == 1


def test_the_enqueued_task_erases_and_records_its_job_run(
    api_client: Any, ada: None, django_capture_on_commit_callbacks: Any, eager_tasks: None
) -> None:
    """The task itself, run eagerly in this process (the tests/live pattern runs workers)."""
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client("privacy:write").post(ERASURE, {"user_id": "ada"}, format="json")
    request = PrivacyRequest.objects.get(pk=response.json()["id"])
    assert request.status == PrivacyRequestStatus.COMPLETED
    run = JobRun.objects.get(task_name="consent.tasks.erasure_request_run")
    assert run.status == JobStatus.SUCCEEDED
    assert identifier_find(kind="email", raw_value=EMAIL) is None


def test_unknown_subject_is_404_without_echoing_it(api_client: Any, ada: None) -> None:
    response = api_client("privacy:write").post(
        ERASURE, {"email": "nobody@example.com"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "subject_not_found"
    assert "nobody" not in response.content.decode()
    assert not PrivacyRequest.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": EMAIL, "phone": "+44 20 7946 0958"},
        {"external_id": "C-ada"},
        {"email": EMAIL, "reason": "x" * 1001},
    ],
)
def test_erasure_body_is_validated(api_client: Any, ada: None, body: dict[str, Any]) -> None:
    response = api_client("privacy:write").post(ERASURE, body, format="json")
    assert response.status_code == 400
    assert not PrivacyRequest.objects.exists()


def test_status_of_an_unknown_request_is_404(api_client: Any) -> None:
    client = api_client("privacy:write")
    assert client.get(f"/v1/privacy/requests/{uuid.uuid4()}").status_code == 404
    assert (
        api_client("profiles:read").get(f"/v1/privacy/requests/{uuid.uuid4()}").status_code == 403
    )


def test_lift_suppression_reads_the_value_from_stdin(
    api_client: Any, ada: None, monkeypatch: Any
) -> None:
    response = api_client("privacy:write").post(ERASURE, {"email": EMAIL}, format="json")
    assert erasure_run(uuid.UUID(response.json()["id"]))
    monkeypatch.setattr("sys.stdin", io.StringIO(EMAIL + "\n"))
    out = io.StringIO()
    call_command("lift_suppression", "--kind", "email", "--reason", "T-10", stdout=out)
    assert "Lifted suppression" in out.getvalue() and EMAIL not in out.getvalue()
    lifted = Suppression.objects.get(kind="email")
    assert lifted.lifted_at and lifted.lifted_by == "command:lift_suppression"
    assert AuditEntry.objects.filter(action=AuditAction.SUPPRESSION_LIFTED).count() == 1
    with pytest.raises(CommandError, match="not suppressed"):
        call_command("lift_suppression", "--kind", "email", "--value", EMAIL, "--reason", "again")
