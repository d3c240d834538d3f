"""POST /v1/records: CRM record upsert by (source, external_id)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from rest_framework.test import APIClient

from cdp.ingestion.models import Record
from cdp.ingestion.services import SourceWithKey
from tests.conftest import post_json
from tests.ingestion.conftest import assert_error_contract, ingest_settings, record_fields

pytestmark = pytest.mark.django_db

ALICE = {
    "external_id": "crm-1",
    "email": "alice@example.com",
    "phone": "+44 20 7946 0000",
    "first_name": "Alice",
    "last_name": "Liddell",
    "birth_date": "1990-02-03",
    "attributes": {"tier": "gold", "score": 7},
}
BOB = {"external_id": "crm-2", "email": "bob@example.com", "first_name": "Bob"}


def upsert(client: APIClient, *records: Any) -> Any:
    return post_json(client, "/v1/records", {"records": list(records)})


def record(external_id: str) -> Any:
    """The stored record with its person fields decrypted."""
    return record_fields(Record.objects.get(external_id=external_id))


def counts(response: Any) -> tuple[int, int, int]:
    body = response.json()
    return body["created"], body["updated"], body["unchanged"]


def test_create_stores_every_field(tracking_client: APIClient, source: SourceWithKey) -> None:
    response = upsert(tracking_client, ALICE, BOB)

    assert response.status_code == 200
    assert response.json() == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "superseded": 0,
        "rejected": [],
    }
    alice = record("crm-1")
    assert alice.source_id == source.source.pk
    assert (alice.email, alice.phone, alice.first_name, alice.last_name) == (
        "alice@example.com",
        "+44 20 7946 0000",
        "Alice",
        "Liddell",
    )
    assert alice.birth_date == date(1990, 2, 3)
    assert alice.attributes == {"tier": "gold", "score": 7}
    assert len(alice.content_digest) == 64
    assert record("crm-2").birth_date is None
    assert record("crm-2").street == ""


def test_update_changes_the_row_and_bumps_seq(tracking_client: APIClient) -> None:
    upsert(tracking_client, ALICE)
    before = record("crm-1")

    response = upsert(tracking_client, {**ALICE, "email": "alice@new.example.com"})

    assert counts(response) == (0, 1, 0)
    after = record("crm-1")
    assert after.pk == before.pk
    assert after.email == "alice@new.example.com"
    assert after.seq > before.seq
    assert after.content_digest != before.content_digest
    assert after.updated_at >= before.updated_at
    assert after.created_at == before.created_at


def test_unchanged_repost_is_a_no_op(tracking_client: APIClient) -> None:
    upsert(tracking_client, ALICE, BOB)
    before = {r.external_id: (r.seq, r.updated_at, r.content_digest) for r in Record.objects.all()}

    response = upsert(tracking_client, ALICE, BOB)

    assert response.json() == {
        "created": 0,
        "updated": 0,
        "unchanged": 2,
        "superseded": 0,
        "rejected": [],
    }
    after = {r.external_id: (r.seq, r.updated_at, r.content_digest) for r in Record.objects.all()}
    assert after == before


def test_equivalent_content_is_unchanged(tracking_client: APIClient) -> None:
    """Attribute key order and surrounding whitespace are not changes."""
    upsert(tracking_client, ALICE)
    reordered = {
        **ALICE,
        "email": "  alice@example.com ",
        "attributes": {"score": 7, "tier": "gold"},
    }

    assert counts(upsert(tracking_client, reordered)) == (0, 0, 1)
    assert record("crm-1").email == "alice@example.com"


def test_seq_increases_only_for_changed_records(tracking_client: APIClient) -> None:
    upsert(tracking_client, ALICE, BOB)
    seq_before = {r.external_id: r.seq for r in Record.objects.all()}

    response = upsert(tracking_client, ALICE, {**BOB, "city": "Leeds"})

    assert counts(response) == (0, 1, 1)
    seq_after = {r.external_id: r.seq for r in Record.objects.all()}
    assert seq_after["crm-1"] == seq_before["crm-1"]
    assert seq_after["crm-2"] > max(seq_before.values())
    # Reading by seq gives change order: the changed record comes last.
    assert list(Record.objects.order_by("seq").values_list("external_id", flat=True)) == [
        "crm-1",
        "crm-2",
    ]


def test_removing_an_attribute_is_a_change(tracking_client: APIClient) -> None:
    upsert(tracking_client, ALICE)

    response = upsert(tracking_client, {**ALICE, "attributes": {"tier": "gold"}})

    assert counts(response) == (0, 1, 0)
    assert record("crm-1").attributes == {"tier": "gold"}


def test_omitting_a_field_clears_it(tracking_client: APIClient) -> None:
    """A record is replaced as a whole (the CRM's current state), not patched."""
    upsert(tracking_client, ALICE)

    assert counts(upsert(tracking_client, {"external_id": "crm-1", "email": "a@x.io"})) == (0, 1, 0)

    alice = record("crm-1")
    assert (alice.first_name, alice.birth_date, alice.attributes) == ("", None, {})


def test_more_than_1000_records_is_413(tracking_client: APIClient) -> None:
    records = [{"external_id": f"r{i}"} for i in range(1001)]

    response = upsert(tracking_client, *records)

    assert response.status_code == 413
    body = response.json()
    assert_error_contract(body)
    assert (body["code"], body["attr"]) == ("too_many_records", "records")
    assert not Record.objects.exists()


def test_exactly_1000_records_is_accepted(tracking_client: APIClient) -> None:
    records = [{"external_id": f"r{i}", "email": f"p{i}@example.com"} for i in range(1000)]

    assert counts(upsert(tracking_client, *records)) == (1000, 0, 0)
    assert Record.objects.count() == 1000
    assert Record.objects.values("seq").distinct().count() == 1000


def test_records_per_request_limit_is_configurable(tracking_client: APIClient) -> None:
    with ingest_settings(MAX_RECORDS_PER_REQUEST=2):
        response = upsert(tracking_client, ALICE, BOB, {"external_id": "crm-3"})

    assert response.status_code == 413
    assert not Record.objects.exists()


def test_unknown_field_is_rejected_and_the_rest_stored(tracking_client: APIClient) -> None:
    response = upsert(tracking_client, {**BOB, "nickname": "Bobby"}, ALICE)

    assert response.status_code == 200
    body = response.json()
    assert body["created"] == 1
    assert body["rejected"] == [
        {
            "index": 0,
            "external_id": "crm-2",
            "attr": "nickname",
            "code": "unknown_field",
            "detail": "Unknown field 'nickname'; put free fields in attributes.",
        }
    ]
    assert list(Record.objects.values_list("external_id", flat=True)) == ["crm-1"]


@pytest.mark.parametrize(
    ("changes", "attr", "code"),
    [
        ({"email": "not-an-email"}, "email", "invalid_email"),
        ({"email": ["a@b.c"]}, "email", "invalid_string"),
        ({"birth_date": "1990-02-30"}, "birth_date", "invalid_date"),
        ({"birth_date": "03/02/1990"}, "birth_date", "invalid_date"),
        ({"birth_date": 19900203}, "birth_date", "invalid_date"),
        ({"phone": "call me maybe"}, "phone", "invalid_phone"),
        ({"first_name": "x" * 201}, "first_name", "too_long"),
        ({"city": "Le\x00eds"}, "city", "null_character"),
        ({"attributes": {"note": "\x00"}}, "attributes", "null_character"),
        ({"attributes": {"blob": "a" * 17_000}}, "attributes", "too_large"),
        ({"attributes": "gold"}, "attributes", "not_an_object"),
        ({"attributes": []}, "attributes", "not_an_object"),
        ({"attributes": 0}, "attributes", "not_an_object"),
        ({"address": 12}, "address", "invalid"),
        ({"address": {"city": {"name": "Leeds"}}}, "address.city", "invalid_string"),
        ({"external_id": ""}, "external_id", "required"),
        ({"external_id": "   "}, "external_id", "required"),
        ({"external_id": "x" * 256}, "external_id", "too_long"),
    ],
)
def test_invalid_field_is_rejected(
    tracking_client: APIClient, changes: dict[str, Any], attr: str, code: str
) -> None:
    response = upsert(tracking_client, {**BOB, **changes}, ALICE)

    assert response.status_code == 200
    [error] = response.json()["rejected"]
    assert (error["index"], error["attr"], error["code"]) == (0, attr, code)
    assert list(Record.objects.values_list("external_id", flat=True)) == ["crm-1"]


def test_attributes_showing_the_nul_escape_are_stored(tracking_client: APIClient) -> None:
    attributes = {"regex": "^\\u0000$"}

    assert counts(upsert(tracking_client, {**BOB, "attributes": attributes})) == (1, 0, 0)
    assert record("crm-2").attributes == attributes


def test_missing_external_id_is_rejected(tracking_client: APIClient) -> None:
    response = upsert(tracking_client, {"email": "a@b.co"}, ALICE)

    [error] = response.json()["rejected"]
    assert (error["index"], error["external_id"], error["attr"], error["code"]) == (
        0,
        None,
        "external_id",
        "required",
    )


def test_all_invalid_is_400_with_per_record_errors(tracking_client: APIClient) -> None:
    response = upsert(
        tracking_client,
        {"external_id": "a", "email": "nope"},
        "not an object",
        {"external_id": "c", "birth_date": "tomorrow"},
    )

    assert response.status_code == 400
    body = response.json()
    assert_error_contract(body, with_errors=True)
    assert (body["type"], body["code"], body["attr"]) == (
        "validation_error",
        "invalid_records",
        None,
    )
    assert [(e["index"], e["external_id"], e["code"]) for e in body["errors"]] == [
        (0, "a", "invalid_email"),
        (1, None, "not_an_object"),
        (2, "c", "invalid_date"),
    ]
    assert not Record.objects.exists()


@pytest.mark.parametrize("body", [{}, {"records": []}, {"records": {"external_id": "a"}}, []])
def test_records_must_be_a_non_empty_list(tracking_client: APIClient, body: Any) -> None:
    response = post_json(tracking_client, "/v1/records", body)

    assert response.status_code == 400
    assert_error_contract(response.json())


def test_address_object_form(tracking_client: APIClient) -> None:
    address = {"street": "1 Main St", "city": "Leeds", "postal_code": "LS1 1AA", "country": "GB"}

    assert counts(upsert(tracking_client, {**BOB, "address": address})) == (1, 0, 0)

    bob = record("crm-2")
    assert (bob.street, bob.city, bob.postcode, bob.country) == (
        "1 Main St",
        "Leeds",
        "LS1 1AA",
        "GB",
    )


def test_address_object_with_postcode_key(tracking_client: APIClient) -> None:
    upsert(tracking_client, {**BOB, "address": {"postcode": "10115", "city": "Berlin"}})

    bob = record("crm-2")
    assert (bob.postcode, bob.city) == ("10115", "Berlin")


def test_top_level_field_wins_over_address(tracking_client: APIClient) -> None:
    upsert(
        tracking_client, {**BOB, "city": "York", "address": {"city": "Leeds", "street": "2 B Rd"}}
    )

    bob = record("crm-2")
    assert (bob.city, bob.street) == ("York", "2 B Rd")


def test_address_string_is_the_street(tracking_client: APIClient) -> None:
    upsert(tracking_client, {**BOB, "address": "221B Baker Street"})

    assert record("crm-2").street == "221B Baker Street"


def test_address_forms_with_equal_content_are_unchanged(tracking_client: APIClient) -> None:
    upsert(tracking_client, {**BOB, "address": {"street": "1 Main St", "city": "Leeds"}})

    response = upsert(tracking_client, {**BOB, "street": "1 Main St", "city": "Leeds"})

    assert counts(response) == (0, 0, 1)


def test_same_external_id_twice_in_one_request_keeps_the_last(tracking_client: APIClient) -> None:
    response = upsert(
        tracking_client,
        {"external_id": "dup", "email": "first@example.com"},
        {"external_id": "dup", "email": "last@example.com"},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["created"], body["updated"], body["rejected"]) == (1, 0, [])
    assert body["superseded"] == 1  # every record sent is accounted for
    assert Record.objects.filter(external_id="dup").count() == 1
    assert record("dup").email == "last@example.com"


def test_same_external_id_twice_after_trimming(tracking_client: APIClient) -> None:
    response = upsert(tracking_client, {"external_id": " dup"}, {"external_id": "dup "})

    assert response.status_code == 200
    assert (response.json()["created"], response.json()["superseded"]) == (1, 1)
    assert list(Record.objects.values_list("external_id", flat=True)) == ["dup"]


def test_numeric_external_id_is_text(tracking_client: APIClient) -> None:
    upsert(tracking_client, {"external_id": 42})

    assert counts(upsert(tracking_client, {"external_id": "42"})) == (0, 0, 1)
    assert record("42").external_id == "42"


def test_same_external_id_in_two_sources_is_two_records(
    tracking_client: APIClient, other_client: APIClient
) -> None:
    assert counts(upsert(tracking_client, ALICE)) == (1, 0, 0)
    assert counts(upsert(other_client, ALICE)) == (1, 0, 0)

    assert Record.objects.filter(external_id="crm-1").values("source").distinct().count() == 2


def test_records_need_a_write_key(db: None) -> None:
    response = post_json(APIClient(), "/v1/records", {"records": [ALICE]})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="cdp"'
    assert not Record.objects.exists()


def test_records_accept_the_write_key_in_the_body(write_key: str) -> None:
    response = post_json(APIClient(), "/v1/records", {"writeKey": write_key, "records": [ALICE]})

    assert counts(response) == (1, 0, 0)
