"""The audit log: append-only in the database, and written by every audited action."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from rest_framework.test import APIClient

from cdp.api.services import api_token_create, api_token_revoke
from cdp.audit.models import AuditAction, AuditEntry
from cdp.ingestion.services import SourceWithKey
from identity.models import MergeLedgerEntry
from identity.services.unmerge import profile_unmerge
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db


def entries(action: AuditAction) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


def test_the_log_refuses_updates_and_deletes() -> None:
    entry = AuditEntry.objects.create(actor="test", action=AuditAction.TOKEN_CREATED)
    for statement in (
        "UPDATE audit_auditentry SET actor = 'someone else'",
        "DELETE FROM audit_auditentry",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    entry.refresh_from_db()
    assert entry.actor == "test"


def test_token_creation_and_revocation_are_audited_without_the_secret() -> None:
    issued = api_token_create(name="warehouse", scopes=["events:read"], actor="admin:ops")
    api_token_revoke(token=issued.token, actor="admin:ops")
    api_token_revoke(token=issued.token, actor="admin:ops")  # already revoked: nothing new
    (created,) = entries(AuditAction.TOKEN_CREATED)
    (revoked,) = entries(AuditAction.TOKEN_REVOKED)
    assert (created.actor, created.target_type, created.target_id) == (
        "admin:ops",
        "api_token",
        str(issued.token.pk),
    )
    assert created.details == {"name": "warehouse", "scopes": ["events:read"]}
    assert revoked.target_id == str(issued.token.pk)
    assert issued.plaintext not in str(created.details)


def test_pii_reveals_are_audited_and_redacted_reads_are_not(
    source: SourceWithKey, api_client: Callable[..., APIClient]
) -> None:
    ingest(source.source.pk, message("identify", userId="u1", traits={"email": "ada@example.com"}))
    resolve()
    profile = pid("user_id", "u1")
    reader = api_client("profiles:read", "events:read")
    assert reader.get(f"/v1/profiles/{profile}").status_code == 200
    assert reader.get("/v1/events").status_code == 200
    assert entries(AuditAction.PII_REVEALED) == []

    revealer = api_client("profiles:read", "events:read", "pii:read")
    for path in (
        f"/v1/profiles/{profile}",
        f"/v1/profiles/{profile}/identifiers",
        f"/v1/profiles/{profile}/events",
        f"/v1/profiles/{profile}/graph",
        "/v1/events",
    ):
        response = revealer.get(path)
        assert response.status_code == 200
        assert "ada@example.com" in response.content.decode()
    reveals = entries(AuditAction.PII_REVEALED)
    assert [e.details["endpoint"] for e in reveals] == [
        "profiles_retrieve",
        "profiles_identifiers_list",
        "profiles_events_list",
        "profiles_graph",
        "events_list",
    ]
    assert {e.target_id for e in reveals[:4]} == {str(profile)}
    assert all(e.actor.startswith("api:test #") for e in reveals)
    assert all("ada@example.com" not in str(e.details) for e in reveals)


def test_merges_and_unmerges_are_audited(source: SourceWithKey) -> None:
    ingest(
        source.source.pk,
        message("identify", anonymousId="a1"),
        message("identify", userId="u1"),
    )
    resolve()
    ingest(source.source.pk, message("identify", at=5, userId="u1", anonymousId="a1"))
    resolve()
    (merged,) = entries(AuditAction.PROFILE_MERGED)
    profile = pid("user_id", "u1")
    assert (merged.actor, merged.details["count"]) == ("resolver", 1)
    assert merged.details["profiles"] == [profile]
    edge = MergeLedgerEntry.objects.get(action="merge").edge
    assert edge is not None
    profile_unmerge(
        profile_id=profile, actor="admin:steward", reason="shared laptop", edge_ids=[edge.pk]
    )
    (unmerged,) = entries(AuditAction.PROFILE_UNMERGED)
    assert (unmerged.actor, unmerged.target_type, unmerged.target_id) == (
        "admin:steward",
        "profile",
        str(profile),
    )


def test_key_rotation_is_audited() -> None:
    call_command("rotate_keys", verbosity=0)
    (rotated,) = entries(AuditAction.KEYS_ROTATED)
    assert rotated.actor == "command:rotate_keys"
    assert "rewrapped" in rotated.details
