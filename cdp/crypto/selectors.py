from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, QuerySet

from cdp.crypto.models import DataKey


@dataclass(frozen=True)
class DataKeyMaterial:
    """What decrypting needs from a ``DataKey`` row (no model instance, no timestamps)."""

    id: int
    wrapped_key: bytes | None
    master_key_id: str
    destroyed_at: datetime | None


def data_keys_material(*, ids: Iterable[int]) -> dict[int, DataKeyMaterial]:
    """One query for the rows of these ids; missing ids are absent from the result."""
    rows = DataKey.objects.filter(pk__in=set(ids)).values_list(
        "pk", "wrapped_key", "master_key_id", "destroyed_at"
    )
    return {
        pk: DataKeyMaterial(
            id=pk,
            wrapped_key=None if wrapped is None else bytes(wrapped),
            master_key_id=master_key_id,
            destroyed_at=destroyed_at,
        )
        for pk, wrapped, master_key_id, destroyed_at in rows
    }


def data_keys_live() -> QuerySet[DataKey]:
    return DataKey.objects.filter(destroyed_at__isnull=True)


def data_keys_to_rewrap(*, newest_master_key_id: str) -> QuerySet[DataKey]:
    """Live data keys not yet wrapped by the newest master key, in id order."""
    return data_keys_live().exclude(master_key_id=newest_master_key_id).order_by("pk")


def data_key_counts_by_master_key() -> dict[str, int]:
    """Live data keys per master key id: a master key absent here can be retired."""
    rows = (
        data_keys_live()
        .values_list("master_key_id")
        .annotate(count=Count("pk"))
        .order_by("master_key_id")
    )
    return dict(rows)
