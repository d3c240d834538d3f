"""Data keys: creation, crypto-shredding, master key rotation and the rotate_keys command."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks, Settings

from cdp.crypto.config import master_key_ring
from cdp.crypto.envelope import decrypt, decrypt_many, decrypt_many_unless_erased, encrypt
from cdp.crypto.errors import DecryptionFailed, KeyDestroyed, MasterKeyError
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from cdp.crypto.services import (
    data_key_create,
    data_keys_create,
    data_keys_destroy,
    master_keys_rewrap,
)
from cdp.crypto.wrapping import data_key_unwrap
from tests.crypto.conftest import K1, K2, master_key

pytestmark = pytest.mark.django_db

AAD = b"identity.identifier:7:value"


def raw_row(data_key_id: int) -> tuple[bytes | None, str, object]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT wrapped_key, master_key_id, destroyed_at FROM crypto_datakey WHERE id = %s",
            [data_key_id],
        )
        wrapped, master_key_id, destroyed_at = cursor.fetchone()
    return (None if wrapped is None else bytes(wrapped)), master_key_id, destroyed_at


def test_bulk_create_wraps_distinct_keys_under_the_newest_master_key() -> None:
    keys = data_keys_create(count=5)
    assert len({key.pk for key in keys}) == 5
    assert DataKey.objects.filter(pk__in=[key.pk for key in keys]).count() == 5
    raws = set()
    for key in keys:
        wrapped, master_key_id, destroyed_at = raw_row(key.pk)
        assert master_key_id == "k1" and destroyed_at is None
        assert wrapped is not None and len(wrapped) == 1 + 12 + 32 + 16
        raws.add(data_key_unwrap(wrapped, data_key_id=key.pk, master_key_id="k1"))
    assert len(raws) == 5 and all(len(raw) == 32 for raw in raws)
    assert data_keys_create(count=0) == []


def test_a_wrapped_key_copied_to_another_row_does_not_unwrap() -> None:
    """Otherwise a copy could outlive the destruction of the original."""
    first, second = data_keys_create(count=2)
    wrapped_first, _, _ = raw_row(first.pk)
    assert wrapped_first is not None
    with pytest.raises(MasterKeyError, match=f"Data key {second.pk} does not unwrap"):
        data_key_unwrap(wrapped_first, data_key_id=second.pk, master_key_id="k1")


def test_destroyed_key_no_longer_decrypts_and_its_wrapped_bytes_are_gone() -> None:
    key, other = data_keys_create(count=2)
    ciphertext = encrypt("ada@example.com", key=key, aad=AAD)
    kept = encrypt("grace@example.com", key=other, aad=AAD)
    assert decrypt(ciphertext, aad=AAD) == "ada@example.com"  # the key is now cached

    assert data_keys_destroy(ids=[key.pk]) == 1

    with pytest.raises(KeyDestroyed, match=f"Data key {key.pk} was destroyed") as failure:
        decrypt(ciphertext, aad=AAD)
    assert "ada" not in str(failure.value)
    wrapped, _, destroyed_at = raw_row(key.pk)
    assert wrapped is None and destroyed_at is not None
    assert decrypt(kept, aad=AAD) == "grace@example.com"
    key.refresh_from_db()
    with pytest.raises(KeyDestroyed):
        encrypt("new value", key=key, aad=AAD)
    assert data_keys_destroy(ids=[key.pk, 10**15]) == 0  # idempotent; unknown ids ignored


def test_destroy_forgets_the_key_again_when_it_commits(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    """A reader in another thread may cache the row between the destroy and its commit."""
    key = data_key_create()
    with django_capture_on_commit_callbacks(execute=True):
        data_keys_destroy(ids=[key.pk])
        data_key_cache.put(key.pk, AESGCM(AESGCM.generate_key(bit_length=256)))
    assert data_key_cache.get(key.pk) is None


def test_a_key_destroyed_elsewhere_stops_decrypting_here_once_the_cache_entry_expires() -> None:
    key = data_key_create()
    ciphertext = encrypt("ada@example.com", key=key, aad=AAD)
    DataKey.objects.filter(pk=key.pk).update(wrapped_key=None, destroyed_at="2026-01-01T00:00Z")

    # Another process's destroy is only seen when this process reads the row again: the cached
    # key still works until its entry expires (key_cache.TTL_SECONDS)...
    assert decrypt(ciphertext, aad=AAD) == "ada@example.com"
    now = data_key_cache.clock()
    clock = data_key_cache.clock
    try:
        data_key_cache.clock = lambda: now + data_key_cache.ttl_seconds
        with pytest.raises(KeyDestroyed):  # ...and no longer
            decrypt(ciphertext, aad=AAD)
    finally:
        data_key_cache.clock = clock


def test_the_table_refuses_a_destroyed_row_that_keeps_its_key() -> None:
    key = data_key_create()
    with pytest.raises(IntegrityError), transaction.atomic():
        DataKey.objects.filter(pk=key.pk).update(destroyed_at="2026-01-01T00:00Z")


def test_rotation_keeps_old_data_readable_before_during_and_after(
    settings: Settings,
) -> None:
    old_keys = data_keys_create(count=3)
    ciphertexts = [encrypt(f"v{i}", key=k, aad=AAD) for i, k in enumerate(old_keys)]
    destroyed = data_key_create()
    data_keys_destroy(ids=[destroyed.pk])

    settings.CDP_MASTER_KEYS = [K2, K1]  # step 1: prepend the new key
    data_key_cache.clear()
    assert [decrypt(c, aad=AAD) for c in ciphertexts] == ["v0", "v1", "v2"]
    assert data_key_create().master_key_id == "k2"
    seen: list[int] = []
    assert master_keys_rewrap(batch_size=2, progress=seen.append) == 3  # step 2
    assert seen == [2, 1]
    assert set(DataKey.objects.values_list("master_key_id", flat=True)) == {"k1", "k2"}
    assert DataKey.objects.filter(destroyed_at__isnull=True, master_key_id="k1").count() == 0
    assert master_keys_rewrap() == 0  # nothing left: safe to run again

    settings.CDP_MASTER_KEYS = [K2]  # step 3: drop the old key
    data_key_cache.clear()
    assert [decrypt(c, aad=AAD) for c in ciphertexts] == ["v0", "v1", "v2"]


def test_rotation_needs_the_old_master_key(settings: Settings) -> None:
    data_key_create()
    settings.CDP_MASTER_KEYS = [K2]
    with pytest.raises(MasterKeyError, match="master key 'k1', which is not configured"):
        master_keys_rewrap()


def test_a_data_key_under_a_master_key_no_longer_configured_fails_clearly(
    settings: Settings,
) -> None:
    key = data_key_create()
    ciphertext = encrypt("ada@example.com", key=key, aad=AAD)
    settings.CDP_MASTER_KEYS = [K2]
    data_key_cache.clear()
    with pytest.raises(MasterKeyError, match="'k1', which is not configured"):
        decrypt(ciphertext, aad=AAD)


def test_wrong_master_key_material_fails_clearly(settings: Settings) -> None:
    key = data_key_create()
    ciphertext = encrypt("ada@example.com", key=key, aad=AAD)
    impostor = master_key("k1", 9)
    settings.CDP_MASTER_KEYS = [impostor]
    data_key_cache.clear()
    with pytest.raises(MasterKeyError) as failure:
        decrypt(ciphertext, aad=AAD)
    message = str(failure.value)
    assert f"Data key {key.pk} does not unwrap with master key 'k1'" in message
    assert "different key material" in message
    assert impostor.split(":")[1] not in message and K1.split(":")[1] not in message


def run_rotate_keys(*args: str) -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("rotate_keys", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_rotate_keys_command(settings: Settings) -> None:
    data_keys_create(count=4)
    settings.CDP_MASTER_KEYS = [K2, K1]
    out, err = run_rotate_keys("--batch-size", "3")
    assert out.splitlines() == [
        "Re-wrapped 4 data keys under master key 'k2'.",
        "  k2: 4 live data keys",
        "No live data key uses 'k1': it can be removed from CDP_MASTER_KEY.",
    ]
    assert "4/4" in err  # the progress bar
    out, _ = run_rotate_keys("--verbosity", "0")
    assert out.startswith("Re-wrapped 0 data keys under master key 'k2'.")
    assert master_key_ring().key_ids == ("k2", "k1")


def test_rotate_keys_reports_a_missing_master_key(settings: Settings) -> None:
    data_key_create()
    settings.CDP_MASTER_KEYS = [K2]
    with pytest.raises(CommandError, match="'k1', which is not configured"):
        run_rotate_keys()


def test_admin_lists_keys_read_only_without_key_bytes(admin_client: Client) -> None:
    live, destroyed = data_keys_create(count=2)
    data_keys_destroy(ids=[destroyed.pk])
    listing = admin_client.get("/admin/crypto/datakey/")
    assert listing.status_code == 200
    assert "wrapped_key" not in listing.content.decode()
    assert "wrapped key" not in listing.content.decode().lower()
    detail = admin_client.get(f"/admin/crypto/datakey/{live.pk}/change/")
    assert detail.status_code == 200
    fieldsets = detail.context["adminform"].fieldsets
    shown = [name for _, options in fieldsets for name in options["fields"]]
    assert shown == ["id", "master_key_id", "created_at", "destroyed_at"]
    assert "wrapped key" not in detail.content.decode().lower()
    assert admin_client.get("/admin/crypto/datakey/add/").status_code == 403
    assert admin_client.post(f"/admin/crypto/datakey/{live.pk}/delete/").status_code == 403


def test_decrypt_many_unless_erased_gives_none_for_destroyed_keys_only(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """One erased person must not make a page of other people's values unreadable."""
    erased, kept, other = data_keys_create(count=3)
    items = [
        (encrypt("erased@example.com", key=erased, aad=b"t:1:v"), b"t:1:v"),
        (encrypt("kept@example.com", key=kept, aad=b"t:2:v"), b"t:2:v"),
        (encrypt("other@example.com", key=other, aad=b"t:3:v"), b"t:3:v"),
    ]
    data_keys_destroy(ids=[erased.pk])
    data_key_cache.clear()

    with django_assert_num_queries(1):
        opened = decrypt_many_unless_erased(items)

    assert opened == [None, "kept@example.com", "other@example.com"]
    with pytest.raises(KeyDestroyed):
        decrypt_many(items)  # the strict variant still refuses the whole list
    with pytest.raises(DecryptionFailed):  # erasure is tolerated, tampering is not
        decrypt_many_unless_erased([(items[1][0], b"t:3:v")])
