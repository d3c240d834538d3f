"""One resolver batch per transaction, retried when it races a concurrent merge; a row that
makes every batch fail is found and set aside, so it can never stop the queue."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from cdp.ingestion.models import Event, Record
from identity.merging import LockRace, components_lock
from identity.models import ResolutionFailure
from identity.normalization import identity_config
from identity.services.identifiers import identifiers_get_or_create
from identity.services.resolution.decide import decide
from identity.services.resolution.items import Claim, claim_events, claim_records, node_kinds
from identity.services.resolution.result import ResolveResult
from identity.services.resolution.suppressed import items_drop, items_split_suppressed
from identity.services.resolution.write import NO_IDENTIFIER, evidence_withdraw, write_batch

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
MAX_LOCK_ATTEMPTS = 8
# Failures worth retrying as they are (the database went away, a lock race); anything else is
# a row this code cannot process, narrowed down and set aside.
TRANSIENT = (OperationalError, LockRace)


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
    """Resolve up to ``batch_size`` events and as many records in one transaction.

    When the batch fails for a reason that is not transient, smaller batches are tried (the
    oldest rows first), down to single rows; a row that fails alone is set aside as a
    ``ResolutionFailure`` and the call returns with ``failed`` counting it.
    """
    try:
        return _attempt(events=batch_size, records=batch_size)
    except TRANSIENT:
        raise
    except Exception as exc:
        logger.warning(
            "resolver batch of %d failed (%s); narrowing it down", batch_size, type(exc).__name__
        )
    if batch_size > 1:
        return resolve_batch(batch_size=max(1, batch_size // 8))
    return _set_aside_failing()


def _attempt(*, events: int, records: int, claimed: list[Claim] | None = None) -> ResolveResult:
    claimed = [] if claimed is None else claimed
    for attempt in range(MAX_LOCK_ATTEMPTS):
        claimed.clear()
        try:
            with transaction.atomic():
                result = _resolve_once(events=events, records=records, claimed=claimed)
            result.lock_retries = attempt
            return result
        except LockRace:
            logger.info("resolver batch raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"resolver batch lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _set_aside_failing() -> ResolveResult:
    """The oldest event and the oldest record, each alone: the one that fails is set aside."""
    total = ResolveResult()
    for events, records in ((1, 0), (0, 1)):
        claimed: list[Claim] = []
        try:
            total.add(_attempt(events=events, records=records, claimed=claimed))
        except TRANSIENT:
            raise
        except Exception as exc:
            failures_record(claimed, error=f"{type(exc).__name__}: {exc}"[:2000])
            total.failed += len(claimed)
    return total


@transaction.atomic
def failures_record(claimed: Sequence[Claim], *, error: str) -> None:
    """Set these rows aside: the event counts as resolved to no identifier and the record's
    version as resolved, so the queue moves past them; the failure keeps them findable."""
    for origin, origin_id in claimed:
        logger.error("resolver set %s %d aside after it failed alone", origin, origin_id)
        ResolutionFailure.objects.update_or_create(
            origin=origin,
            origin_id=origin_id,
            defaults={"error": error, "failed_at": timezone.now()},
        )
        if origin == ResolutionFailure.Origin.EVENT:
            _event_set_aside(origin_id)
        else:
            _record_set_aside(origin_id)


def _event_set_aside(event_id: int) -> None:
    Event.objects.filter(pk=event_id, identifier_id__isnull=True).update(
        identifier_id=NO_IDENTIFIER
    )


def _record_set_aside(record_id: int) -> None:
    Record.objects.filter(pk=record_id).update(resolved_seq=F("seq"))


def _resolve_once(*, events: int, records: int, claimed: list[Claim]) -> ResolveResult:
    config = identity_config()
    items = claim_events(events, config, claimed=claimed) + claim_records(
        records, config, claimed=claimed
    )
    result = ResolveResult(
        events=sum(item.origin == "event" for item in items),
        records=sum(item.origin == "record" for item in items),
    )
    if not items:
        return result
    pairs = {(i.kind, i.value) for item in items for i in item.identifiers}
    nodes = identifiers_get_or_create(items=sorted(pairs), seen_at=timezone.now(), touch_seen=False)
    if len(nodes) < len(pairs):  # some are suppressed: an erased person's
        items, dropped = items_split_suppressed(items, nodes)
        items_drop(dropped)
        result.suppressed = len(dropped)
        if not items:
            return result
    node_ids = {pair: node.pk for pair, node in nodes.items()}
    locked = components_lock(node_ids.values())
    decision = decide(items, node_ids=node_ids, kinds=node_kinds(nodes), locked=locked)
    write_batch(items, decision, node_ids=node_ids, nodes=nodes, result=result)
    evidence_withdraw(decision, result)
    return result


@transaction.atomic
def failures_retry(*, ids: Sequence[int] | None = None) -> int:
    """Put set-aside rows back in the resolver's queue (all, or the failures ``ids``) and forget
    their failures; returns how many. A row that fails again is set aside again."""
    failures = ResolutionFailure.objects.select_for_update().order_by("pk")
    if ids is not None:
        failures = failures.filter(pk__in=ids)
    rows = list(failures)
    events = [f.origin_id for f in rows if f.origin == ResolutionFailure.Origin.EVENT]
    records = [f.origin_id for f in rows if f.origin == ResolutionFailure.Origin.RECORD]
    Event.objects.filter(pk__in=events, identifier_id=NO_IDENTIFIER).update(identifier_id=None)
    Record.objects.filter(pk__in=records).update(resolved_seq=None)
    ResolutionFailure.objects.filter(pk__in=[f.pk for f in rows]).delete()
    return len(rows)
