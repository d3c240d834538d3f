"""The ingest insert runs outside an explicit transaction and without a health-check ping, so it
must itself survive a persistent connection the server dropped, without storing anything twice."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from cdp.ingestion.models import Event
from cdp.ingestion.services import events_ingest, source_create


def _kill_backend() -> None:
    pid = connection.connection.info.backend_pid
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_is_replaced_and_the_batch_stored_once() -> None:
    source_id = source_create(name="reconnect").source.pk
    first = {"type": "track", "event": "First", "userId": "u1", "messageId": "m-1"}
    assert events_ingest(source_id=source_id, messages=[first]).accepted == 1

    _kill_backend()
    second = {"type": "track", "event": "Second", "userId": "u1", "messageId": "m-2"}
    result = events_ingest(source_id=source_id, messages=[second])

    assert (result.accepted, result.duplicates) == (1, 0)
    assert events_ingest(source_id=source_id, messages=[second]).duplicates == 1
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-1", "m-2"]
