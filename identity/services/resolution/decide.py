"""Deciding a batch's evidence under the merge rules, edge by edge, on the locked components."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from identity.components import Components, LinkOutcome
from identity.merging import LockedComponents
from identity.models import Edge, EdgeRule
from identity.rules import merge_rules
from identity.services.resolution.items import Item, Pair, item_edges

ComponentKey = tuple[str, int]  # ("p", profile id) or ("i", identifier id)


@dataclass
class Decision:
    edges: list[Edge]
    edge_items: list[int]  # index of the item each edge came from
    outcomes: list[LinkOutcome[ComponentKey]]
    merges: list[tuple[int, int, int]]  # (kept profile, absorbed profile, edge index)
    components: Components[ComponentKey]
    key_of: dict[int, ComponentKey]
    # Valid edges of re-resolved records that their new version no longer states: (edge id,
    # applied, one end). The record's earlier evidence is withdrawn after the batch is written.
    withdrawn: list[tuple[int, bool, int]] = field(default_factory=list)


def decide(
    items: Sequence[Item],
    *,
    node_ids: Mapping[Pair, int],
    kinds: Mapping[int, str],
    locked: LockedComponents,
) -> Decision:
    components: Components[ComponentKey] = Components(merge_rules())
    key_of: dict[int, ComponentKey] = {}
    for profile_id, counts in sorted(locked.counts.items()):
        components.add(("p", profile_id), counts=counts, rank=(0, profile_id))
    for identifier_id, owner in sorted(locked.profile_of.items()):
        if owner is None:
            key_of[identifier_id] = ("i", identifier_id)
            components.add(
                key_of[identifier_id], counts={kinds[identifier_id]: 1}, rank=(1, identifier_id)
            )
        else:
            key_of[identifier_id] = ("p", owner)
    decision = Decision([], [], [], [], components, key_of)
    stored = _stored_record_edges([item.origin_id for item in items if item.origin == "record"])
    stated: set[tuple[int, int, int]] = set()
    for index, item in enumerate(items):
        if item.rule is not None:
            stated |= _link_item(
                decision, index, item, node_ids=node_ids, kinds=kinds, stored=set(stored)
            )
    decision.withdrawn = [
        (edge_id, applied, key[0])
        for key, (edge_id, applied, valid) in sorted(stored.items())
        if valid and key not in stated
    ]
    return decision


def _stored_record_edges(
    record_ids: Sequence[int],
) -> dict[tuple[int, int, int], tuple[int, bool, bool]]:
    """(a, b, record) -> (edge id, applied, still valid) of the records' stored evidence."""
    if not record_ids:
        return {}
    rows = Edge.objects.filter(record_id__in=record_ids, rule=EdgeRule.CRM_RECORD).values_list(
        "a_id", "b_id", "record_id", "pk", "applied", "invalidated_at"
    )
    return {
        (a, b, record): (pk, applied, invalidated is None)
        for a, b, record, pk, applied, invalidated in rows
        if record is not None
    }


def _link_item(
    decision: Decision,
    index: int,
    item: Item,
    *,
    node_ids: Mapping[Pair, int],
    kinds: Mapping[int, str],
    stored: set[tuple[int, int, int]],
) -> set[tuple[int, int, int]]:
    """Decide the edges of one evidence item under the merge rules, in order; returns the
    (a, b, record) pairs a record states. A record re-resolved after a change states its pairs
    again: those already stored are left as they were decided (an invalidated one stays
    invalidated)."""
    stated: set[tuple[int, int, int]] = set()
    for edge in item_edges(item, node_ids=node_ids, kinds=kinds):
        if edge.record_id is not None:
            stated.add((edge.a_id, edge.b_id, edge.record_id))
            if (edge.a_id, edge.b_id, edge.record_id) in stored:
                continue
        outcome = decision.components.link(decision.key_of[edge.a_id], decision.key_of[edge.b_id])
        edge.applied, edge.conflict = outcome.applied, outcome.conflict
        decision.edges.append(edge)
        decision.edge_items.append(index)
        decision.outcomes.append(outcome)
        kept, absorbed = outcome.kept, outcome.absorbed
        if kept is not None and absorbed is not None and kept[0] == absorbed[0] == "p":
            # Two existing profiles joined (an identifier joining a profile is no merge).
            decision.merges.append((kept[1], absorbed[1], len(decision.edges) - 1))
    return stated
