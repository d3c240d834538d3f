from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from consent.extraction import context_choices
from consent.purposes import DEFAULT_PURPOSES, purposes_parse

PURPOSES = purposes_parse(DEFAULT_PURPOSES)


def test_defaults_and_aliases() -> None:
    assert PURPOSES.names == (
        "analytics",
        "personalization",
        "marketing_email",
        "marketing_sms",
        "advertising",
        "sale_or_share",
    )
    assert PURPOSES.resolve("Advertising") == "advertising"
    assert PURPOSES.resolve(" c0004 ") == "advertising"
    assert PURPOSES.resolve("C0001") is None  # strictly necessary: not a purpose
    assert PURPOSES.by_name["marketing_email"].channel == "email"
    assert not PURPOSES.by_name["marketing_email"].allowed_by_default
    assert PURPOSES.by_name["analytics"].allowed_by_default


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "non-empty"),
        ({"bad name": {}}, "identifiers"),
        ({"x": {"default": "maybe"}}, "default"),
        ({"x": {"aliases": "y"}}, "aliases"),
        ({"x": {"aliases": ["a"]}, "y": {"aliases": ["A"]}}, "both claim"),
    ],
)
def test_bad_configuration_is_refused(config: dict[str, object], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        purposes_parse(config)


def test_segment_consent_shape() -> None:
    choices = context_choices(
        {"consent": {"categoryPreferences": {"Advertising": False, "Analytics": True, "X": 1}}},
        PURPOSES,
    )
    assert {(c.purpose, c.status, c.channel) for c in choices} == {
        ("advertising", "denied", "event"),
        ("analytics", "granted", "event"),
    }


def test_rudderstack_consent_management_shape() -> None:
    choices = context_choices(
        {
            "consentManagement": {
                "provider": "oneTrust",
                "allowedConsentIds": ["C0001", "C0002"],
                "deniedConsentIds": ["C0004"],
            }
        },
        PURPOSES,
    )
    assert {(c.purpose, c.status, c.provider) for c in choices} == {
        ("analytics", "granted", "oneTrust"),
        ("advertising", "denied", "oneTrust"),
    }


def test_cdp_shape_with_policy_version_and_statuses() -> None:
    choices = context_choices(
        {
            "consent": {
                "purposes": {"marketing_email": "withdrawn", "marketing_sms": True, "bad": "x"},
                "policyVersion": "2026-02",
                "legalBasis": "consent",
            }
        },
        PURPOSES,
    )
    assert {(c.purpose, c.status, c.policy_version) for c in choices} == {
        ("marketing_email", "withdrawn", "2026-02"),
        ("marketing_sms", "granted", "2026-02"),
    }


def test_gpc_is_an_opt_out_that_beats_a_grant_in_the_same_call() -> None:
    choices = context_choices(
        {"gpc": True, "consent": {"categoryPreferences": {"advertising": True}}}, PURPOSES
    )
    assert {(c.purpose, c.status, c.channel) for c in choices} == {
        ("advertising", "denied", "gpc"),
        ("sale_or_share", "denied", "gpc"),
    }
    assert context_choices({"gpc": False}, PURPOSES) == []
    assert context_choices({"gpc": "1"}, PURPOSES) == []  # only a JSON true counts
    assert context_choices(None, PURPOSES) == []
