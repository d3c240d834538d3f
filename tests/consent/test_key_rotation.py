"""Key rotation seen from a person's data: their identifier values, event PII, CRM record PII and
access export read the same before a rotation, while both master keys are configured, and after
the old one is retired once ``rotate_keys`` has run; retiring it without running ``rotate_keys``
makes all of it unreadable (the order operators must follow, docs/privacy.md).

tests/crypto/test_data_keys.py covers the mechanism on bare data keys; this is the end-to-end
check the issue asks for, through the readers the API and the export use."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from pytest_django import Settings

from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.errors import MasterKeyError
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.ingestion.models import Event, Record
from cdp.ingestion.pii import events_pii, records_pii
from consent.models import PrivacyRequest, PrivacyRequestKind
from consent.privacy.access.run import access_run
from consent.privacy.access.storage import access_export_open
from identity.models import Identifier
from identity.selectors import identifier_value, profile_read
from tests.consent.access_person import CRM_PHONE, EMAIL, IP, export_read, person_build
from tests.crypto.conftest import BLIND_KEY, K1, K2

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_master_key(settings: Settings) -> Iterator[None]:
    settings.CDP_MASTER_KEYS = [K1]
    settings.CDP_BLIND_INDEX_KEY = BLIND_KEY
    data_key_cache.clear()
    yield
    data_key_cache.clear()


@dataclass(frozen=True)
class Held:
    profile_id: int
    request_id: uuid.UUID


def _person_with_export() -> Held:
    person = person_build(tracks=2)
    email = Identifier.objects.get(kind="email")
    request = PrivacyRequest.objects.create(
        kind=PrivacyRequestKind.ACCESS,
        subject_kind="email",
        subject_blind_index=bytes(email.blind_index),
        profile_id=person.profile_id,
        requested_by="test",
    )
    assert access_run(request.pk) is not None
    return Held(profile_id=person.profile_id, request_id=request.pk)


def _read_everything(held: Held) -> dict[str, Any]:
    """What each reader gives, from a cold key cache (as another process would read it)."""
    data_key_cache.clear()
    email = Identifier.objects.get(kind="email")
    identify = Event.objects.filter(pii__isnull=False).order_by("pk").first()
    assert identify is not None
    (event_pii,) = events_pii([(identify.pii, identify.source_id, identify.message_id)])
    (record_pii,) = records_pii(list(Record.objects.all()))
    read = profile_read(held.profile_id, reveal_pii=True)
    assert read is not None
    opened = access_export_open(request_id=held.request_id, actor="test")
    files = export_read(opened.content)
    return {
        "identifier": identifier_value(email),
        "event": (event_pii["traits.email"], event_pii["context.ip"]),
        "record": (record_pii["email"], record_pii["phone"]),
        "trait": read.traits["email"]["value"],
        "export": {(row["kind"], row["value"]) for row in files["identifiers.json"]},
    }


EXPECTED_SCALARS = {
    "identifier": EMAIL,
    "event": (EMAIL, IP),
    "record": (EMAIL, CRM_PHONE),
    "trait": EMAIL,
}


def _assert_readable(held: Held) -> None:
    seen = _read_everything(held)
    assert {name: seen[name] for name in EXPECTED_SCALARS} == EXPECTED_SCALARS
    assert ("email", EMAIL) in seen["export"] and ("phone", "+442079460958") in seen["export"]


def _live_keys_by_master() -> dict[str, int]:
    keys = DataKey.objects.filter(destroyed_at__isnull=True)
    return {
        master: keys.filter(master_key_id=master).count()
        for master in set(keys.values_list("master_key_id", flat=True))
    }


def test_a_persons_data_reads_the_same_through_a_rotation(settings: Settings) -> None:
    held = _person_with_export()
    _assert_readable(held)
    assert set(_live_keys_by_master()) == {"k1"}

    settings.CDP_MASTER_KEYS = [K2, K1]  # 1. the new key first, the old one still there
    _assert_readable(held)

    call_command("rotate_keys", stdout=io.StringIO(), stderr=io.StringIO())  # 2. re-wrap
    assert set(_live_keys_by_master()) == {"k2"}
    assert AuditEntry.objects.filter(action=AuditAction.KEYS_ROTATED).count() == 1
    _assert_readable(held)

    settings.CDP_MASTER_KEYS = [K2]  # 3. retire the old key
    _assert_readable(held)


def test_retiring_the_old_key_before_rotate_keys_makes_the_data_unreadable(
    settings: Settings,
) -> None:
    held = _person_with_export()
    settings.CDP_MASTER_KEYS = [K2, K1]
    _assert_readable(held)

    settings.CDP_MASTER_KEYS = [K2]  # rotate_keys was never run
    with pytest.raises(MasterKeyError, match="'k1', which is not configured"):
        _read_everything(held)
    data_key_cache.clear()
    with pytest.raises(MasterKeyError):
        access_export_open(request_id=held.request_id, actor="test")

    settings.CDP_MASTER_KEYS = [K2, K1]  # putting the old key back is the way out
    _assert_readable(held)
