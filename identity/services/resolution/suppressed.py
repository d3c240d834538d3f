"""Rows that carry a suppressed identifier (an erased person's): dropped, not resolved.

``identifiers_get_or_create`` leaves suppressed identifiers out of its result. An event or CRM
record carrying one belongs to someone who asked to be forgotten: it is deleted in the batch's
transaction (its PII was sealed under a key that is destroyed or about to be) and counted as
``suppressed``. What is left of the batch resolves as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cdp.ops.bulk import bound_cursor
from identity.models import Identifier
from identity.services.resolution.items import Item, Pair


def items_split_suppressed(
    items: Sequence[Item], nodes: Mapping[Pair, Identifier]
) -> tuple[list[Item], list[Item]]:
    """(items whose identifiers all exist, items carrying an identifier left out as
    suppressed)."""
    kept: list[Item] = []
    dropped: list[Item] = []
    for item in items:
        carries = all((i.kind, i.value) in nodes for i in item.identifiers)
        (kept if carries else dropped).append(item)
    return kept, dropped


def items_drop(items: Sequence[Item]) -> None:
    """Delete these claimed events and records (and the observations of the records' earlier
    versions, which name them)."""
    events = [(item.origin_id, item.received_at) for item in items if item.origin == "event"]
    records = [item.origin_id for item in items if item.origin == "record"]
    with bound_cursor() as cursor:
        if events:
            cursor.execute(
                "DELETE FROM ingestion_event e USING unnest(%s::bigint[], %s::timestamptz[]) "
                "AS t(id, received_at) WHERE e.id = t.id AND e.received_at = t.received_at",
                [[e[0] for e in events], [e[1] for e in events]],
            )
        if records:
            # As the models' on_delete says: a record's observations go with it, its edges
            # stay (another person's evidence) without the record.
            cursor.execute(
                "DELETE FROM identity_traitobservation WHERE record_id = ANY(%s::bigint[])",
                [records],
            )
            cursor.execute(
                "UPDATE identity_edge SET record_id = NULL WHERE record_id = ANY(%s::bigint[])",
                [records],
            )
            cursor.execute("DELETE FROM ingestion_record WHERE id = ANY(%s::bigint[])", [records])
