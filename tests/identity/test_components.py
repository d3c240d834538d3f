"""The union-find every partition is decided by, against networkx and the merge rules."""

from __future__ import annotations

from collections import Counter

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from identity.components import replay
from identity.rules import MergeRules

KINDS = ("user_id", "email", "anonymous_id")
nodes = st.lists(st.sampled_from(KINDS), min_size=1, max_size=30)


def _edges(size: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    node = st.integers(min_value=0, max_value=size - 1)
    return st.lists(st.tuples(node, node).filter(lambda e: e[0] != e[1]), max_size=60)


@given(data=st.data(), kinds=nodes)
def test_without_rules_the_partition_is_networkx_connected_components(
    data: st.DataObject, kinds: list[str]
) -> None:
    edges = data.draw(_edges(len(kinds)))
    unlimited = MergeRules(limits={}, max_identifiers=10_000)
    components, outcomes = replay(
        unlimited, nodes=[(i, kind, (i,)) for i, kind in enumerate(kinds)], edges=edges
    )
    graph: nx.Graph = nx.Graph()
    graph.add_nodes_from(range(len(kinds)))
    graph.add_edges_from(edges)
    expected = {frozenset(c) for c in nx.connected_components(graph)}
    assert {frozenset(group) for group in components.groups().values()} == expected
    assert all(outcome.applied for outcome in outcomes)


@given(data=st.data(), kinds=nodes, limit=st.integers(min_value=1, max_value=3))
def test_with_rules_no_component_breaks_a_limit_and_refusals_are_explained(
    data: st.DataObject, kinds: list[str], limit: int
) -> None:
    edges = data.draw(_edges(len(kinds)))
    rules = MergeRules(limits={"user_id": 1, "email": limit}, max_identifiers=6)
    components, outcomes = replay(
        rules, nodes=[(i, kind, (i,)) for i, kind in enumerate(kinds)], edges=edges
    )
    for group in components.groups().values():
        counts = Counter(kinds[i] for i in group)
        assert counts["user_id"] <= 1 and counts["email"] <= limit
        assert len(group) <= 6
    for (a, b), outcome in zip(edges, outcomes, strict=True):
        if outcome.applied:
            assert components.find(a) == components.find(b)
        else:
            assert outcome.conflict in {"limit:user_id", "limit:email", "max_profile_identifiers"}


@given(data=st.data(), kinds=nodes)
def test_the_oldest_root_survives_every_union(data: st.DataObject, kinds: list[str]) -> None:
    edges = data.draw(_edges(len(kinds)))
    components, _ = replay(
        MergeRules(limits={}, max_identifiers=10_000),
        nodes=[(i, kind, (i,)) for i, kind in enumerate(kinds)],
        edges=edges,
    )
    for root, group in components.groups().items():
        assert root == min(group)
