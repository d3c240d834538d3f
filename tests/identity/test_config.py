"""CDP_IDENTITY: validated at start-up with messages that say what to fix."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from identity.normalization import identity_config, load_identity_config, normalize
from tests.settings_process import run_with_settings


def test_the_defaults_load() -> None:
    config = load_identity_config({})
    assert config.default_phone_region == "US"
    assert not config.gmail_normalization
    assert not config.strip_email_plus_tags
    assert config.kinds.custom == ()
    assert config.blocklist.is_blocked("user_id", "null")


def test_a_full_configuration_loads() -> None:
    config = load_identity_config(
        {
            "DEFAULT_PHONE_REGION": "gb",
            "GMAIL_NORMALIZATION": True,
            "STRIP_EMAIL_PLUS_TAGS": True,
            "BLOCKED_VALUES": {"loyalty_id": ["L-0"]},
            "BLOCKED_PATTERNS": {"*": [r"^x+$"]},
            "CUSTOM_ID_TRAITS": ["loyalty_id:loyaltyId"],
            "KIND_PRIORITY": ["email"],
        }
    )
    assert config.default_phone_region == "GB"
    assert config.kinds.priority[0] == "email"
    assert config.blocklist.is_blocked("loyalty_id", "l-0")
    assert config.blocklist.is_blocked("user_id", "XXX")
    assert not config.blocklist.is_blocked("user_id", "000")  # "*" patterns replaced


def test_an_empty_region_accepts_only_international_numbers() -> None:
    config = load_identity_config({"DEFAULT_PHONE_REGION": ""})
    assert config.default_phone_region is None
    assert normalize("phone", "(415) 555-0132", config=config) is None
    assert normalize("phone", "+1 415 555 0132", config=config) == "+14155550132"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"DEFAULT_PHONE_REGION": "XX"}, r"'XX' is not a region code.*'US', 'GB'"),
        ({"DEFAULT_PHONE_REGION": "UK"}, r"'UK' is not a region code"),
        ({"DEFAULT_PHONE_REGION": 44}, r"44 is not a region code"),
        ({"BLOCKED_PATTERNS": {"email": ["[a-"]}}, r"invalid regular expression '\[a-'"),
        ({"BLOCKED_VALUES": {"emial": []}}, r"unknown identifier kind 'emial'"),
        ({"BLOCKED_VALUES": {"email": "x"}}, r"must be a list of strings"),
        ({"CUSTOM_ID_TRAITS": ["loyaltyId"]}, r"must be 'kind:trait'"),
        ({"CUSTOM_ID_TRAITS": ["email:workEmail"]}, r"built-in kind"),
        ({"KIND_PRIORITY": ["phone", "fax"]}, r"unknown identifier kind in priority: fax"),
        ({"GMAIL_NORMALIZATION": "yes"}, r"GMAIL_NORMALIZATION'\] must be true or false"),
        ({"GMAIL_NORMALISATION": True}, r"unknown keys: GMAIL_NORMALISATION"),
    ],
)
def test_bad_settings_are_refused_clearly(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        load_identity_config(raw)


def test_overridden_settings_take_effect_and_are_restored() -> None:
    assert normalize("email", "j.doe@googlemail.com") == "j.doe@googlemail.com"
    with override_settings(CDP_IDENTITY={"GMAIL_NORMALIZATION": True}):
        assert identity_config().gmail_normalization
        assert normalize("email", "j.doe@googlemail.com") == "jdoe@gmail.com"
    assert normalize("email", "j.doe@googlemail.com") == "j.doe@googlemail.com"


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    return run_with_settings(
        "from identity.normalization import identity_config as c; "
        "print(c().default_phone_region, c().gmail_normalization, ','.join(c().kinds.priority), "
        "c().blocklist.is_blocked('email', 'info@acme.com'))",
        **env,
    )


def test_environment_variables_configure_identity() -> None:
    result = _load_settings(
        CDP_DEFAULT_PHONE_REGION="de",
        CDP_GMAIL_NORMALIZATION="true",
        CDP_CUSTOM_ID_TRAITS="loyalty_id:loyaltyId, crm_id:crmId",
        CDP_IDENTIFIER_PRIORITY="email",
        CDP_BLOCKED_VALUES_JSON='{"email": ["info@acme.com"]}',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "DE",
        "True",
        "email,user_id,external,loyalty_id,crm_id,phone,device_id,anonymous_id",
        "True",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDP_DEFAULT_PHONE_REGION": "XX"}, "'XX' is not a region code"),
        ({"CDP_BLOCKED_PATTERNS_JSON": '{"email": ["("]}'}, "invalid regular expression"),
        ({"CDP_BLOCKED_VALUES_JSON": "{email: x}"}, "CDP_BLOCKED_VALUES_JSON must be valid JSON"),
        ({"CDP_CUSTOM_ID_TRAITS": "loyalty_id"}, "must be 'kind:trait'"),
    ],
)
def test_the_process_does_not_start_with_bad_identity_settings(
    env: dict[str, str], message: str
) -> None:
    result = _load_settings(**env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
