"""One resolver batch per transaction, retried when it races a concurrent merge."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from identity.merging import (
    LockRace,
    components_lock,
)
from identity.normalization import identity_config
from identity.services.identifiers import identifiers_get_or_create
from identity.services.resolution.decide import decide
from identity.services.resolution.items import claim_events, claim_records, node_kinds
from identity.services.resolution.result import ResolveResult
from identity.services.resolution.write import write_batch

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
MAX_LOCK_ATTEMPTS = 8


def resolve_pending(
    *, batch_size: int = DEFAULT_BATCH_SIZE, max_batches: int | None = None
) -> ResolveResult:
    """Resolve batches until nothing is pending (or ``max_batches`` ran); returns the totals."""
    total = ResolveResult()
    done = 0
    while max_batches is None or done < max_batches:
        result = resolve_batch(batch_size=batch_size)
        total.add(result)
        done += 1
        if result.empty:
            break
    return total


def resolve_batch(*, batch_size: int = DEFAULT_BATCH_SIZE) -> ResolveResult:
    """Resolve up to ``batch_size`` events and as many records in one transaction."""
    for attempt in range(MAX_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                result = _resolve_once(batch_size)
            result.lock_retries = attempt
            return result
        except LockRace:
            logger.info("resolver batch raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"resolver batch lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _resolve_once(batch_size: int) -> ResolveResult:
    config = identity_config()
    items = claim_events(batch_size, config) + claim_records(batch_size, config)
    result = ResolveResult(
        events=sum(item.origin == "event" for item in items),
        records=sum(item.origin == "record" for item in items),
    )
    if not items:
        return result
    pairs = {(i.kind, i.value) for item in items for i in item.identifiers}
    nodes = identifiers_get_or_create(items=sorted(pairs), seen_at=timezone.now(), touch_seen=False)
    node_ids = {pair: node.pk for pair, node in nodes.items()}
    locked = components_lock(node_ids.values())
    decision = decide(items, node_ids=node_ids, kinds=node_kinds(nodes), locked=locked)
    write_batch(items, decision, node_ids=node_ids, nodes=nodes, result=result)
    return result
