"""Blocked values: placeholders and junk that must never become identifiers.

One ``"null"`` user id or one ``test@test.com`` shared by a thousand sign-up forms would merge a
thousand people into one profile, so these values are dropped before they reach the graph.

A blocklist holds, per kind and for all kinds (key ``"*"``):

* exact values, compared case-insensitively (``casefold``) with the normalized value;
* regular expressions, searched (``re.search``, so anchor them) case-insensitively in the
  normalized value.

Empty and whitespace-only values are always blocked. The list is compiled once per
configuration (``identity.normalization`` caches it with the rest of the settings).

Default choices, and why:

* all kinds: ``^[0-]*$`` (``0``, ``-``, ``000…``, all-zero UUIDs such as the IDFA/AAID a device
  reports when ad tracking is off), and the placeholders SDK bugs and forms produce: ``-1``,
  ``null``, ``none``, ``nil``, ``nan``, ``undefined``, ``[object object]``, ``true``, ``false``,
  ``anonymous``, ``unknown``, ``n/a``, ``#n/a``, ``test``.
* email: well-known fake addresses typed into forms (``test@test.com``,
  ``example@example.com``, ``email@email.com``, …); any address under the special-use TLDs of
  RFC 2606 / RFC 6761 (``*.test``, ``*.example``, ``*.invalid``, ``*.localhost``), where no
  person receives mail; and no-reply/system mailboxes (``noreply@``, ``no-reply@``,
  ``donotreply@``, ``do-not-reply@``, ``mailer-daemon@``, ``postmaster@``), which are shared by
  design. Not blocked by default: the whole ``example.com/.net/.org`` domains (this project's
  tests and demo data use them for distinct people; add a pattern in production if you
  like), and role mailboxes such as ``info@`` or ``sales@`` (in B2B data often the only
  contact of a customer).
* device_id: ``9774d56d682e549c``, the ANDROID_ID that many Android 2.2 devices share.

Placeholder phone numbers (one repeated digit, ``1234567890``) are rejected by phone
normalization itself, because a regex over E.164 cannot tell the country code from the rest.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

ALL_KINDS = "*"

DEFAULT_BLOCKED_VALUES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        ALL_KINDS: (
            "-1",
            "null",
            "none",
            "nil",
            "nan",
            "undefined",
            "[object object]",
            "true",
            "false",
            "anonymous",
            "unknown",
            "n/a",
            "#n/a",
            "test",
        ),
        "email": (
            "test@test.com",
            "example@example.com",
            "test@example.com",
            "email@email.com",
            "noemail@noemail.com",
            "none@none.com",
            "no@email.com",
            "abc@abc.com",
        ),
        "device_id": ("9774d56d682e549c",),
    }
)
DEFAULT_BLOCKED_PATTERNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        ALL_KINDS: (r"^[0-]*$",),
        "email": (
            r"@([^@.]+\.)+(test|example|invalid|localhost)$",
            r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster)@",
        ),
    }
)


class BlocklistConfigError(ValueError):
    """The blocklist settings are wrong. The message names the setting, never a blocked value
    (an operator may block a real address)."""


@dataclass(frozen=True, slots=True)
class Blocklist:
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    patterns: Mapping[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        kinds: Collection[str],
        values: Mapping[str, Iterable[str]] | None = None,
        patterns: Mapping[str, Iterable[str]] | None = None,
    ) -> Blocklist:
        """Compile a blocklist. ``None`` means the defaults; a mapping replaces the defaults of
        the keys it names (``"*"`` or a kind in ``kinds``) and keeps the others, so
        ``{"email": [...]}`` changes the email list only and ``{"*": []}`` empties the shared
        one."""
        merged_values = _merge(DEFAULT_BLOCKED_VALUES, values, kinds, "BLOCKED_VALUES")
        merged_patterns = _merge(DEFAULT_BLOCKED_PATTERNS, patterns, kinds, "BLOCKED_PATTERNS")
        return cls(
            values={key: frozenset(v.casefold() for v in vs) for key, vs in merged_values.items()},
            patterns={
                key: tuple(_compile(p, key) for p in ps) for key, ps in merged_patterns.items()
            },
        )

    def is_blocked(self, kind: str, value: str) -> bool:
        """Whether a normalized ``value`` of ``kind`` must not become an identifier."""
        if not value.strip():
            return True
        folded = value.casefold()
        for key in (ALL_KINDS, kind):
            if folded in self.values.get(key, ()):
                return True
            if any(pattern.search(value) for pattern in self.patterns.get(key, ())):
                return True
        return False


def _merge(
    defaults: Mapping[str, tuple[str, ...]],
    overrides: Mapping[str, Iterable[str]] | None,
    kinds: Collection[str],
    setting: str,
) -> dict[str, tuple[str, ...]]:
    merged = dict(defaults)
    if overrides is None:
        return merged
    if not isinstance(overrides, Mapping):
        raise BlocklistConfigError(f"{setting} must be an object of kind -> list of strings")
    for key, items in overrides.items():
        if key != ALL_KINDS and key not in kinds:
            raise BlocklistConfigError(f"{setting}: unknown identifier kind {key!r}")
        merged[key] = _strings(items, f"{setting}[{key!r}]")
    return merged


def _strings(items: Any, where: str) -> tuple[str, ...]:
    if isinstance(items, (str, Mapping)) or not isinstance(items, Iterable):
        raise BlocklistConfigError(f"{where} must be a list of strings")
    result = tuple(items)
    if not all(isinstance(item, str) for item in result):
        raise BlocklistConfigError(f"{where} must be a list of strings")
    return result


def _compile(pattern: str, key: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        # The pattern is configuration, not data: showing it tells the operator what to fix.
        raise BlocklistConfigError(
            f"BLOCKED_PATTERNS[{key!r}]: invalid regular expression {pattern!r}: {exc}"
        ) from exc
