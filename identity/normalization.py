"""Normalization: one raw value -> the canonical text of an identifier, or None.

``normalize(kind, raw)`` is the entry point: the per-kind canonical form, then the blocklist.
None means "not a usable identifier" (empty, invalid or blocked); it never raises on data and
never puts a value in a message or a log (values are PII). The per-kind functions below only
canonicalize; they do not consult the blocklist.

Decisions, and why:

* **email**: trimmed, NFC-normalized and the whole address lowercased. RFC 5321 lets the local
  part be case-sensitive, but no mainstream mailbox provider treats it so and people type their
  address with whatever case autocorrect gives them; keeping case would split one person into
  several profiles, while two real mailboxes that differ only by case do not occur in practice.
  A trailing dot of the domain (``x@example.com.``, the DNS root) is dropped. Exactly one ``@``,
  a non-empty local part, a domain with a dot and no empty label, no whitespace or control
  characters inside; otherwise None. At most 254 characters (the SMTP path limit).
  Gmail rules (off by default, ``GMAIL_NORMALIZATION``): for gmail.com and googlemail.com drop
  dots and a ``+tag`` in the local part and map googlemail.com to gmail.com, since Gmail
  delivers all those forms to one mailbox. Plus-tag stripping for every domain is separate and
  off by default (``STRIP_EMAIL_PLUS_TAGS``): many providers deliver ``a+b@`` to ``a@``, but not
  all, and some treat ``+`` as an ordinary character.
* **phone**: parsed with ``phonenumbers`` and the configured default region (for numbers
  written without ``+country``), returned as E.164. A number must be *possible* (its length
  fits the country's plan), not *valid* (it is in a range allocated today): validity comes from
  allocation metadata that changes with every ``phonenumbers`` release, so a library upgrade
  would turn a stored identifier into None (or a new range would be refused until the next
  upgrade) and split the graph; an unallocated number is also harmless as an identifier.
  Numbers only possible as *local* numbers (no area code) are refused: they do not say where
  they are. Letters anywhere (vanity numbers like 1-800-FLOWERS, ``ext``) and extensions are
  refused: a vanity number is a business line, an extension a shared switchboard. Placeholder
  numbers (one repeated digit, 1234567890…) are refused. Input over 64 characters is refused.
* **ids** (user_id, anonymous_id, custom kinds, the id part of ``external``): trimmed text,
  case kept (ids are opaque), at most 255 characters, no NUL. Numbers become text the way
  Segment's JavaScript does it: JSON has one number type, so ``42`` and ``42.0`` are the same
  number and both become ``"42"``; other floats use the shortest round-trip text (``1.5``).
  Floats beyond 2**53 and NaN/infinity are refused: such a float has already been rounded by the
  sender, so two users could share it. Booleans are refused.
* **device_id**: an id, and a UUID-shaped id (IDFA, AAID, IDFV) is lowercased, since UUIDs are
  case-insensitive and iOS reports them uppercase while other tools write them lowercase. Ids of
  only zeros and dashes (the IDFA/AAID reported when ad tracking is off) are refused here, not
  only by the configurable blocklist.
* **external**: ``"<source>:<external_id>"`` with the id part normalized as an id; the blocklist
  is checked against the id part.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from identity.blocklist import Blocklist, BlocklistConfigError
from identity.kinds import (
    BUILTIN_KINDS,
    IdentifierKind,
    KindConfigError,
    KindRegistry,
    split_external,
)

MAX_ID_LENGTH = 255
MAX_EMAIL_LENGTH = 254
MAX_PHONE_INPUT_LENGTH = 64
_MAX_EXACT_FLOAT = 2**53
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Control, format (zero-width, BOM), surrogate, private-use and unassigned characters.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_PLACEHOLDER_RUNS = ("1234567890", "0123456789", "9876543210")


# --- per-kind canonical forms (no blocklist) --------------------------------------------------
def normalize_id(raw: object) -> str | None:
    """An opaque id as text: trimmed, numbers rendered like JavaScript, at most 255 chars."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float):
        text_or_none = _float_text(raw)
        if text_or_none is None:
            return None
        text = text_or_none
    elif isinstance(raw, str):
        text = raw.strip()
    else:
        return None
    if not text or len(text) > MAX_ID_LENGTH or "\x00" in text:
        return None
    return text


def normalize_email(
    raw: object, *, gmail: bool = False, strip_plus_tags: bool = False
) -> str | None:
    """``"  John.Doe@Example.COM. "`` -> ``"john.doe@example.com"``; None when not an address."""
    if not isinstance(raw, str):
        return None
    text = unicodedata.normalize("NFC", raw.strip().lower())
    if any(ch.isspace() or unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in text):
        return None
    if text.count("@") != 1:
        return None
    local, _, domain = text.partition("@")
    domain = domain.rstrip(".")
    if not local or "." not in domain or not all(domain.split(".")):
        return None
    if gmail and domain in _GMAIL_DOMAINS:
        local = local.partition("+")[0].replace(".", "")
        domain = "gmail.com"
    elif strip_plus_tags:
        local = local.partition("+")[0]
    if not local:
        return None
    address = f"{local}@{domain}"
    return address if len(address) <= MAX_EMAIL_LENGTH else None


def normalize_phone(raw: object, *, region: str | None) -> str | None:
    """A possible phone number in E.164 (``"+14155550123"``); ``region`` (``"US"``) is used for
    numbers written without a country code, None accepts only ``+`` numbers."""
    text = normalize_id(raw)
    if text is None or len(text) > MAX_PHONE_INPUT_LENGTH or any(ch.isalpha() for ch in text):
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if number.extension:
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if not _E164.fullmatch(e164):
        return None
    if _is_placeholder_number(phonenumbers.national_significant_number(number)):
        return None
    if text != e164 and normalize_phone(e164, region=None) != e164:
        # Parsing can drop national prefixes (Austria's "+43 0..."), and the E.164 text of such
        # a number is not itself possible: the canonical form must normalize to itself.
        return None
    return e164


def normalize_device_id(raw: object) -> str | None:
    """A device id: trimmed, UUIDs lowercased, all-zero ids refused."""
    text = normalize_id(raw)
    if text is None or set(text) <= {"0", "-"}:
        return None
    return text.lower() if _UUID.fullmatch(text) else text


def normalize_external(raw: object) -> str | None:
    """``" crm: 42 "`` -> ``"crm:42"``: the source name and the normalized id part."""
    if not isinstance(raw, str):
        return None
    parts = split_external(raw.strip())
    if parts is None:
        return None
    source, external_id = parts
    normalized_id = normalize_id(external_id)
    return None if normalized_id is None else f"{source}:{normalized_id}"


# --- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Everything normalization and extraction need, validated and compiled once."""

    kinds: KindRegistry = field(default_factory=KindRegistry)
    blocklist: Blocklist = field(default_factory=lambda: Blocklist.build(kinds=BUILTIN_KINDS))
    default_phone_region: str | None = "US"
    gmail_normalization: bool = False
    strip_email_plus_tags: bool = False


_SETTING_KEYS = frozenset(
    {
        "DEFAULT_PHONE_REGION",
        "GMAIL_NORMALIZATION",
        "STRIP_EMAIL_PLUS_TAGS",
        "BLOCKED_VALUES",
        "BLOCKED_PATTERNS",
        "CUSTOM_ID_TRAITS",
        "KIND_PRIORITY",
        # Read by cdp.ingestion.pii (which values are encrypted), not by normalization.
        "PII_TRAITS",
    }
)


def load_identity_config(raw: Mapping[str, Any]) -> IdentityConfig:
    """Validate ``settings.CDP_IDENTITY`` and compile it; ImproperlyConfigured when it is wrong.

    Settings call this at start-up, so a bad region code or regex stops the process at once
    instead of failing in a worker on the first event.
    """
    unknown = sorted(set(raw) - _SETTING_KEYS)
    if unknown:
        raise ImproperlyConfigured(f"CDP_IDENTITY has unknown keys: {', '.join(unknown)}")
    try:
        kinds = KindRegistry.build(
            custom=raw.get("CUSTOM_ID_TRAITS") or (),
            priority=raw.get("KIND_PRIORITY") or (),
        )
        blocklist = Blocklist.build(
            kinds=kinds.kinds,
            values=raw.get("BLOCKED_VALUES"),
            patterns=raw.get("BLOCKED_PATTERNS"),
        )
    except (KindConfigError, BlocklistConfigError) as exc:
        raise ImproperlyConfigured(f"CDP_IDENTITY: {exc}") from exc
    return IdentityConfig(
        kinds=kinds,
        blocklist=blocklist,
        default_phone_region=_phone_region(raw.get("DEFAULT_PHONE_REGION", "US")),
        gmail_normalization=_flag(raw, "GMAIL_NORMALIZATION"),
        strip_email_plus_tags=_flag(raw, "STRIP_EMAIL_PLUS_TAGS"),
    )


_loaded: dict[str, IdentityConfig] = {}


def identity_config() -> IdentityConfig:
    """The configuration from ``settings.CDP_IDENTITY``, compiled on first use."""
    config = _loaded.get("current")
    if config is None:
        config = _loaded["current"] = load_identity_config(getattr(settings, "CDP_IDENTITY", {}))
    return config


@receiver(setting_changed)
def _forget_config(*, setting: str, **kwargs: Any) -> None:
    if setting == "CDP_IDENTITY":
        _loaded.clear()


# --- entry point ------------------------------------------------------------------------------
def normalize(kind: str, raw: object, *, config: IdentityConfig | None = None) -> str | None:
    """The normalized value of ``raw`` as an identifier of ``kind``, or None when it is not a
    usable identifier (empty, invalid or blocked). Raises ValueError only for an unknown kind."""
    config = config or identity_config()
    if not config.kinds.is_known(kind):
        raise ValueError(f"unknown identifier kind {kind!r}")
    if kind == IdentifierKind.EMAIL:
        return _normalize_email(raw, config)
    if kind == IdentifierKind.EXTERNAL:
        value = normalize_external(raw)
        checked = None if value is None else value.partition(":")[2]
    else:
        value = checked = _canonical(kind, raw, config)
    if value is None or checked is None or config.blocklist.is_blocked(kind, checked):
        return None
    return value


def _canonical(kind: str, raw: object, config: IdentityConfig) -> str | None:
    if kind == IdentifierKind.PHONE:
        return normalize_phone(raw, region=config.default_phone_region)
    if kind == IdentifierKind.DEVICE_ID:
        return normalize_device_id(raw)
    return normalize_id(raw)  # user_id, anonymous_id and custom kinds


def _normalize_email(raw: object, config: IdentityConfig) -> str | None:
    plain = normalize_email(raw)
    if plain is None or config.blocklist.is_blocked(IdentifierKind.EMAIL, plain):
        return None
    if not (config.gmail_normalization or config.strip_email_plus_tags):
        return plain
    # Checked before and after the provider rules, so a blocked "t.e.s.t@gmail.com" stays
    # blocked once the rules fold it.
    value = normalize_email(
        plain, gmail=config.gmail_normalization, strip_plus_tags=config.strip_email_plus_tags
    )
    if value is None or config.blocklist.is_blocked(IdentifierKind.EMAIL, value):
        return None
    return value


def _float_text(value: float) -> str | None:
    if not math.isfinite(value) or abs(value) >= _MAX_EXACT_FLOAT:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def _is_placeholder_number(national: str) -> bool:
    # Short national numbers (a few small countries use 4-5 digits) are left alone.
    if len(national) < 6:
        return False
    return len(set(national)) == 1 or any(run.startswith(national) for run in _PLACEHOLDER_RUNS)


def _phone_region(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().upper() in phonenumbers.SUPPORTED_REGIONS:
        return value.strip().upper()
    raise ImproperlyConfigured(
        f"CDP_IDENTITY['DEFAULT_PHONE_REGION'] (CDP_DEFAULT_PHONE_REGION) = {value!r} is not a "
        "region code phonenumbers knows; use an ISO 3166 code such as 'US', 'GB' or 'DE', or "
        "'' to accept only numbers written with +country code"
    )


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"CDP_IDENTITY['{key}'] must be true or false")
    return value
