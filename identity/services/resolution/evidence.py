"""Evidence from raw data for ``rebuild_identity``: the edges of resolved events and records
that have none stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from cdp.ingestion.models import Record, Source
from cdp.ingestion.pii import events_pii, records_pii
from cdp.ops.bulk import bound_cursor
from identity.models import Edge
from identity.normalization import identity_config
from identity.services.identifiers import identifiers_get_or_create
from identity.services.resolution.items import (
    Item,
    event_item,
    item_edges,
    node_kinds,
    record_item,
    resolve_alias_targets,
)
from identity.services.resolution.suppressed import items_split_suppressed
from identity.services.resolution.write import edges_insert

_EVIDENCE_EVENTS = """
SELECT e.id, e.received_at, e.source_id, e.type, e.user_id, e.anonymous_id, e.previous_id,
       e.traits, e.context, e.timestamp, e.message_id, e.pii
FROM ingestion_event e
WHERE e.type IN ('identify', 'alias') AND e.identifier_id IS NOT NULL AND e.id > %s
  AND NOT EXISTS (SELECT 1 FROM identity_edge g WHERE g.event_id = e.id)
ORDER BY e.id
LIMIT %s
"""
EVIDENCE_CHUNK = 5000


def evidence_restore(
    *, progress: Callable[[str, int, int], object] | None = None, chunk: int = EVIDENCE_CHUNK
) -> int:
    """Store the evidence of resolved events and records that have none stored (the graph's
    edges lost, or data resolved before a rule existed); returns the edges added. Events and
    records with stored evidence are skipped, so decisions already made (an alias target, an
    invalidated edge) are never made again differently. Runs in the caller's transaction."""
    config = identity_config()
    added = 0
    after = 0
    scanned = 0
    while True:
        with bound_cursor() as cursor:
            cursor.execute(_EVIDENCE_EVENTS, [after, chunk])
            rows = cursor.fetchall()
        if not rows:
            break
        after = rows[-1][0]
        opened = events_pii([(row[11], row[2], row[10]) for row in rows])
        items = [event_item(row, pii, config) for row, pii in zip(rows, opened, strict=True)]
        resolve_alias_targets(items)
        added += _evidence_store(items)
        scanned += len(rows)
        if progress is not None:
            progress("evidence", scanned, scanned)
    pending = Q(resolved_seq__isnull=True) | ~Q(resolved_seq=F("seq"))
    records = Record.objects.exclude(pending).filter(
        ~Exists(Edge.objects.filter(record_id=OuterRef("pk")))
    )
    last = 0
    while batch := list(records.filter(pk__gt=last).order_by("pk")[:chunk]):
        last = batch[-1].pk
        names = dict(Source.objects.values_list("pk", "name"))
        opened = records_pii(batch)
        items = [
            record_item(record, pii, names[record.source_id], config)
            for record, pii in zip(batch, opened, strict=True)
        ]
        added += _evidence_store(items)
    return added


def _evidence_store(items: Sequence[Item]) -> int:
    pairs = sorted({(i.kind, i.value) for item in items for i in item.identifiers})
    nodes = identifiers_get_or_create(items=pairs, seen_at=timezone.now(), touch_seen=False)
    # Rows carrying an erased person's identifier are evidence no more.
    items, _ = items_split_suppressed(items, nodes)
    node_ids = {pair: node.pk for pair, node in nodes.items()}
    kinds = node_kinds(nodes)
    edges = [edge for item in items for edge in item_edges(item, node_ids=node_ids, kinds=kinds)]
    # The graph step that follows decides applied/conflict for every edge.
    return len(edges_insert(edges, returning="id", on_conflict="ON CONFLICT DO NOTHING"))
