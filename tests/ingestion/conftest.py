"""Helpers shared by the ingestion tests (the project-wide fixtures live in tests/conftest.py)."""

from __future__ import annotations

import gzip
from datetime import date
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework.test import APIClient

from cdp.ingestion.models import Event, Record
from cdp.ingestion.pii import events_pii, records_pii, restore_event_pii
from cdp.ingestion.records import PII_FIELDS
from cdp.ingestion.services import SourceWithKey, source_create
from tests.conftest import basic_auth, post_raw

ERROR_KEYS = {"type", "code", "detail", "attr"}


def ingest_settings(**overrides: Any) -> override_settings:
    """Override some keys of ``CDP_INGEST`` and keep the others."""
    return override_settings(CDP_INGEST={**settings.CDP_INGEST, **overrides})


def post_gzip(client: APIClient, path: str, raw: bytes, **extra: Any) -> Any:
    return post_raw(client, path, raw, HTTP_CONTENT_ENCODING="gzip", **extra)


def gzipped(body: Any) -> bytes:
    return gzip.compress(orjson.dumps(body))


def stored_events() -> list[Event]:
    return list(Event.objects.order_by("id"))


def event_traits_and_context(event: Event) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event's traits and context as sent: the stored ones with the decrypted PII back."""
    [pii] = events_pii([(event.pii, event.source_id, event.message_id)])
    return restore_event_pii(traits=event.traits, context=event.context, pii=pii)


def record_fields(record: Record) -> SimpleNamespace:
    """A record as it was sent: its columns, and its person fields decrypted through
    ``records_pii`` ("" or None when absent), attributes with their PII keys back."""
    [pii] = records_pii([record])
    columns = {field.attname: getattr(record, field.attname) for field in Record._meta.fields}
    fields = {name: pii.get(name, "") for name in PII_FIELDS}
    birth_date = pii.get("birth_date")
    return SimpleNamespace(
        **{
            **columns,
            **fields,
            "pk": record.pk,
            "birth_date": None if birth_date is None else date.fromisoformat(birth_date),
            "attributes": {**record.attributes, **pii.get("attributes", {})},
        }
    )


def assert_error_contract(body: dict[str, Any], *, with_errors: bool = False) -> None:
    expected = ERROR_KEYS | {"errors"} if with_errors else ERROR_KEYS
    if "message" in body:  # tracking endpoints repeat detail as `message` for the SDKs
        assert body["message"] == body["detail"]
        expected = expected | {"message"}
    assert set(body) == expected, body
    assert isinstance(body["type"], str)
    assert isinstance(body["code"], str)
    assert isinstance(body["detail"], str)
    assert body["attr"] is None or isinstance(body["attr"], str)


def client_for(write_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(write_key))
    return client


@pytest.fixture
def other_source(db: None) -> SourceWithKey:
    return source_create(name="app")


@pytest.fixture
def other_client(other_source: SourceWithKey) -> APIClient:
    return client_for(other_source.write_key)
