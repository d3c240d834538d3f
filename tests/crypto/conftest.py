from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from pytest_django import Settings

from cdp.crypto.key_cache import data_key_cache


def master_key(key_id: str, fill: int) -> str:
    """A well-formed ``key_id:base64(32 bytes)`` entry; ``fill`` makes keys differ."""
    return f"{key_id}:" + base64.b64encode(bytes([fill]) * 32).decode()


K1 = master_key("k1", 1)
K2 = master_key("k2", 2)
BLIND_KEY = base64.b64encode(b"\x07" * 32).decode()


@pytest.fixture(autouse=True)
def _known_keys(settings: Settings) -> Iterator[None]:
    """Known keys (not the generated local ones), and a cold data key cache: a test that means
    to read a key from the table must not be satisfied by an earlier test's cache."""
    settings.CDP_MASTER_KEYS = [K1]
    settings.CDP_BLIND_INDEX_KEY = BLIND_KEY
    data_key_cache.clear()
    yield
    data_key_cache.clear()
