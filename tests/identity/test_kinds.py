"""Identifier kinds: built-ins, custom kinds from traits, priority, external values."""

from __future__ import annotations

import pytest

from identity.kinds import (
    CustomKind,
    IdentifierKind,
    KindConfigError,
    KindRegistry,
    external_value,
    split_external,
)


def test_default_priority() -> None:
    assert KindRegistry().priority == (
        "user_id",
        "external",
        "email",
        "phone",
        "device_id",
        "anonymous_id",
    )
    assert set(KindRegistry().priority) == set(IdentifierKind)


def test_custom_kinds_rank_after_external_and_before_email() -> None:
    registry = KindRegistry.build(
        custom=["loyalty_id:loyaltyId", {"kind": "crm_id", "trait": "crmId"}]
    )
    assert registry.priority[:5] == ("user_id", "external", "loyalty_id", "crm_id", "email")
    assert registry.custom == (CustomKind("loyalty_id", "loyaltyId"), CustomKind("crm_id", "crmId"))
    assert registry.is_custom("crm_id")
    assert not registry.is_custom("email")
    assert registry.is_known("loyalty_id")
    assert not KindRegistry().is_known("loyalty_id")


def test_a_configured_priority_goes_first_and_the_rest_keep_the_default_order() -> None:
    registry = KindRegistry.build(priority=["email", "user_id"])
    assert registry.priority == (
        "email",
        "user_id",
        "external",
        "phone",
        "device_id",
        "anonymous_id",
    )
    assert registry.rank("email") == 0
    assert registry.strongest(["phone", "anonymous_id", "user_id"]) == "user_id"
    assert registry.strongest([]) is None


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        (["loyalty_id"], "must be 'kind:trait'"),
        (["Loyalty:loyaltyId"], "lowercase letters"),
        (["email:workEmail"], "is a built-in kind"),
        (["loyalty_id:"], "needs a trait name"),
        (["a:x", "a:y"], "defined twice: a"),
        (["a:x", "b:x"], "read the same trait"),
        ([{"kind": "a"}], "'kind:trait' or"),
        ([42], "'kind:trait' or"),
    ],
)
def test_bad_custom_kinds(custom: list[object], message: str) -> None:
    with pytest.raises(KindConfigError, match=message):
        KindRegistry.build(custom=custom)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("priority", "message"),
    [(["emial"], "unknown identifier kind in priority: emial"), (["email", "email"], "twice")],
)
def test_bad_priority(priority: list[str], message: str) -> None:
    with pytest.raises(KindConfigError, match=message):
        KindRegistry.build(priority=priority)


def test_external_values_carry_the_source() -> None:
    assert external_value(source="salesforce", external_id="003A:42") == "salesforce:003A:42"
    assert split_external("salesforce:003A:42") == ("salesforce", "003A:42")
    assert split_external("no-source") is None
    assert split_external(":42") is None


@pytest.mark.parametrize("source", ["", "a:b", "a b"])
def test_external_value_refuses_a_bad_source_name(source: str) -> None:
    with pytest.raises(ValueError, match="source name"):
        external_value(source=source, external_id="42")
