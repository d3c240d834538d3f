"""Erasure against other writers holding the person's rows."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections, transaction

from cdp.ingestion.models import Record
from cdp.ingestion.services import source_create
from consent.models import PrivacyRequest, PrivacyRequestStatus
from consent.privacy.erasure import erasure_request, erasures_run
from identity.merging import LockRace
from tests.identity.resolving import resolve, upsert

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_locked_crm_record_makes_the_erasure_wait_not_skip(monkeypatch: Any) -> None:
    crm = source_create(name="crm").source.pk
    upsert(crm, {"external_id": "C-1", "email": "ada@example.com", "last_name": "Byron"})
    resolve()
    record = Record.objects.get()
    locked, release = threading.Event(), threading.Event()

    def hold_the_record() -> None:  # an upsert of the same record, in flight
        try:
            with transaction.atomic():
                Record.objects.select_for_update().get(pk=record.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_record)
    holder.start()
    assert locked.wait(timeout=10)
    monkeypatch.setattr(transaction, "on_commit", lambda func, using=None: None)
    request = erasure_request(subject=("email", "ada@example.com"), requested_by="test")
    try:
        with pytest.raises(LockRace):
            erasures_run(ids=[request.pk])
        request.refresh_from_db()
        assert request.status != PrivacyRequestStatus.COMPLETED
        assert Record.objects.filter(pk=record.pk).exists()
    finally:
        release.set()
        holder.join(timeout=30)
    assert erasures_run(ids=[request.pk]) == [request.pk]
    done = PrivacyRequest.objects.get(pk=request.pk)
    assert (done.status, done.summary["records"]) == (PrivacyRequestStatus.COMPLETED, 1)
    assert not Record.objects.filter(pk=record.pk).exists()
    connection.close()
