"""A row the resolver cannot process is set aside, so it never stops the queue behind it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection

from cdp.ingestion.models import Event
from cdp.ingestion.services import SourceWithKey
from identity.models import ResolutionFailure
from identity.services.resolution import NO_IDENTIFIER, failures_retry, resolve_pending
from tests.identity.resolving import ingest, message, pid

pytestmark = pytest.mark.django_db


def _poison(event: Event) -> None:
    """Alter the event's PII ciphertext: it no longer authenticates (DecryptionFailed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ingestion_event SET pii = overlay(pii placing '\\xff'::bytea from 30) "
            "WHERE id = %s",
            [event.pk],
        )


def test_a_poison_event_is_set_aside_and_the_rest_is_resolved(source: SourceWithKey) -> None:
    web = source.source.pk
    ingest(web, *(message("track", at=n, userId=f"before-{n}") for n in range(20)))
    ingest(web, message("identify", at=30, userId="poison", traits={"email": "p@x.io"}))
    ingest(web, *(message("track", at=40 + n, userId=f"after-{n}") for n in range(20)))
    poisoned = Event.objects.get(type="identify")
    _poison(poisoned)

    result = resolve_pending(batch_size=16)

    assert result.failed == 1 and result.events == 40
    assert not Event.objects.filter(identifier_id__isnull=True).exists()
    assert all(pid("user_id", f"after-{n}") for n in range(20))
    failure = ResolutionFailure.objects.get()
    assert (failure.origin, failure.origin_id) == ("event", poisoned.pk)
    assert failure.error.startswith("DecryptionFailed: ")
    assert "p@x.io" not in failure.error
    poisoned.refresh_from_db()
    assert poisoned.identifier_id == NO_IDENTIFIER


def test_retrying_requeues_and_a_repaired_row_resolves(source: SourceWithKey) -> None:
    web = source.source.pk
    ingest(web, message("identify", userId="u1", traits={"email": "p@x.io"}))
    event = Event.objects.get()
    _poison(event)
    resolve_pending()
    assert ResolutionFailure.objects.count() == 1

    assert failures_retry() == 1
    assert resolve_pending().failed == 1  # still broken: set aside again
    Event.objects.filter(pk=event.pk).update(pii=None)  # repaired (the PII is lost)
    out = io.StringIO()
    call_command("retry_resolution_failures", stdout=out)
    assert "Requeued 1 of 1" in out.getvalue()
    assert resolve_pending().events == 1
    assert pid("user_id", "u1") and not ResolutionFailure.objects.exists()
