"""The deterministic resolver: stored events and CRM records -> identifiers, evidence, profiles.

A batch is one transaction (``resolve_batch``):

1. **claim** the oldest unresolved events (``identifier_id IS NULL``) and pending records
   (``resolved_seq`` behind ``seq``) with ``FOR UPDATE SKIP LOCKED``: concurrent workers take
   disjoint batches, and a crash rolls the claim back, so nothing is lost or done twice;
2. **extract** identifiers (``identity.extraction``) and find or create their nodes;
3. **lock** their components (``identity.merging``: profiles in key order);
4. **decide**: link each evidence edge in order under the merge rules (``identity.components``);
   an edge a rule refuses is stored unapplied with its conflict;
5. **write** set-based: new profiles, identifiers moved, absorbed profiles pointed at their
   survivor, edges, ledger entries, each event anchored on its identifier, trait observations,
   counters, and the touched profiles' derived fields.

Values are PII: nothing here logs one or puts one in an exception (ids and kinds only).
"""

from identity.services.resolution.batch import (
    DEFAULT_BATCH_SIZE,
    TRANSIENT,
    failures_retry,
    resolve_batch,
    resolve_pending,
)
from identity.services.resolution.evidence import evidence_restore
from identity.services.resolution.result import ResolveResult
from identity.services.resolution.write import NO_IDENTIFIER, RESOLVER_ACTOR

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "NO_IDENTIFIER",
    "RESOLVER_ACTOR",
    "TRANSIENT",
    "ResolveResult",
    "evidence_restore",
    "failures_retry",
    "resolve_batch",
    "resolve_pending",
]
