"""The blocklist: exact values case-insensitively, anchored regexes, per kind and for all."""

from __future__ import annotations

import pytest

from identity.blocklist import (
    ALL_KINDS,
    DEFAULT_BLOCKED_PATTERNS,
    DEFAULT_BLOCKED_VALUES,
    Blocklist,
    BlocklistConfigError,
)
from identity.kinds import BUILTIN_KINDS

DEFAULTS = Blocklist.build(kinds=BUILTIN_KINDS)


@pytest.mark.parametrize(
    "value",
    [
        "null",
        "NULL",
        "Undefined",
        "anonymous",
        "N/A",
        "-1",
        "0",
        "---",
        "000000",
        "[object Object]",
    ],
)
def test_shared_defaults_block_every_kind(value: str) -> None:
    for kind in BUILTIN_KINDS:
        assert DEFAULTS.is_blocked(kind, value)


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_empty_and_whitespace_are_always_blocked(value: str) -> None:
    empty = Blocklist.build(kinds=BUILTIN_KINDS, values={ALL_KINDS: []}, patterns={ALL_KINDS: []})
    assert empty.is_blocked("user_id", value)


@pytest.mark.parametrize("value", ["10", "-10", "u-0", "nullable", "anonymous-42", "0x0"])
def test_values_that_only_contain_a_blocked_one_are_fine(value: str) -> None:
    assert not DEFAULTS.is_blocked("user_id", value)


def test_kind_lists_apply_to_their_kind_only() -> None:
    assert DEFAULTS.is_blocked("email", "test@test.com")
    assert not DEFAULTS.is_blocked("user_id", "test@test.com")
    assert DEFAULTS.is_blocked("device_id", "9774D56D682E549C")
    assert not DEFAULTS.is_blocked("anonymous_id", "9774d56d682e549c")


def test_an_override_replaces_the_defaults_of_the_keys_it_names_only() -> None:
    blocklist = Blocklist.build(
        kinds=BUILTIN_KINDS,
        values={"email": ["Info@Acme.com"]},
        patterns={"user_id": [r"^guest-\d+$"]},
    )
    assert blocklist.is_blocked("email", "info@acme.com")
    assert not blocklist.is_blocked("email", "test@test.com")  # email defaults replaced
    assert blocklist.is_blocked("email", "null")  # shared defaults kept
    assert blocklist.is_blocked("user_id", "GUEST-12")  # patterns are case-insensitive
    assert not blocklist.is_blocked("user_id", "guest-12x")
    assert blocklist.is_blocked("email", "noreply@acme.com")  # email patterns kept


def test_custom_kinds_can_have_their_own_list() -> None:
    blocklist = Blocklist.build(
        kinds=(*BUILTIN_KINDS, "loyalty_id"), values={"loyalty_id": ["L-0"]}
    )
    assert blocklist.is_blocked("loyalty_id", "l-0")
    assert not blocklist.is_blocked("user_id", "l-0")


def test_the_defaults_name_only_known_keys() -> None:
    for defaults in (DEFAULT_BLOCKED_VALUES, DEFAULT_BLOCKED_PATTERNS):
        assert set(defaults) <= {ALL_KINDS, *BUILTIN_KINDS}


def test_a_bad_regex_names_the_pattern() -> None:
    with pytest.raises(BlocklistConfigError, match=r"BLOCKED_PATTERNS\['email'\].*'\(unclosed'"):
        Blocklist.build(kinds=BUILTIN_KINDS, patterns={"email": ["(unclosed"]})


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(BlocklistConfigError, match="unknown identifier kind 'emial'"):
        Blocklist.build(kinds=BUILTIN_KINDS, values={"emial": ["x"]})


@pytest.mark.parametrize("bad", ["ann@shop.com", [1, 2], {"ann@shop.com": 1}, None])
def test_values_must_be_a_list_of_strings_and_errors_never_echo_them(bad: object) -> None:
    with pytest.raises(BlocklistConfigError, match="must be a list of strings") as caught:
        Blocklist.build(kinds=BUILTIN_KINDS, values={"email": bad})  # type: ignore[dict-item]
    assert "ann@shop.com" not in str(caught.value)


def test_the_whole_setting_must_be_an_object() -> None:
    with pytest.raises(BlocklistConfigError, match="must be an object"):
        Blocklist.build(kinds=BUILTIN_KINDS, values=["null"])  # type: ignore[arg-type]
