"""Signed, expiring unsubscribe tokens and the links that carry them.

A token names an identifier by id (never its address: the address must not travel in a URL, a
mailbox's link, a proxy's log) and a purpose, and proves that cdp minted it. Layout, then
base64url without padding (about 60 characters for ``marketing_email``)::

    version (1 byte, 1) | identifier id (8, big-endian) | issued at (4, Unix seconds, big-endian)
    | purpose (UTF-8) | tag (16)

``tag`` is HMAC-SHA256 over everything before it, truncated to 128 bits (as RFC 4868 does for
IPsec: forging one is a 2**-128 guess per try), under a key of its own::

    HKDF-SHA256(SECRET_KEY, salt=None, info="cdp/unsubscribe-token/v1")

Why not ``django.core.signing.TimestampSigner`` with its own salt: it would be as sound, but its
``value:timestamp:signature`` text is longer, and its clock cannot be passed in (expiry is tested
by handing ``now`` to ``token_verify``, not by sleeping or patching ``time``). A subkey derived
with HKDF separates these tokens from everything else keyed by ``SECRET_KEY`` (sessions,
password resets): no other signature can ever pass as an unsubscribe token. Keys derived from
``SECRET_KEY_FALLBACKS`` are accepted too, so rotating ``SECRET_KEY`` does not break the links
already sitting in mailboxes.

The token carries its issue time, not its expiry: it stops working
``CDP_CONSENT["UNSUBSCRIBE_MAX_AGE_DAYS"]`` days after it was minted, so shortening the setting
shortens every link already sent. Every way a token can fail (malformed, forged, signed with
another key, expired, naming a purpose no longer configured) raises the same
``UnsubscribeLinkInvalid``: the answer never says which.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework import status

from cdp.api.errors import ApplicationError, InvalidInput
from cdp.crypto.errors import KeyDestroyed
from consent.purposes import purposes
from identity.kinds import IdentifierKind
from identity.models import Identifier
from identity.selectors import identifier_value

VERSION = 1
TAG_BYTES = 16
_HEADER = struct.Struct(">BQI")  # version, identifier id, issued at
_KEY_INFO = b"cdp/unsubscribe-token/v1"
# Longer than any token this module mints (a 64-character purpose): refused before decoding.
MAX_TOKEN_LENGTH = 160
# Tokens minted by a server whose clock runs a little ahead still work.
CLOCK_SKEW_SECONDS = 300
_BASE_URL = re.compile(r"https?://[^/?#\s]+")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class UnsubscribeLinkInvalid(ApplicationError):
    """Malformed, forged, expired, or naming what no longer exists: deliberately one error."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "unsubscribe_link_invalid"

    def __init__(self) -> None:
        super().__init__(
            "This unsubscribe link is invalid or has expired. Use the link in a more recent "
            "message, or contact the sender."
        )


@dataclass(frozen=True, slots=True)
class UnsubscribeClaim:
    """What a verified token says."""

    identifier_id: int
    purpose: str
    issued_at: datetime
    expires_at: datetime


def max_age() -> timedelta:
    return timedelta(days=settings.CDP_CONSENT["UNSUBSCRIBE_MAX_AGE_DAYS"])


def token_mint(*, identifier_id: int, purpose: str, now: float | None = None) -> str:
    """A token for unsubscribing ``identifier_id`` from ``purpose`` (a configured one)."""
    if purposes().get(purpose) is None:
        raise InvalidInput(f"Unknown purpose {purpose!r}.", code="unknown_purpose", attr="purpose")
    issued = int(time.time() if now is None else now)
    body = _HEADER.pack(VERSION, identifier_id, issued) + purpose.encode()
    return _encode(body + _tag(_signing_keys()[0], body))


def token_verify(token: str, *, now: float | None = None) -> UnsubscribeClaim:
    """The claim of a genuine, unexpired token; ``UnsubscribeLinkInvalid`` for anything else.
    The tag is compared in constant time, and before anything else in the token is trusted."""
    raw = _decode(token)
    if raw is None or len(raw) <= _HEADER.size + TAG_BYTES:
        raise UnsubscribeLinkInvalid()
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    # Every key is tried (no early exit), so the time taken does not say which one matched.
    genuine = False
    for key in _signing_keys():
        genuine |= hmac.compare_digest(_tag(key, body), tag)
    if not genuine:
        raise UnsubscribeLinkInvalid()
    version, identifier_id, issued = _HEADER.unpack_from(body)
    try:
        purpose = body[_HEADER.size :].decode()
    except UnicodeDecodeError:
        raise UnsubscribeLinkInvalid() from None
    current = time.time() if now is None else now
    issued_at = datetime.fromtimestamp(issued, tz=UTC)
    expires_at = issued_at + max_age()
    if (
        version != VERSION
        or purposes().get(purpose) is None
        or issued > current + CLOCK_SKEW_SECONDS
        or current >= expires_at.timestamp()
    ):
        raise UnsubscribeLinkInvalid()
    return UnsubscribeClaim(
        identifier_id=identifier_id, purpose=purpose, issued_at=issued_at, expires_at=expires_at
    )


def unsubscribe_link(*, identifier_id: int, purpose: str) -> str:
    """The absolute URL of a fresh unsubscribe link (``GET`` shows the confirmation page, a
    ``POST`` unsubscribes: the ``List-Unsubscribe`` URL of RFC 8058)."""
    return link_for(token_mint(identifier_id=identifier_id, purpose=purpose))


def link_for(token: str) -> str:
    return f"{public_base_url()}/v1/unsubscribe/{token}"


def public_base_url() -> str:
    base: str = settings.CDP_PUBLIC_BASE_URL
    if not base:
        raise ImproperlyConfigured("CDP_PUBLIC_BASE_URL must be set to mint unsubscribe links")
    if not _BASE_URL.fullmatch(base):
        raise ImproperlyConfigured(
            "CDP_PUBLIC_BASE_URL must be an origin like https://cdp.example.com (no path)"
        )
    return base


@dataclass(frozen=True, slots=True)
class UnsubscribeSubject:
    """What the confirmation page shows: the claim and the address, masked (None when the kind
    has no showable form)."""

    claim: UnsubscribeClaim
    kind: str
    masked_address: str | None


def unsubscribe_subject(token: str, *, now: float | None = None) -> UnsubscribeSubject:
    """The subject of a genuine token, for its confirmation page. The address is decrypted in
    memory only to mask it. An identifier that is gone, or whose key was destroyed (erased),
    answers ``UnsubscribeLinkInvalid`` like an expired link."""
    claim = token_verify(token, now=now)
    identifier = (
        Identifier.objects.filter(pk=claim.identifier_id).only("kind", "value_ciphertext").first()
    )
    if identifier is None:
        raise UnsubscribeLinkInvalid()
    try:
        value = identifier_value(identifier)
    except KeyDestroyed:
        raise UnsubscribeLinkInvalid() from None
    return UnsubscribeSubject(
        claim=claim, kind=identifier.kind, masked_address=address_masked(identifier.kind, value)
    )


def default_purpose(kind: str) -> str | None:
    """The purpose whose address-bound opt-outs an identifier of ``kind`` carries (email ->
    marketing_email), the first configured; None when no purpose names that channel."""
    for purpose in purposes().by_name.values():
        if purpose.channel == kind:
            return purpose.name
    return None


def address_masked(kind: str, value: str) -> str | None:
    """What a page may show of an address: ``a***@example.com``, ``***-**89`` for a phone;
    None for other kinds (an id means nothing to its owner)."""
    if kind == IdentifierKind.EMAIL:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else None
    if kind == IdentifierKind.PHONE:
        digits = [c for c in value if c.isdigit()]
        return f"***-**{''.join(digits[-2:])}" if len(digits) >= 6 else None
    return None


def _tag(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, "sha256")[:TAG_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes | None:
    """The bytes of a canonically encoded token: other spellings of the same bytes (changed
    padding bits, stray characters base64 would skip) are refused, so a token has one form."""
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _encode(raw) == token else None


def _signing_keys() -> tuple[bytes, ...]:
    """The current key first, then those of ``SECRET_KEY_FALLBACKS`` (verification only)."""
    secrets = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    return tuple(_derive(secret) for secret in secrets)


@lru_cache(maxsize=8)
def _derive(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO)
    return hkdf.derive(secret.encode())
