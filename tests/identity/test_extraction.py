"""Which identifiers events and CRM records carry, as the resolver will read them."""

from __future__ import annotations

from typing import Any

import pytest

from identity.extraction import (
    ExtractedIdentifier,
    IdentifierRole,
    carries_identity_evidence,
    event_identifiers,
    record_identifiers,
)
from tests.identity.conftest import make_config

CONFIG = make_config(custom=("loyalty_id:loyaltyId",))
ANON = "6d92078a-8246-4ba4-ae5b-76104861e7dc"


def ids(found: list[ExtractedIdentifier]) -> set[tuple[str, str]]:
    return {(item.kind, item.value) for item in found}


def test_identify_carries_ids_traits_and_device() -> None:
    found = event_identifiers(
        call_type="identify",
        user_id="u-42",
        anonymous_id=ANON,
        traits={"email": " Ann@Shop.com ", "phone": "(415) 555-0132", "loyaltyId": "L-7"},
        context={"device": {"id": "DEV-1"}},
        config=CONFIG,
    )
    assert found == [
        ExtractedIdentifier("user_id", "u-42", IdentifierRole.ID, "userId"),
        ExtractedIdentifier("anonymous_id", ANON, IdentifierRole.ID, "anonymousId"),
        ExtractedIdentifier("email", "ann@shop.com", IdentifierRole.TRAIT, "traits.email"),
        ExtractedIdentifier("phone", "+14155550132", IdentifierRole.TRAIT, "traits.phone"),
        ExtractedIdentifier("loyalty_id", "L-7", IdentifierRole.TRAIT, "traits.loyaltyId"),
        ExtractedIdentifier("device_id", "DEV-1", IdentifierRole.DEVICE, "context.device.id"),
    ]


def test_rudderstack_identify_sends_traits_in_context() -> None:
    found = event_identifiers(
        call_type="identify",
        user_id="u-42",
        traits={},
        context={"traits": {"email": "ann@shop.com", "loyaltyId": 77}},
        config=CONFIG,
    )
    assert (
        ExtractedIdentifier("email", "ann@shop.com", IdentifierRole.TRAIT, "context.traits.email")
        in found
    )
    assert ("loyalty_id", "77") in ids(found)


def test_the_same_identifier_in_two_places_is_reported_once_from_the_first() -> None:
    found = event_identifiers(
        call_type="identify",
        user_id="u-42",
        traits={"email": "ann@shop.com"},
        context={"traits": {"email": "ANN@shop.com", "phone": "+44 20 7946 0958"}},
        config=CONFIG,
    )
    emails = [item for item in found if item.kind == "email"]
    assert [item.field for item in emails] == ["traits.email"]
    assert ("phone", "+442079460958") in ids(found)


def test_alias_previous_id_is_a_candidate_of_both_id_kinds() -> None:
    found = event_identifiers(
        call_type="alias",
        user_id="u-42",
        previous_id=ANON,
        anonymous_id=ANON,
        traits={"email": "ann@shop.com"},
        config=CONFIG,
    )
    assert found == [
        ExtractedIdentifier("user_id", "u-42", IdentifierRole.ID, "userId"),
        ExtractedIdentifier("anonymous_id", ANON, IdentifierRole.ID, "anonymousId"),
        ExtractedIdentifier("user_id", ANON, IdentifierRole.ALIAS, "previousId"),
    ]
    # the anonymous_id candidate equals anonymousId, so it is reported once (as anonymousId)


def test_alias_without_anonymous_id_reports_both_previous_id_candidates() -> None:
    found = event_identifiers(call_type="alias", user_id="u-42", previous_id="old-7", config=CONFIG)
    assert [(i.kind, i.value, i.role) for i in found if i.role == IdentifierRole.ALIAS] == [
        ("user_id", "old-7", IdentifierRole.ALIAS),
        ("anonymous_id", "old-7", IdentifierRole.ALIAS),
    ]


@pytest.mark.parametrize("call_type", ["track", "page", "screen", "group"])
def test_other_calls_only_name_their_person_and_carry_no_evidence(call_type: str) -> None:
    found = event_identifiers(
        call_type=call_type,
        user_id="u-42",
        anonymous_id=ANON,
        previous_id="old-7",
        traits={"email": "company@acme.com"},
        context={"traits": {"email": "stale@shop.com"}, "device": {"id": "DEV-1"}},
        config=CONFIG,
    )
    assert ids(found) == {("user_id", "u-42"), ("anonymous_id", ANON)}
    assert not carries_identity_evidence(call_type)


@pytest.mark.parametrize("call_type", ["identify", "alias"])
def test_identify_and_alias_carry_evidence(call_type: str) -> None:
    assert carries_identity_evidence(call_type)


def test_unusable_and_blocked_values_are_left_out() -> None:
    found = event_identifiers(
        call_type="identify",
        user_id="null",
        anonymous_id="00000000-0000-0000-0000-000000000000",
        traits={"email": "test@test.com", "phone": "1-800-FLOWERS", "loyaltyId": ["x"]},
        context={"device": {"id": "00000000-0000-0000-0000-000000000000"}},
        config=CONFIG,
    )
    assert found == []


@pytest.mark.parametrize(
    ("traits", "context"),
    [(None, None), ("not a dict", ["nor", "this"]), ({}, {"traits": "x", "device": "y"})],
)
def test_malformed_traits_and_context_are_ignored(traits: Any, context: Any) -> None:
    found = event_identifiers(
        call_type="identify", anonymous_id=ANON, traits=traits, context=context, config=CONFIG
    )
    assert ids(found) == {("anonymous_id", ANON)}


def test_crm_record_identifiers() -> None:
    found = record_identifiers(
        source="salesforce",
        external_id=" 003A42 ",
        email="Ann@Shop.com",
        phone="020 7946 0958",
        attributes={"loyaltyId": "L-7", "other": "ignored"},
        config=make_config(region="GB", custom=("loyalty_id:loyaltyId",)),
    )
    assert found == [
        ExtractedIdentifier("external", "salesforce:003A42", IdentifierRole.ID, "external_id"),
        ExtractedIdentifier("email", "ann@shop.com", IdentifierRole.TRAIT, "email"),
        ExtractedIdentifier("phone", "+442079460958", IdentifierRole.TRAIT, "phone"),
        ExtractedIdentifier("loyalty_id", "L-7", IdentifierRole.TRAIT, "attributes.loyaltyId"),
    ]


def test_crm_record_with_a_numeric_id_and_empty_fields() -> None:
    found = record_identifiers(source="hubspot", external_id=42, email="", phone="", config=CONFIG)
    assert found == [
        ExtractedIdentifier("external", "hubspot:42", IdentifierRole.ID, "external_id")
    ]


def test_a_blocked_external_id_still_leaves_the_other_identifiers() -> None:
    found = record_identifiers(source="crm", external_id="N/A", email="ann@shop.com", config=CONFIG)
    assert ids(found) == {("email", "ann@shop.com")}


def test_extraction_reads_the_settings_without_a_config() -> None:
    found = event_identifiers(call_type="identify", user_id=42, traits={"email": "a@shop.com"})
    assert ids(found) == {("user_id", "42"), ("email", "a@shop.com")}
