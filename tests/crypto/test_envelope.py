"""encrypt / decrypt: round trips, and every way a ciphertext can fail to open."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pytest_django import DjangoAssertNumQueries

from cdp.crypto.envelope import (
    OVERHEAD_BYTES,
    data_key_id_of,
    decrypt,
    decrypt_bytes,
    decrypt_many,
    encrypt,
    encrypt_bytes,
)
from cdp.crypto.errors import DecryptionFailed
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.crypto.services import data_key_create, data_keys_create

pytestmark = pytest.mark.django_db

AAD = b"identity.identifier:123:value"
EMAIL = "zoë.o'brien@example.com"


@pytest.fixture
def key() -> DataKey:
    return data_key_create()


def test_round_trip(key: DataKey) -> None:
    ciphertext = encrypt(EMAIL, key=key, aad=AAD)
    assert decrypt(ciphertext, aad=AAD) == EMAIL


def test_binary_round_trip_with_a_cold_cache(key: DataKey) -> None:
    """Binary content (an access export's zip) in the same format, no text encoding."""
    content = bytes(range(256)) * 4
    ciphertext = encrypt_bytes(content, key=key, aad=AAD)
    assert len(ciphertext) == OVERHEAD_BYTES + len(content)
    data_key_cache.clear()
    assert decrypt_bytes(memoryview(ciphertext), aad=AAD) == content
    with pytest.raises(DecryptionFailed):
        decrypt_bytes(ciphertext, aad=b"identity.identifier:124:value")


def test_ciphertext_layout(key: DataKey) -> None:
    ciphertext = encrypt(EMAIL, key=key, aad=AAD)
    assert ciphertext[0] == 1  # version
    assert int.from_bytes(ciphertext[1:9], "big") == key.pk == data_key_id_of(ciphertext)
    assert len(ciphertext) == OVERHEAD_BYTES + len(EMAIL.encode()) == 37 + len(EMAIL.encode())
    assert EMAIL.encode() not in ciphertext


def test_same_value_encrypts_differently_each_time(key: DataKey) -> None:
    """A random nonce per value: equal plaintexts must not be recognizable in the table (the
    blind index is the one deliberate equality)."""
    assert encrypt(EMAIL, key=key, aad=AAD) != encrypt(EMAIL, key=key, aad=AAD)


def test_decrypts_from_the_table_with_a_cold_cache(key: DataKey) -> None:
    """What a reader in another process does: nothing cached, the key row read and unwrapped."""
    ciphertext = encrypt(EMAIL, key=key, aad=AAD)
    data_key_cache.clear()
    assert decrypt(memoryview(ciphertext), aad=AAD) == EMAIL  # as BinaryField reads return it


def test_ciphertext_moved_to_another_row_fails(key: DataKey) -> None:
    ciphertext = encrypt(EMAIL, key=key, aad=b"identity.identifier:123:value")
    with pytest.raises(DecryptionFailed) as failure:
        decrypt(ciphertext, aad=b"identity.identifier:124:value")
    assert EMAIL not in str(failure.value)
    # The row identities (the associated data) are not echoed; the data key id may be.
    assert "identifier:12" not in str(failure.value)
    assert not re.search(r"\b12[34]\b", str(failure.value))


@pytest.mark.parametrize(
    "position",
    [0, 1, 8, 9, 20, OVERHEAD_BYTES - 16, -17, -1],
    ids=["version", "key-id-high", "key-id-low", "nonce", "nonce-end", "body", "body-end", "tag"],
)
def test_any_altered_byte_fails(key: DataKey, position: int) -> None:
    # Another live key exists, so a key id bumped by one still names a real key.
    data_keys_create(count=2)
    ciphertext = bytearray(encrypt(EMAIL, key=key, aad=AAD))
    ciphertext[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        decrypt(bytes(ciphertext), aad=AAD)


def test_truncated_ciphertext_fails(key: DataKey) -> None:
    ciphertext = encrypt("", key=key, aad=AAD)
    assert decrypt(ciphertext, aad=AAD) == ""
    with pytest.raises(DecryptionFailed, match="too short"):
        decrypt(ciphertext[:-1], aad=AAD)


def test_unknown_data_key_fails_clearly(key: DataKey) -> None:
    ciphertext = bytearray(encrypt(EMAIL, key=key, aad=AAD))
    ciphertext[1:9] = (key.pk + 10_000).to_bytes(8, "big")
    with pytest.raises(DecryptionFailed, match="does not exist"):
        decrypt(bytes(ciphertext), aad=AAD)


def test_associated_data_is_required(key: DataKey) -> None:
    with pytest.raises(ValueError, match="aad"):
        encrypt(EMAIL, key=key, aad=b"")


def test_decrypt_many_reads_all_uncached_keys_in_one_query(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    keys = data_keys_create(count=3)
    items = [
        (encrypt(f"person-{i}@example.com", key=keys[i % 3], aad=b"row:%d" % i), b"row:%d" % i)
        for i in range(12)
    ]
    data_key_cache.clear()
    with django_assert_num_queries(1):
        plaintexts = decrypt_many(items)
    assert plaintexts == [f"person-{i}@example.com" for i in range(12)]
    with django_assert_num_queries(0):
        decrypt_many(items)


def test_round_trip_of_any_text(key: DataKey) -> None:
    @hypothesis_settings(max_examples=300, deadline=None)
    @given(text=st.text(), aad=st.binary(min_size=1, max_size=64))
    def round_trip(text: str, aad: bytes) -> None:
        assert decrypt(encrypt(text, key=key, aad=aad), aad=aad) == text

    round_trip()
