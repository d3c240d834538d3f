"""Erasure reaches the copies of a person that live under keys of their own: their access
exports and the export files of segments they were in."""

from __future__ import annotations

from typing import Any

import pytest

from cdp.api.errors import NotFound
from cdp.crypto.envelope import decrypt_bytes
from cdp.crypto.errors import KeyDestroyed
from consent.models import PrivacyRequest, PrivacyRequestStatus
from consent.privacy.access.run import access_request, access_run
from consent.privacy.access.storage import access_export_open, export_aad
from consent.privacy.erasure import erasure_request, erasure_run
from segments.activation.exports import segment_export_request, segment_export_run
from segments.activation.models import SegmentExport, SegmentExportPart
from tests.consent.access_person import EMAIL, person_build
from tests.segments.activating import activation_settings, people_create, segment_with_members

pytestmark = pytest.mark.django_db(transaction=False)


def _erase(email: str) -> PrivacyRequest:
    request = erasure_request(subject=("email", email), requested_by="test", reason="T-1")
    assert erasure_run(request.pk)
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.COMPLETED
    return request


def test_erasure_destroys_the_persons_access_exports(
    django_capture_on_commit_callbacks: Any,
) -> None:
    person_build()
    with django_capture_on_commit_callbacks(execute=False):
        requested = access_request(subject=("email", EMAIL), requested_by="test", reason="T-0")
    access_run(requested.pk)
    requested.refresh_from_db()
    ciphertext = bytes(requested.export_ciphertext or b"")
    assert ciphertext and access_export_open(request_id=requested.pk, actor="test").content

    with django_capture_on_commit_callbacks(execute=False):
        erased = _erase(EMAIL)
    assert erased.summary["exports"] == 1
    requested.refresh_from_db()
    assert requested.export_ciphertext is None
    assert requested.export_data_key is not None
    assert requested.export_data_key.destroyed_at is not None
    with pytest.raises(KeyDestroyed):  # a copy of the ciphertext kept elsewhere is useless
        decrypt_bytes(ciphertext, aad=export_aad(requested.pk))
    with pytest.raises(NotFound):
        access_export_open(request_id=requested.pk, actor="test")


def test_erasure_destroys_export_files_of_the_persons_segments(
    source: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    activation_settings(settings, EXPORT_SYNC_MAX_ROWS=0)  # every export is a stored job
    erased, kept = people_create(
        source.source.pk,
        [
            {"user": "u1", "emails": ["ada@example.com"]},
            {"user": "u2", "emails": ["bob@example.com"]},
        ],
    )
    theirs = segment_with_members("theirs", [erased, kept])
    others = segment_with_members("others", [kept])
    jobs = []
    for segment in (theirs, others):
        with django_capture_on_commit_callbacks(execute=False):
            job = segment_export_request(
                segment=segment, export_format="jsonl", include_pii=False, requested_by="test"
            ).export
        segment_export_run(job.pk)
        jobs.append(SegmentExport.objects.get(pk=job.pk))
    assert all(SegmentExportPart.objects.filter(export_id=j.pk).exists() for j in jobs)

    with django_capture_on_commit_callbacks(execute=False):
        request = _erase("ada@example.com")
    assert request.summary["segment_exports"] == 1
    theirs_job, others_job = (SegmentExport.objects.get(pk=j.pk) for j in jobs)
    assert theirs_job.data_key is not None and theirs_job.data_key.destroyed_at is not None
    assert not SegmentExportPart.objects.filter(export_id=theirs_job.pk).exists()
    assert others_job.data_key is not None and others_job.data_key.destroyed_at is None
    assert SegmentExportPart.objects.filter(export_id=others_job.pk).exists()
