"""The in-process cache of unwrapped data keys: bounded, least recently used out, expiring."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.key_cache import DataKeyCache


def aead() -> AESGCM:
    return AESGCM(os.urandom(32))


def test_evicts_the_least_recently_used_key() -> None:
    cache = DataKeyCache(max_keys=2)
    one, two, three = aead(), aead(), aead()
    cache.put(1, one)
    cache.put(2, two)
    assert cache.get(1) is one  # 2 is now the least recently used
    cache.put(3, three)
    assert len(cache) == 2
    assert cache.get(2) is None
    assert cache.get(1) is one and cache.get(3) is three


def test_entries_expire_after_the_ttl() -> None:
    now = [100.0]
    cache = DataKeyCache(ttl_seconds=60, clock=lambda: now[0])
    key = aead()
    cache.put(1, key)
    now[0] = 159.9
    assert cache.get(1) is key  # a hit does not extend the deadline
    now[0] = 160.0
    assert cache.get(1) is None
    assert len(cache) == 0


def test_forget_drops_only_the_given_keys() -> None:
    cache = DataKeyCache()
    cache.put(1, aead())
    cache.put(2, aead())
    cache.forget([1, 99])
    assert cache.get(1) is None and cache.get(2) is not None
