"""PII of events and CRM records is stored only encrypted, under the anchor identifier's data key:
no plaintext in any column, ciphertexts bound to their rows, erasure by key destruction."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django import Settings
from rest_framework.test import APIClient

from cdp.crypto.blind_index import blind_index
from cdp.crypto.envelope import data_key_id_of
from cdp.crypto.errors import DecryptionFailed
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.services import data_keys_destroy
from cdp.ingestion.models import Event, Record
from cdp.ingestion.pii import (
    event_pii_take,
    events_pii,
    records_pii,
    redacted,
    restore_event_pii,
)
from cdp.ingestion.services import (
    SourceWithKey,
    event_partitions_ensure,
    events_ingest,
    records_upsert,
)
from identity.models import Identifier
from identity.services.identifiers import identifiers_get_or_create

pytestmark = pytest.mark.django_db

EMAIL = "ada.lovelace@example.com"
PHONE = "+44 20 7946 0001"
IP = "203.0.113.9"
CONTEXT_EMAIL = "ada.context@example.com"
SECRETS = (
    EMAIL,
    PHONE,
    IP,
    CONTEXT_EMAIL,
    "Lovelace",
    "Augusta",
    "Ockham",
    "1815-12-10",
    "OX1 3AA",
)
KEYS = frozenset({"email", "phone", "name", "firstName", "lastName", "address", "ip"})


@pytest.fixture(autouse=True)
def _cold_key_cache() -> Iterator[None]:
    """Reads must fetch the keys from the table: what another process does."""
    data_key_cache.clear()
    yield
    data_key_cache.clear()


def ingest(source: SourceWithKey, *messages: dict[str, Any]) -> Any:
    result = events_ingest(source_id=source.source.pk, messages=list(messages))
    assert not result.rejected, result.rejected
    return result


def pii_of(*events: Event) -> list[dict[str, Any]]:
    return events_pii([(e.pii, e.source_id, e.message_id) for e in events])


def event(message_id: str) -> Event:
    return Event.objects.get(message_id=message_id)


def anchor_key_id(kind: str, value: str) -> int:
    return Identifier.objects.get(kind=kind, blind_index=blind_index(kind, value)).data_key_id


IDENTIFY = {
    "type": "identify",
    "userId": "u-ada",
    "messageId": "identify-1",
    "traits": {
        "email": EMAIL,
        "phone": PHONE,
        "firstName": "Augusta",
        "lastName": "Lovelace",
        "address": {"street": "Ockham Park", "postalCode": "OX1 3AA"},
        "plan": "pro",
    },
    "context": {"ip": IP, "traits": {"email": CONTEXT_EMAIL, "plan": "pro"}, "locale": "en-GB"},
}
TRACK = {
    "type": "track",
    "anonymousId": "anon-ada",
    "event": "Viewed",
    "messageId": "track-1",
    "context": {"ip": IP, "traits": {"email": CONTEXT_EMAIL}},
    "properties": {"sku": "x-1"},
}
ADA_RECORD = {
    "external_id": "crm-ada",
    "email": EMAIL,
    "phone": PHONE,
    "first_name": "Augusta",
    "last_name": "Lovelace",
    "street": "Ockham Park",
    "city": "Ockham",
    "postcode": "OX1 3AA",
    "country": "GB",
    "birth_date": "1815-12-10",
    "attributes": {"tier": "gold", "birthday": "1815-12-10"},
}


# --- nothing in clear -------------------------------------------------------------------------
def test_no_column_of_a_stored_event_or_record_holds_plaintext_pii(source: SourceWithKey) -> None:
    ingest(source, IDENTIFY, TRACK)
    records_upsert(source_id=source.source.pk, records=[ADA_RECORD])

    with connection.cursor() as cursor:
        # Every column as text, the JSON ones included, and bytea as hex and as escaped text.
        cursor.execute("SELECT e::text, encode(e.pii, 'escape') FROM ingestion_event e")
        event_rows = cursor.fetchall()
        cursor.execute("SELECT r::text, encode(r.pii, 'escape') FROM ingestion_record r")
        record_rows = cursor.fetchall()
    assert len(event_rows) == 2 and len(record_rows) == 1
    for row in event_rows + record_rows:
        text = " ".join(row)
        for secret in SECRETS:
            assert secret not in text
    # ...and nothing was lost: the values come back through the readers.
    identify, track = event("identify-1"), event("track-1")
    assert restore_event_pii(
        traits=identify.traits, context=identify.context, pii=pii_of(identify)[0]
    ) == (IDENTIFY["traits"], IDENTIFY["context"])
    assert pii_of(track) == [{"context.ip": IP, "context.traits.email": CONTEXT_EMAIL}]
    assert identify.traits == {"plan": "pro"}  # non-PII traits stay queryable in clear
    assert track.context == {"traits": {}}
    [record] = records_pii([Record.objects.get()])
    assert record == {
        "email": EMAIL,
        "phone": PHONE,
        "first_name": "Augusta",
        "last_name": "Lovelace",
        "street": "Ockham Park",
        "city": "Ockham",
        "postcode": "OX1 3AA",
        "birth_date": "1815-12-10",
        "attributes": {"birthday": "1815-12-10"},
    }
    assert Record.objects.get().attributes == {"tier": "gold"}


def test_events_without_pii_store_no_ciphertext_and_cost_no_identifier_query(
    source: SourceWithKey,
) -> None:
    plain = {"type": "track", "userId": "u-1", "event": "E", "messageId": "plain-1"}

    with CaptureQueriesContext(connection) as queries:
        ingest(source, plain)

    assert event("plain-1").pii is None
    assert not Identifier.objects.exists()
    assert all("identity_identifier" not in q["sql"] for q in queries.captured_queries)


def test_pii_is_encrypted_under_the_anchor_identifiers_key(source: SourceWithKey) -> None:
    """user_id when there is one, else anonymous_id: the same choice the resolver makes."""
    ingest(source, IDENTIFY, TRACK)

    identify, track = event("identify-1").pii, event("track-1").pii
    assert identify is not None and track is not None
    assert data_key_id_of(identify) == anchor_key_id("user_id", "u-ada")
    assert data_key_id_of(track) == anchor_key_id("anonymous_id", "anon-ada")
    assert Identifier.objects.count() == 2  # only the anchors: no email or phone node here


def test_one_identifier_lookup_for_the_distinct_anchors_of_a_batch(
    source: SourceWithKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def spy(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return identifiers_get_or_create(**kwargs)

    monkeypatch.setattr("identity.services.identifiers.identifiers_get_or_create", spy)
    messages = [
        {"type": "identify", "userId": f"u-{n % 3}", "traits": {"email": f"p{n}@example.com"}}
        for n in range(9)
    ]
    ingest(source, *messages, {"type": "track", "userId": "u-9", "event": "no pii"})

    assert len(calls) == 1
    assert sorted(calls[0]["items"]) == [("user_id", "u-0"), ("user_id", "u-1"), ("user_id", "u-2")]
    assert calls[0]["touch_seen"] is False


def test_ingest_leaves_seen_times_of_existing_identifiers_alone(source: SourceWithKey) -> None:
    """Widening seen times locks identifier rows, which resolver transactions hold."""
    long_ago = timezone.now() - timedelta(days=30)
    [node] = identifiers_get_or_create(items=[("user_id", "u-ada")], seen_at=long_ago).values()

    with CaptureQueriesContext(connection) as queries:
        ingest(source, IDENTIFY)

    node.refresh_from_db()
    assert (node.first_seen_at, node.last_seen_at) == (long_ago, long_ago)
    assert not any("FOR UPDATE" in q["sql"] for q in queries.captured_queries)
    assert pii_of(event("identify-1"))[0]["traits.email"] == EMAIL


# --- bound to the row ---------------------------------------------------------------------------
def test_an_event_ciphertext_copied_to_another_row_does_not_decrypt(source: SourceWithKey) -> None:
    ingest(source, IDENTIFY, {**IDENTIFY, "messageId": "identify-2", "traits": {"email": "b@x.io"}})
    Event.objects.filter(message_id="identify-2").update(pii=event("identify-1").pii)

    with pytest.raises(DecryptionFailed) as failure:
        pii_of(event("identify-2"))
    assert EMAIL not in str(failure.value)


def test_a_record_ciphertext_copied_to_another_row_does_not_decrypt(source: SourceWithKey) -> None:
    records_upsert(
        source_id=source.source.pk,
        records=[ADA_RECORD, {"external_id": "crm-bob", "email": "bob@example.com"}],
    )
    Record.objects.filter(external_id="crm-bob").update(
        pii=Record.objects.get(external_id="crm-ada").pii
    )

    with pytest.raises(DecryptionFailed):
        records_pii([Record.objects.get(external_id="crm-bob")])


# --- erasure ------------------------------------------------------------------------------------
def test_destroying_the_anchor_key_erases_that_persons_events_only(source: SourceWithKey) -> None:
    bob = {
        **IDENTIFY,
        "userId": "u-bob",
        "messageId": "bob-1",
        "traits": {"email": "b@x.io"},
        "context": {},
    }
    ingest(source, IDENTIFY, bob)

    data_keys_destroy(ids=[anchor_key_id("user_id", "u-ada")])

    assert pii_of(event("identify-1"), event("bob-1")) == [{}, {"traits.email": "b@x.io"}]


def test_destroying_the_external_identifiers_key_erases_the_record(source: SourceWithKey) -> None:
    bob = {"external_id": "crm-bob", "email": "bob@example.com"}
    records_upsert(source_id=source.source.pk, records=[ADA_RECORD, bob])

    data_keys_destroy(ids=[anchor_key_id("external", "web:crm-ada")])

    ada, bob_row = Record.objects.order_by("external_id")
    assert records_pii([ada, bob_row]) == [{}, {"email": "bob@example.com"}]


def test_new_pii_of_an_erased_anchor_is_dropped_not_stored(source: SourceWithKey) -> None:
    ingest(source, IDENTIFY)
    data_keys_destroy(ids=[anchor_key_id("user_id", "u-ada")])

    result = ingest(source, {**IDENTIFY, "messageId": "identify-again"})

    assert (result.accepted, result.pii_dropped) == (1, 1)
    again = event("identify-again")
    assert again.pii is None
    assert again.traits == {"plan": "pro"}


# --- no usable anchor -------------------------------------------------------------------------
def test_pii_without_a_usable_anchor_is_dropped_and_counted(source: SourceWithKey) -> None:
    """A blocked id ("undefined") is no identifier: there is no key to encrypt under."""
    unusable = {
        "type": "identify",
        "userId": "undefined",
        "anonymousId": "null",
        "messageId": "no-anchor",
        "traits": {"email": EMAIL, "plan": "pro"},
    }
    usable = {**unusable, "userId": "u-ok", "messageId": "anchored"}

    result = ingest(source, unusable, usable)

    assert (result.accepted, result.pii_dropped) == (2, 1)
    dropped = event("no-anchor")
    assert (dropped.pii, dropped.traits) == (None, {"plan": "pro"})
    assert pii_of(event("anchored")) == [{"traits.email": EMAIL}]
    with connection.cursor() as cursor:
        cursor.execute("SELECT e::text FROM ingestion_event e")
        assert all(EMAIL not in text for (text,) in cursor.fetchall())


def test_record_pii_without_a_usable_external_identifier_is_dropped(
    source: SourceWithKey,
) -> None:
    result = records_upsert(
        source_id=source.source.pk,
        records=[{"external_id": "undefined", "email": EMAIL, "country": "GB"}],
    )

    assert (result.created, result.pii_dropped) == (1, 1)
    stored = Record.objects.get()
    assert (stored.pii, stored.country) == (None, "GB")


# --- records: digests -------------------------------------------------------------------------
def test_record_reimport_is_a_no_op_and_a_change_updates(source: SourceWithKey) -> None:
    records_upsert(source_id=source.source.pk, records=[ADA_RECORD])
    first = Record.objects.get()

    again = records_upsert(source_id=source.source.pk, records=[ADA_RECORD])
    unchanged = Record.objects.get()
    changed = records_upsert(
        source_id=source.source.pk, records=[{**ADA_RECORD, "email": "ada@new.example.com"}]
    )
    updated = Record.objects.get()

    assert (again.unchanged, again.updated) == (1, 0)
    assert first.pii is not None and unchanged.pii is not None
    assert (unchanged.seq, bytes(unchanged.pii)) == (first.seq, bytes(first.pii))
    assert (changed.updated, changed.unchanged) == (1, 0)
    assert updated.seq > first.seq
    assert updated.content_digest != first.content_digest
    assert records_pii([updated])[0]["email"] == "ada@new.example.com"


def test_record_digest_is_keyed_not_a_plain_hash_of_the_pii(
    source: SourceWithKey, settings: Settings
) -> None:
    records_upsert(source_id=source.source.pk, records=[ADA_RECORD])
    digest = Record.objects.get().content_digest
    settings.CDP_BLIND_INDEX_KEY = base64.b64encode(b"\x09" * 32).decode()

    result = records_upsert(source_id=source.source.pk, records=[ADA_RECORD])

    # Same content, other key: another digest, so the digest depends on the key.
    assert result.updated == 1
    assert Record.objects.get().content_digest != digest


# --- the events API ---------------------------------------------------------------------------
@pytest.fixture
def pages(source: SourceWithKey) -> None:
    ingest(source, IDENTIFY, TRACK, {"type": "page", "userId": "u-ada", "messageId": "page-1"})


@pytest.mark.usefixtures("pages")
def test_events_api_shows_pii_only_with_pii_read(api_client: Callable[..., APIClient]) -> None:
    revealed = api_client("events:read", "pii:read").get("/v1/events").json()["results"]
    hidden = api_client("events:read").get("/v1/events").json()["results"]

    by_id = {row["messageId"]: row for row in revealed}
    assert (by_id["identify-1"]["traits"], by_id["identify-1"]["context"]) == (
        IDENTIFY["traits"],
        IDENTIFY["context"],
    )
    assert by_id["track-1"]["context"] == TRACK["context"]
    masked = {row["messageId"]: row for row in hidden}
    assert masked["identify-1"]["traits"] == {
        "email": "[redacted]",
        "phone": "[redacted]",
        "firstName": "[redacted]",
        "lastName": "[redacted]",
        "address": "[redacted]",
        "plan": "pro",
    }
    assert masked["track-1"]["context"] == {
        "ip": "[redacted]",
        "traits": {"email": "[redacted]"},
    }
    assert masked["page-1"]["traits"] == {}
    for secret in SECRETS:
        assert secret not in str(hidden)


def test_events_api_queries_stay_flat_with_one_key_query_per_page(
    source: SourceWithKey,
    api_client: Callable[..., APIClient],
) -> None:
    reader = api_client("events:read", "pii:read")
    reader.get("/v1/events")  # the token's first use is recorded once

    def page_queries(count: int) -> int:
        Event.objects.all().delete()
        ingest(
            source,
            *(
                {**IDENTIFY, "userId": f"u-{n}", "messageId": f"m-{count}-{n}"}
                for n in range(count)
            ),
        )
        data_key_cache.clear()
        with CaptureQueriesContext(connection) as queries:
            assert reader.get("/v1/events").status_code == 200
        assert sum("crypto_datakey" in q["sql"] for q in queries.captured_queries) == 1
        return len(queries.captured_queries)

    assert page_queries(2) == page_queries(20)


def test_events_api_shows_an_erased_event_without_its_pii(
    pages: None, api_client: Callable[..., APIClient]
) -> None:
    data_keys_destroy(ids=[anchor_key_id("user_id", "u-ada")])

    rows = api_client("events:read", "pii:read").get("/v1/events").json()["results"]

    by_id = {row["messageId"]: row for row in rows}
    assert by_id["identify-1"]["traits"] == {"plan": "pro"}
    assert by_id["track-1"]["context"]["ip"] == IP  # anchored on anon-ada: another key


# --- storage ------------------------------------------------------------------------------------
def test_every_event_partition_has_the_pii_column() -> None:
    event_partitions_ensure(months_ahead=14)  # and partitions created after the migration

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attname IS NOT NULL
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            LEFT JOIN pg_attribute a
              ON a.attrelid = c.oid AND a.attname = 'pii' AND NOT a.attisdropped
            WHERE i.inhparent = 'ingestion_event'::regclass
            """
        )
        partitions = dict(cursor.fetchall())
    assert "ingestion_event_default" in partitions
    assert len(partitions) >= 15
    assert all(partitions.values()), partitions


# --- pure parts ---------------------------------------------------------------------------------
def test_take_and_restore_round_trip_and_leave_the_message_alone() -> None:
    traits = {"email": EMAIL, "plan": "pro"}
    context = {"ip": IP, "traits": {"phone": PHONE, "x": 1}, "locale": "en"}
    parts: dict[str, Any] = {"traits": traits, "context": context}

    pii = event_pii_take(parts, KEYS)

    assert pii == {"traits.email": EMAIL, "context.traits.phone": PHONE, "context.ip": IP}
    assert parts == {"traits": {"plan": "pro"}, "context": {"traits": {"x": 1}, "locale": "en"}}
    assert traits == {"email": EMAIL, "plan": "pro"}  # the caller's dicts are not changed
    assert restore_event_pii(traits=parts["traits"], context=parts["context"], pii=pii) == (
        traits,
        context,
    )
    assert redacted(pii) == dict.fromkeys(pii, "[redacted]")


def test_keys_are_matched_case_sensitively_and_only_where_listed() -> None:
    parts: dict[str, Any] = {
        "traits": {"Email": "x", "email": "y"},
        # context.app.name and context.library.name are not traits: left alone.
        "context": {"app": {"name": "shop"}, "name": "n", "traits": "not an object"},
    }

    assert event_pii_take(parts, KEYS) == {"traits.email": "y"}
    assert parts["traits"] == {"Email": "x"}
    assert parts["context"] == {"app": {"name": "shop"}, "name": "n", "traits": "not an object"}
