"""Normalization of identifier values: properties over arbitrary input, then the decisions."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from identity.kinds import IdentifierKind
from identity.normalization import (
    IdentityConfig,
    normalize,
    normalize_device_id,
    normalize_email,
    normalize_id,
    normalize_phone,
)
from tests.identity.conftest import make_config

DEFAULT = make_config()
# Every option on, and a custom kind, so the properties cover the optional rules too.
EVERYTHING = make_config(region="GB", gmail=True, plus_tags=True, custom=("loyalty_id:loyaltyId",))
NO_REGION = make_config(region=None)
CONFIGS = (DEFAULT, EVERYTHING, NO_REGION)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
padding = st.text(alphabet=" \t\n\r\u00a0\u2003", max_size=3)


@st.composite
def email_like(draw: st.DrawFn) -> str:
    """Real addresses in random case, padded, sometimes with a trailing dot or a tag."""
    address = draw(st.emails())
    local, _, domain = address.rpartition("@")
    if draw(st.booleans()):
        domain = draw(st.sampled_from(["gmail.com", "googlemail.com", "GMail.com", "x.org."]))
    if draw(st.booleans()):
        local = f"{local}+{draw(st.text(alphabet='abc.+', max_size=4))}"
    text = "".join(ch.upper() if draw(st.booleans()) else ch for ch in f"{local}@{domain}")
    return draw(padding) + text + draw(padding)


def _example_number(region: str, style: int) -> str:
    number = phonenumbers.example_number(region)
    return "" if number is None else phonenumbers.format_number(number, style)


phone_like = st.one_of(
    # Real shapes: every region's example number, written nationally and internationally.
    st.builds(
        _example_number,
        st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)),
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ]
        ),
    ),
    st.from_regex(r"\A\+?[0-9 ()\-./]{5,22}\Z"),
    st.integers(min_value=0, max_value=10**16),
    st.builds(
        lambda cc, rest: f"+{cc} {rest}",
        st.sampled_from(sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)),
        st.from_regex(r"\A[0-9]{4,14}\Z"),
    ),
)
id_like = st.one_of(
    st.text(max_size=300),
    st.integers(),
    st.floats(),
    st.uuids().map(lambda u: str(u).upper()),
    st.sampled_from(["crm:42", " crm : 1", "web:", ":x", "a:b:c", "crm:NULL", "crm:-1"]),
)
values = st.one_of(anything, email_like(), phone_like, id_like)


def kinds_of(config: IdentityConfig) -> list[str]:
    return sorted(config.kinds.kinds)


# --- properties -------------------------------------------------------------------------------
@settings(max_examples=600, deadline=None)
@given(raw=values, which=st.integers(min_value=0, max_value=len(CONFIGS) - 1), data=st.data())
@example(raw="020 7946 0958", which=1, data=None)
def test_normalize_never_raises_is_idempotent_and_never_returns_blocked(
    raw: Any, which: int, data: st.DataObject | None
) -> None:
    config = CONFIGS[which]
    kinds = kinds_of(config)
    for kind in kinds if data is None else [data.draw(st.sampled_from(kinds))]:
        value = normalize(kind, raw, config=config)
        if value is None:
            continue
        assert isinstance(value, str)
        assert normalize(kind, value, config=config) == value
        checked = value.partition(":")[2] if kind == IdentifierKind.EXTERNAL else value
        assert not config.blocklist.is_blocked(kind, checked)


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(email_like(), st.text()), which=st.integers(min_value=0, max_value=2))
def test_email_output_is_lowercase_with_one_at(raw: str, which: int) -> None:
    value = normalize(IdentifierKind.EMAIL, raw, config=CONFIGS[which])
    if value is not None:
        assert value == value.lower()
        assert value.count("@") == 1
        assert value == value.strip()
        local, _, domain = value.partition("@")
        assert local
        assert "." in domain
        assert not domain.endswith(".")


@settings(max_examples=400, deadline=None)
@given(raw=st.one_of(phone_like, st.text()), which=st.integers(min_value=0, max_value=2))
def test_phone_output_is_e164(raw: Any, which: int) -> None:
    value = normalize(IdentifierKind.PHONE, raw, config=CONFIGS[which])
    if value is not None:
        assert E164.match(value)
        assert phonenumbers.is_possible_number(phonenumbers.parse(value))


@settings(max_examples=300, deadline=None)
@given(address=st.emails(), data=st.data())
def test_case_and_whitespace_variants_of_one_email_normalize_equal(
    address: str, data: st.DataObject
) -> None:
    variant = "".join(ch.swapcase() if data.draw(st.booleans()) else ch for ch in address)
    padded = data.draw(padding) + variant + data.draw(padding)
    for config in CONFIGS:
        assert normalize("email", padded, config=config) == normalize(
            "email", address, config=config
        )


@settings(max_examples=300, deadline=None)
@given(
    blocked=st.sampled_from(["null", "undefined", "anonymous", "-1", "0", "000", "n/a", "none"]),
    data=st.data(),
)
def test_blocked_values_never_come_out_in_any_case_or_padding(
    blocked: str, data: st.DataObject
) -> None:
    variant = "".join(ch.upper() if data.draw(st.booleans()) else ch for ch in blocked)
    raw = data.draw(padding) + variant + data.draw(padding)
    for kind in ("user_id", "anonymous_id", "device_id", "loyalty_id"):
        assert normalize(kind, raw, config=EVERYTHING) is None
    assert normalize("external", f"crm:{raw}", config=EVERYTHING) is None


# --- email ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  John.Doe@Example.COM ", "john.doe@example.com"),
        ("john@shop.example.com.", "john@shop.example.com"),
        ("JÖRG@Bücher.de", "jörg@bücher.de"),
        ("a+b@c.io", "a+b@c.io"),
        ("john.doe@gmail.com", "john.doe@gmail.com"),
        ("no-at-sign.example.com", None),
        ("two@@example.com", None),
        ("a@b@example.com", None),
        ("john doe@example.com", None),
        ("john@exa mple.com", None),
        ("john\u200b@example.com", None),
        ("@example.com", None),
        ("john@", None),
        ("john@localhost", None),
        ("john@example..com", None),
        ("john@.example.com", None),
        ("John <john@example.com>", None),
        ("x" * 250 + "@example.com", None),
        (42, None),
        (None, None),
    ],
)
def test_email_canonical_form(raw: object, expected: str | None) -> None:
    assert normalize_email(raw) == expected


def test_gmail_rules_are_off_by_default() -> None:
    assert normalize("email", "J.Doe+news@googlemail.com", config=DEFAULT) == (
        "j.doe+news@googlemail.com"
    )


@pytest.mark.parametrize(
    "raw",
    ["J.Doe+news@googlemail.com", "jdoe@gmail.com", "j.d.o.e@GMAIL.com", "jdoe+a+b@gmail.com."],
)
def test_gmail_rules_fold_dots_tags_and_googlemail(raw: str) -> None:
    config = make_config(gmail=True)
    assert normalize("email", raw, config=config) == "jdoe@gmail.com"


def test_gmail_rules_leave_other_domains_alone() -> None:
    config = make_config(gmail=True)
    assert normalize("email", "j.doe+x@outlook.com", config=config) == "j.doe+x@outlook.com"


def test_plus_tags_are_stripped_for_every_domain_only_when_asked() -> None:
    assert normalize("email", "ann+shop@fastmail.com", config=DEFAULT) == "ann+shop@fastmail.com"
    config = make_config(plus_tags=True)
    assert normalize("email", "ann+shop@fastmail.com", config=config) == "ann@fastmail.com"
    assert normalize("email", "+shop@fastmail.com", config=config) is None


def test_a_blocked_address_stays_blocked_when_gmail_rules_fold_it() -> None:
    config = make_config(gmail=True)
    assert normalize("email", "no.reply@gmail.com", config=config) is None
    assert normalize("email", "noreply+x@googlemail.com", config=config) is None


@pytest.mark.parametrize(
    "raw",
    [
        "test@test.com",
        "TEST@test.com",
        "example@example.com",
        "noreply@shop.com",
        "no-reply@shop.com",
        "DoNotReply@shop.com",
        "someone@mail.test",
        "someone@corp.invalid",
        "mailer-daemon@shop.com",
    ],
)
def test_default_blocked_emails(raw: str) -> None:
    assert normalize("email", raw, config=DEFAULT) is None


@pytest.mark.parametrize("raw", ["ann@example.com", "ann@contest.com", "info@shop.com"])
def test_ordinary_addresses_are_not_blocked(raw: str) -> None:
    assert normalize("email", raw, config=DEFAULT) == raw


# --- phone ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0132", "US", "+14155550132"),
        ("415.555.0132", "US", "+14155550132"),
        (4155550132, "US", "+14155550132"),
        ("+1 415 555 0132", "GB", "+14155550132"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("07700 900123", "GB", "+447700900123"),
        ("+44 (0)20 7946 0958", "US", "+442079460958"),
        ("030 1234567", "DE", "+49301234567"),
        ("020 7946 0958", "US", None),  # not a US number shape
        ("020 7946 0958", None, None),  # no region: only +country numbers
        ("+44 20 7946 0958", None, "+442079460958"),
    ],
)
def test_phone_regions(raw: object, region: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, region=region) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "1-800-FLOWERS",
        "1-800-356-9377 ext. 12",
        "+1 650-253-0000 x123",
        "tel:+1-650-253-0000",
        "+1 650 253 0000;ext=5",
    ],
)
def test_letters_vanity_numbers_and_extensions_are_refused(raw: str) -> None:
    assert normalize_phone(raw, region="US") is None


def test_possible_but_unallocated_numbers_are_kept() -> None:
    # NANP exchanges never start with 0, so this is not *valid*; it is *possible* (10 digits).
    number = phonenumbers.parse("+1 201 055 1234")
    assert not phonenumbers.is_valid_number(number)
    assert normalize_phone("+1 201 055 1234", region="US") == "+12010551234"


@pytest.mark.parametrize(
    "raw",
    [
        "555-0132",  # local only: possible without the area code, but it does not say where
        "123",
        "+1 111 111 1111",
        "1234567890",
        "(000) 000-0000",
        "+49 0000000000",
        "",
        "   ",
        True,
        1.5,
        "+" + "1" * 70,
    ],
)
def test_unusable_phone_numbers(raw: object) -> None:
    assert normalize_phone(raw, region="US") is None


# --- ids --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  u-42 ", "u-42"),
        ("User-42", "User-42"),  # ids are opaque: case is kept
        (42, "42"),
        (42.0, "42"),  # one JSON number, one id (as JavaScript prints it)
        (-7, "-7"),
        (1.5, "1.5"),
        (2**70, str(2**70)),  # exact integers stay exact
        (2.0**60, None),  # a float this large was already rounded by the sender
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("", None),
        (" \t", None),
        ("a\x00b", None),
        ("x" * 255, "x" * 255),
        ("x" * 256, None),
        (["u1"], None),
        ({"id": 1}, None),
    ],
)
def test_id_text(raw: object, expected: str | None) -> None:
    assert normalize_id(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("6D92078A-8246-4BA4-AE5B-76104861E7DC", "6d92078a-8246-4ba4-ae5b-76104861e7dc"),
        (" 38400000-8cf0-11bd-b23e-10b96e40000d ", "38400000-8cf0-11bd-b23e-10b96e40000d"),
        ("AbC123-Device", "AbC123-Device"),  # not a UUID: opaque, case kept
        ("00000000-0000-0000-0000-000000000000", None),
        ("0000000000000000", None),
    ],
)
def test_device_ids(raw: str, expected: str | None) -> None:
    assert normalize_device_id(raw) == expected


def test_the_shared_android_id_is_blocked() -> None:
    assert normalize("device_id", "9774d56d682e549c", config=DEFAULT) is None
    assert normalize("user_id", "9774d56d682e549c", config=DEFAULT) == "9774d56d682e549c"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" crm:A-42 ", "crm:A-42"),
        ("crm: 42 ", "crm:42"),
        ("crm:a:b", "crm:a:b"),  # only the first ":" separates the source
        ("crm:", None),
        (":42", None),
        ("crm 2:42", None),
        ("42", None),
        ("crm:null", None),
        ("crm:-1", None),
        (42, None),
    ],
)
def test_external_values(raw: object, expected: str | None) -> None:
    assert normalize("external", raw, config=DEFAULT) == expected


# --- kinds ------------------------------------------------------------------------------------
def test_custom_kinds_normalize_as_ids() -> None:
    assert normalize("loyalty_id", "  L-0042 ", config=EVERYTHING) == "L-0042"
    assert normalize("loyalty_id", 1234, config=EVERYTHING) == "1234"
    assert normalize("loyalty_id", "unknown", config=EVERYTHING) is None


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown identifier kind 'loyalty_id'"):
        normalize("loyalty_id", "L-1", config=DEFAULT)


def test_normalize_reads_the_settings_without_a_config() -> None:
    assert normalize(IdentifierKind.EMAIL, " Ann@Shop.com ") == "ann@shop.com"


def test_a_phone_whose_e164_form_is_not_itself_a_phone_is_refused() -> None:
    """Found by the property test: "+43000000" formats as "+4300000", which is not possible."""
    assert normalize_phone("+43000000", region="US") is None
    assert normalize_phone("+4300000", region="US") is None
