"""The identifier store: created once, found by any spelling of a value, encrypted at rest and
bound to its row, and never holding a blocked value."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cdp.crypto.errors import DecryptionFailed
from cdp.crypto.key_cache import data_key_cache
from cdp.crypto.models import DataKey
from identity.extraction import event_identifiers, record_identifiers
from identity.models import Identifier
from identity.selectors import identifier_find, identifier_value, identifier_values
from identity.services import identifiers as identifiers_module
from identity.services import identifiers_get_or_create

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = "ada.lovelace@analytical.org"
PHONE = "+14155550123"
USER = "u-ada-1815"


@pytest.fixture(autouse=True)
def _cold_key_cache() -> Iterator[None]:
    data_key_cache.clear()
    yield
    data_key_cache.clear()


def test_creates_each_identifier_once_and_returns_the_same_row() -> None:
    items = [("email", EMAIL), ("phone", PHONE), ("email", EMAIL)]
    first = identifiers_get_or_create(items=items, seen_at=T0)
    assert set(first) == {("email", EMAIL), ("phone", PHONE)}
    assert Identifier.objects.count() == 2 and DataKey.objects.count() == 2

    again = identifiers_get_or_create(items=[("phone", PHONE), ("email", EMAIL)], seen_at=T0)
    assert {pair: row.pk for pair, row in again.items()} == {
        pair: row.pk for pair, row in first.items()
    }
    assert Identifier.objects.count() == 2 and DataKey.objects.count() == 2  # no spare keys


def test_every_identifier_has_its_own_data_key_and_its_value_back() -> None:
    found = identifiers_get_or_create(
        items=[("email", EMAIL), ("user_id", USER), ("phone", PHONE)], seen_at=T0
    )
    rows = list(Identifier.objects.filter(pk__in=[row.pk for row in found.values()]))
    assert len({row.data_key_id for row in rows}) == 3
    assert {identifier_value(row) for row in rows} == {EMAIL, USER, PHONE}
    assert identifier_values(rows) == {row.pk: identifier_value(row) for row in rows}
    # The returned instances are the stored rows, not unsaved copies.
    created = found[("email", EMAIL)]
    assert created.first_seen_at == created.last_seen_at == T0
    assert identifier_value(created) == EMAIL


def _statements(context: CaptureQueriesContext) -> list[str]:
    """The queries run, without the savepoints of the (nested) atomic block."""
    return [q["sql"] for q in context.captured_queries if "SAVEPOINT" not in q["sql"]]


def test_existing_identifiers_are_found_in_one_query() -> None:
    items = [("email", EMAIL), ("phone", PHONE), ("user_id", USER)]
    identifiers_get_or_create(items=items, seen_at=T0)
    with CaptureQueriesContext(connection) as context:
        identifiers_get_or_create(items=items, seen_at=T0)
    assert len(_statements(context)) == 1
    with CaptureQueriesContext(connection) as context:
        identifiers_get_or_create(items=items, seen_at=T0 + timedelta(minutes=5))
    assert len(_statements(context)) == 2  # the select, one UPDATE of the seen times


def test_same_value_of_two_kinds_is_two_identifiers() -> None:
    found = identifiers_get_or_create(items=[("user_id", "42"), ("anonymous_id", "42")], seen_at=T0)
    assert found[("user_id", "42")].pk != found[("anonymous_id", "42")].pk


def test_seen_times_widen_to_include_every_sighting() -> None:
    (row,) = identifiers_get_or_create(items=[("email", EMAIL)], seen_at=T0).values()
    later, earlier = T0 + timedelta(days=2), T0 - timedelta(days=1)

    (seen,) = identifiers_get_or_create(items=[("email", EMAIL)], seen_at=later).values()
    assert (seen.first_seen_at, seen.last_seen_at) == (T0, later)
    (seen,) = identifiers_get_or_create(items=[("email", EMAIL)], seen_at=earlier).values()
    assert (seen.first_seen_at, seen.last_seen_at) == (earlier, later)
    identifiers_get_or_create(items=[("email", EMAIL)], seen_at=T0)  # inside: nothing moves
    row.refresh_from_db()
    assert (row.first_seen_at, row.last_seen_at) == (earlier, later)


def test_normalization_variants_find_the_one_identifier() -> None:
    found = identifiers_get_or_create(
        items=[
            ("email", EMAIL),
            ("phone", PHONE),
            ("device_id", "abcdef01-2345-6789-abcd-ef0123456789"),
        ],
        seen_at=T0,
    )
    assert (
        identifier_find(kind="email", raw_value="  Ada.Lovelace@ANALYTICAL.org. ")
        == found[("email", EMAIL)]
    )
    assert identifier_find(kind="phone", raw_value="(415) 555-0123") == found[("phone", PHONE)]
    assert (
        identifier_find(kind="device_id", raw_value="ABCDEF01-2345-6789-ABCD-EF0123456789")
        == found[("device_id", "abcdef01-2345-6789-abcd-ef0123456789")]
    )
    assert identifier_find(kind="email", raw_value="grace@hopper.org") is None  # no such node
    assert identifier_find(kind="user_id", raw_value=EMAIL) is None  # another kind
    assert identifier_find(kind="email", raw_value="not an address") is None
    assert identifier_find(kind="email", raw_value="test@test.com") is None  # blocked
    with pytest.raises(ValueError, match="unknown identifier kind"):
        identifier_find(kind="shoe_size", raw_value="42")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "Ada.Lovelace@Analytical.org"),  # not normalized
        ("email", "test@test.com"),  # blocked
        ("user_id", "undefined"),  # blocked for every kind
        ("user_id", " u-1 "),
        ("phone", "not a phone"),
    ],
)
def test_unnormalized_or_blocked_values_are_refused_without_naming_them(
    kind: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"kind '{kind}'") as failure:
        identifiers_get_or_create(items=[(kind, value), ("user_id", USER)], seen_at=T0)
    assert value.strip() not in str(failure.value)
    assert Identifier.objects.count() == 0 and DataKey.objects.count() == 0


def test_blocked_values_from_an_event_never_reach_the_table() -> None:
    extracted = event_identifiers(
        call_type="identify",
        user_id="undefined",
        anonymous_id="00000000-0000-0000-0000-000000000000",
        traits={"email": "noreply@shop.io", "phone": "1234567890"},
        context={"traits": {"email": " Ada.Lovelace@Analytical.ORG "}, "device": {"id": "null"}},
    )
    extracted += record_identifiers(source="crm", external_id="n/a", email="test@test.com")
    found = identifiers_get_or_create(
        items=[(item.kind, item.value) for item in extracted], seen_at=T0
    )
    assert set(found) == {("email", EMAIL)}
    (row,) = Identifier.objects.all()
    assert (row.kind, identifier_value(row)) == ("email", EMAIL)


def _raw_rows() -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM identity_identifier")
        return cursor.fetchall()


def _as_bytes(column: Any) -> bytes:
    if isinstance(column, bytes | memoryview):
        return bytes(column)
    return str(column).encode()


def test_values_are_only_ciphertext_in_the_database() -> None:
    values = [("email", EMAIL), ("phone", PHONE), ("user_id", USER), ("external", "crm:cust-77")]
    identifiers_get_or_create(items=values, seen_at=T0)
    rows = _raw_rows()
    assert len(rows) == len(values)
    for row in rows:
        for column in row:
            stored = _as_bytes(column)
            for _, value in values:
                for needle in {value, value.split("@")[0], value.lstrip("+"), "cust-77"}:
                    assert needle.encode() not in stored
                    assert needle.encode("utf-16-le") not in stored
    # ...and also not in the key table next to them.
    with connection.cursor() as cursor:
        cursor.execute("SELECT wrapped_key FROM crypto_datakey")
        for (wrapped,) in cursor.fetchall():
            assert EMAIL.encode() not in bytes(wrapped)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt() -> None:
    found = identifiers_get_or_create(items=[("email", EMAIL), ("user_id", USER)], seen_at=T0)
    email, user = found[("email", EMAIL)], found[("user_id", USER)]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE identity_identifier SET value_ciphertext = %s WHERE id = %s",
            [bytes(email.value_ciphertext), user.pk],
        )
    user.refresh_from_db()
    with pytest.raises(DecryptionFailed) as failure:
        identifier_value(user)
    assert EMAIL not in str(failure.value)
    assert identifier_value(Identifier.objects.get(pk=email.pk)) == EMAIL


def test_an_identifier_created_meanwhile_is_reselected_and_the_spare_key_destroyed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The losing side of a race: another transaction committed the row between our select and
    our insert (simulated by hiding it from the first select)."""
    (winner,) = identifiers_get_or_create(items=[("email", EMAIL)], seen_at=T0).values()
    real_select = identifiers_module._select
    calls: list[int] = []

    def select_missing_first(keys: Any) -> Any:
        calls.append(1)
        return {} if len(calls) == 1 else real_select(keys)

    monkeypatch.setattr(identifiers_module, "_select", select_missing_first)
    later = T0 + timedelta(hours=1)
    found = identifiers_get_or_create(items=[("email", EMAIL), ("phone", PHONE)], seen_at=later)

    assert found[("email", EMAIL)].pk == winner.pk
    assert found[("email", EMAIL)].last_seen_at == later
    assert Identifier.objects.count() == 2
    live = set(DataKey.objects.filter(destroyed_at__isnull=True).values_list("pk", flat=True))
    assert live == set(Identifier.objects.values_list("data_key_id", flat=True))
    assert DataKey.objects.filter(destroyed_at__isnull=False).count() == 1
    assert identifier_value(Identifier.objects.get(pk=winner.pk)) == EMAIL


def test_an_empty_batch_does_nothing() -> None:
    with CaptureQueriesContext(connection) as context:
        assert identifiers_get_or_create(items=[], seen_at=T0) == {}
    assert _statements(context) == []
