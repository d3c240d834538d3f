"""Secrets handed to clients (write keys, API tokens): generated here, stored only as digests.

A secret is looked up by its SHA-256 digest (it has 256 bits of entropy, so a fast hash is the
right tool and no salt is needed) and the stored digest is then compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

DISPLAY_PREFIX_LENGTH = 6


@dataclass(frozen=True)
class NewSecret:
    plaintext: str
    display_prefix: str
    digest: str


def new_secret(kind: str) -> NewSecret:
    plaintext = f"{kind}_{secrets.token_urlsafe(32)}"
    return NewSecret(
        plaintext=plaintext,
        display_prefix=plaintext[: len(kind) + 1 + DISPLAY_PREFIX_LENGTH],
        digest=digest(plaintext),
    )


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def same(computed_digest: str, stored_digest: str) -> bool:
    """Constant-time comparison of a presented secret's digest with the stored one."""
    return hmac.compare_digest(computed_digest, stored_digest)
