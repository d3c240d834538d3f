"""Which scored pairs to link, decided on the graph of profiles (networkx), not pair by pair.

Pairs at or above the upper threshold are merge candidates; but merging is transitive, so a
chain A-B-C joins A and C although nobody compared them. Inside each connected component of
merge candidates, a **weak bridge** is an edge whose removal splits the component into two
groups of at least two profiles each while its score is below ``bridge_score``: one uncertain
link would join two people's clusters. Weak bridges go to the review queue; the rest of the
component is linked. Pairs between the thresholds go to review, below the lower one are
dropped. Pure module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

MERGE = "merge"
REVIEW = "review"
DROP = "drop"


@dataclass(frozen=True)
class Thresholds:
    upper: float
    lower: float
    bridge_score: float


@dataclass(frozen=True)
class Routed:
    route: str
    weak_bridge: bool = False


def route_pairs(
    pairs: Sequence[tuple[int, int]], scores: Sequence[float], thresholds: Thresholds
) -> list[Routed]:
    """The route of each pair (profile ids), in the order given."""
    routes = [
        MERGE if score >= thresholds.upper else REVIEW if score >= thresholds.lower else DROP
        for score in scores
    ]
    graph: nx.Graph = nx.Graph()
    for index, ((a, b), route) in enumerate(zip(pairs, routes, strict=True)):
        if route == MERGE:
            graph.add_edge(a, b, index=index, score=scores[index])
    weak = weak_bridges(graph, bridge_score=thresholds.bridge_score)
    return [
        Routed(REVIEW, weak_bridge=True) if index in weak else Routed(route)
        for index, route in enumerate(routes)
    ]


def weak_bridges(graph: nx.Graph, *, bridge_score: float) -> set[int]:
    """Indexes (edge attribute ``index``) of the weak bridges of ``graph``."""
    weak: set[int] = set()
    for nodes in nx.connected_components(graph):
        if len(nodes) < 4:  # two groups of two need four profiles
            continue
        component = graph.subgraph(nodes)
        for a, b in nx.bridges(component):
            data = component.edges[a, b]
            if data["score"] >= bridge_score:
                continue
            rest: nx.Graph = nx.Graph(component)
            rest.remove_edge(a, b)
            side = nx.node_connected_component(rest, a)
            if len(side) >= 2 and len(nodes) - len(side) >= 2:
                weak.add(data["index"])
    return weak
