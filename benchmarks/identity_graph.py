"""The graph step of ``rebuild_identity`` at the target size: 1,000,000 identifiers.

``benchmarks/identity.py`` measures the whole rebuild on the identifiers its resolver runs
produce (about 290,000 by default). This module measures the step the target names at the full
size without resolving a million events first: ``identity.components.replay`` (the function
``rebuild_identity``'s graph step runs) over a seeded synthetic graph shaped like the identity
benchmark's: people of 1-6 identifiers (user id, emails, anonymous ids, phone), linked as a
star from their first identifier, and 1 % of people sharing an anonymous id with another
person, so merge rules refuse some edges. Pure Python, no database.

Knobs: ``BENCH_GRAPH_IDENTIFIERS`` (1,000,000), ``BENCH_GRAPH_REPEAT`` (3; the median is kept).
"""

from __future__ import annotations

import random
import statistics
import time

from benchmarks import Result, env_int
from identity.components import replay
from identity.rules import MergeRules

TITLE = "Identity graph step: replay of 1,000,000 identifiers"
TARGET_SECONDS = 5.0
KINDS = ("user_id", "email", "anonymous_id", "anonymous_id", "anonymous_id", "phone")


def _graph(
    identifiers: int, seed: int = 20261201
) -> tuple[list[tuple[int, str, tuple[int, ...]]], list[tuple[int, int]]]:
    rng = random.Random(seed)
    nodes: list[tuple[int, str, tuple[int, ...]]] = []
    edges: list[tuple[int, int]] = []
    firsts: list[int] = []
    next_id = 1
    while next_id <= identifiers:
        size = min(rng.randint(1, 6), identifiers - next_id + 1)
        first = next_id
        for offset in range(size):
            nodes.append((next_id, KINDS[offset], (next_id,)))
            if offset:
                edges.append((first, next_id))
            next_id += 1
        firsts.append(first)
    # Shared devices: an identify from another person's anonymous id (refused by user_id: 1).
    for _ in range(len(firsts) // 100):
        edges.append((rng.choice(firsts), rng.choice(firsts)))
    return nodes, [(a, b) for a, b in edges if a != b]


def run() -> list[Result]:
    identifiers = env_int("BENCH_GRAPH_IDENTIFIERS", 1_000_000)
    repeat = env_int("BENCH_GRAPH_REPEAT", 3)
    nodes, edges = _graph(identifiers)
    timings = []
    refused = components = 0
    for _ in range(repeat):
        started = time.perf_counter()
        found, outcomes = replay(MergeRules(), nodes=nodes, edges=edges)
        timings.append(time.perf_counter() - started)
        refused = sum(not outcome.applied for outcome in outcomes)
        components = len(found.groups())
    seconds = statistics.median(timings)
    return [
        Result(
            metric="graph step (replay)",
            value=seconds,
            unit="s",
            target=f"< {TARGET_SECONDS:.0f}",
            met=seconds < TARGET_SECONDS,
            note=(
                f"{len(nodes):,} identifiers, {len(edges):,} edges, {refused:,} refused by a "
                f"merge rule, {components:,} components; median of {repeat}"
            ),
        ),
        Result(
            metric="per identifier + edge",
            value=seconds / (len(nodes) + len(edges)) * 1e6,
            unit="us",
        ),
    ]
