"""Linking two existing identifiers with one piece of evidence (an approved or auto-merged
probabilistic match, a steward's manual link) and merging their profiles under the merge rules.

The same steps as the resolver, for evidence that comes from no event or record: lock the
components (``components_lock``), decide each edge on them in order with the one union-find
(``identity.components``) under ``merge_rules()``, then write set-based: edges (refused ones
kept with their conflict), absorbed profiles pointed at their survivor, ledger entries, derived
fields refreshed, profiles marked changed. Many links go in one transaction (a full matcher
pass links thousands); ``evidence_link`` is the one-link form the review queue uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from identity.components import Components
from identity.merging import (
    LockRace,
    components_lock,
    ledger_entry,
    ledger_write,
    profile_changes_mark,
)
from identity.models import Edge, EdgeRule, Identifier, LedgerAction, MergeLedgerEntry
from identity.rules import merge_rules
from identity.services.partition import Key, derived_refresh, partition_apply
from identity.services.resolution.write import edges_insert, ledger_refusals

logger = logging.getLogger(__name__)
MAX_LOCK_ATTEMPTS = 8


@dataclass(frozen=True)
class EvidenceLink:
    a_id: int
    b_id: int
    rule: str
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class LinkResult:
    edge_id: int | None  # None: the pair already had an edge of this rule (nothing written)
    applied: bool
    conflict: str = ""
    merged: bool = False  # two profiles became one
    profile_id: int | None = None  # the profile both ends are in afterwards (when applied)


def evidence_link(
    *, a_id: int, b_id: int, rule: str, score: float | None, evidence: dict[str, Any], actor: str
) -> LinkResult:
    """Link two identifiers with one edge and merge their profiles unless a rule refuses."""
    (result,) = evidence_links_apply(
        links=[EvidenceLink(a_id=a_id, b_id=b_id, rule=rule, score=score, evidence=evidence)],
        actor=actor,
    )
    return result


def evidence_links_apply(*, links: Sequence[EvidenceLink], actor: str) -> list[LinkResult]:
    """Decide and write ``links`` in order, in one transaction (retried when it races a
    concurrent merge). A pair that already has an edge of the same rule (also an invalidated
    one: an unmerge must not be undone by the matcher finding the pair again) is skipped."""
    if rule_errors := [link for link in links if link.rule not in EdgeRule.values]:
        raise ValueError(f"unknown edge rule {rule_errors[0].rule!r}")
    if any(link.a_id == link.b_id for link in links):
        raise ValueError("an edge links two different identifiers")
    for attempt in range(MAX_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                return _apply(links, actor=actor)
        except LockRace:
            logger.info("evidence links raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"evidence links lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _apply(links: Sequence[EvidenceLink], *, actor: str) -> list[LinkResult]:
    if not links:
        return []
    ends = sorted({i for link in links for i in (link.a_id, link.b_id)})
    kinds = dict(Identifier.objects.filter(pk__in=ends).values_list("pk", "kind"))
    if len(kinds) != len(ends):
        raise ValueError("an edge names an identifier that does not exist")
    locked = components_lock(ends)
    components: Components[Key] = Components(merge_rules())
    for profile_id, counts in sorted(locked.counts.items()):
        components.add(("p", profile_id), counts=counts, rank=(0, profile_id))
    key_of: dict[int, Key] = {}
    for identifier_id, owner in sorted(locked.profile_of.items()):
        key_of[identifier_id] = ("i", identifier_id) if owner is None else ("p", owner)
        if owner is None:
            components.add(
                key_of[identifier_id], counts={kinds[identifier_id]: 1}, rank=(1, identifier_id)
            )
    existing = _existing_pairs(links)
    edges: list[Edge] = []
    results: list[LinkResult] = []
    merges: list[tuple[int, int, int]] = []  # kept, absorbed, index in edges
    for link in links:
        a, b = sorted((link.a_id, link.b_id))
        if (a, b, link.rule) in existing:
            results.append(LinkResult(edge_id=None, applied=False, conflict="edge_exists"))
            continue
        existing.add((a, b, link.rule))
        outcome = components.link(key_of[a], key_of[b])
        edges.append(
            Edge(
                a_id=a,
                b_id=b,
                rule=link.rule,
                score=link.score,
                evidence=link.evidence,
                applied=outcome.applied,
                conflict=outcome.conflict,
            )
        )
        kept, absorbed = outcome.kept, outcome.absorbed
        merged = kept is not None and absorbed is not None and kept[0] == absorbed[0] == "p"
        if merged and kept is not None and absorbed is not None:
            merges.append((kept[1], absorbed[1], len(edges) - 1))
        results.append(
            LinkResult(
                edge_id=None, applied=outcome.applied, conflict=outcome.conflict, merged=merged
            )
        )
    final = _write_partition(components, key_of)
    ids = edges_insert(edges, returning="id")
    for edge, edge_id in zip(edges, ids, strict=True):
        edge.pk = edge_id
    written = iter(edges)
    for result in results:
        if result.conflict != "edge_exists":
            edge = next(written)
            result.edge_id = edge.pk
            result.profile_id = final[edge.a_id] if edge.applied else None
    ledger_write(_ledger(edges, merges, final, actor=actor))
    return results


def _existing_pairs(links: Sequence[EvidenceLink]) -> set[tuple[int, int, str]]:
    pairs = {tuple(sorted((link.a_id, link.b_id))) for link in links}
    rows = Edge.objects.filter(
        a_id__in={a for a, _ in pairs},
        b_id__in={b for _, b in pairs},
        rule__in={link.rule for link in links},
        event_id__isnull=True,
        record__isnull=True,
    ).values_list("a_id", "b_id", "rule")
    return {(a, b, rule) for a, b, rule in rows if (a, b) in pairs}


def _write_partition(components: Components[Key], key_of: dict[int, Key]) -> dict[int, int]:
    """Apply the decided partition and derive what follows from it; returns every end's final
    profile id."""
    applied = partition_apply(components, key_of)
    changed = derived_refresh(applied)
    profile_changes_mark(changed | set(applied.absorbed))
    return applied.final


def _ledger(
    edges: Sequence[Edge],
    merges: Sequence[tuple[int, int, int]],
    final: dict[int, int],
    *,
    actor: str,
) -> list[MergeLedgerEntry]:
    entries = [
        ledger_entry(
            action=LedgerAction.MERGE,
            profile_id=kept,
            other_profile_id=absorbed,
            edge_id=edges[index].pk,
            actor=actor,
            reason=f"{edges[index].rule} evidence linked identifiers "
            f"{edges[index].a_id} and {edges[index].b_id}",
            details={"score": edges[index].score} if edges[index].score is not None else {},
        )
        for kept, absorbed, index in merges
    ]
    entries.extend(ledger_refusals(edges, final, actor=actor))
    return entries
