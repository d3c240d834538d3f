"""Components under the merge rules: a union-find that knows each component's kinds and size.

One algorithm serves every path that decides a partition, so they cannot disagree:

* the resolver seeds it with the locked profiles (as whole components) and the new identifiers,
  then links the batch's edges in order;
* an unmerge seeds it with the profile's identifiers one by one and replays its remaining edges;
* ``rebuild_identity`` seeds it with every identifier and replays every valid edge in id order;
* a merge dry-run links a hypothetical edge set without writing.

Edges are decided in the order given: an edge that would break a rule (``MergeRules.conflict``)
is refused and the components stay apart. Replaying the same edges in the same order from the
same seeds therefore always gives the same partition, which is what makes a rebuild equal to
incremental resolution. Pure module, no database.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from identity.rules import MergeRules

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class LinkOutcome(Generic[K]):
    applied: bool
    conflict: str = ""
    # The two roots joined (None when already one component or refused), kept first.
    kept: K | None = None
    absorbed: K | None = None


class Components(Generic[K]):
    """Union-find over hashable keys. A key stands for one identifier or a whole seeded
    component (an existing profile); ``rank`` orders roots so the *oldest* survives a union:
    lower rank wins (the resolver passes profile ids, orphans rank after every profile)."""

    def __init__(self, rules: MergeRules) -> None:
        self.rules = rules
        self._parent: dict[K, K] = {}
        # Plain dicts, not Counters: a rebuild seeds a million of them and merges as many.
        self._counts: dict[K, dict[str, int]] = {}
        self._size: dict[K, int] = {}
        self._rank: dict[K, tuple[int, ...]] = {}

    def add(self, key: K, *, counts: Mapping[str, int], rank: tuple[int, ...]) -> None:
        """Seed a component (``counts``: its identifiers per kind). Adding a key twice is a
        programming error."""
        if key in self._parent:
            raise ValueError("component key added twice")
        self._parent[key] = key
        self._counts[key] = dict(counts)
        self._size[key] = sum(counts.values())
        self._rank[key] = rank

    def find(self, key: K) -> K:
        parent = self._parent
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def link(self, a: K, b: K) -> LinkOutcome[K]:
        """Join the components of ``a`` and ``b`` unless a merge rule forbids it."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return _ALREADY_JOINED
        size = self._size[root_a] + self._size[root_b]
        conflict = self.rules.conflict(self._counts[root_a], self._counts[root_b], size=size)
        if conflict:
            return LinkOutcome(applied=False, conflict=conflict)
        if self._rank[root_b] < self._rank[root_a]:
            root_a, root_b = root_b, root_a
        kept, absorbed = root_a, root_b
        self._parent[absorbed] = kept
        counts = self._counts[kept]
        for kind, count in self._counts.pop(absorbed).items():
            counts[kind] = counts.get(kind, 0) + count
        self._size[kept] = size
        del self._size[absorbed]
        return LinkOutcome(applied=True, kept=kept, absorbed=absorbed)

    def conflict_of(self, a: K, b: K) -> str:
        """Why ``link(a, b)`` would be refused ("" when it would not be), without linking: what
        a preview of a merge asks."""
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return ""
        size = self._size[root_a] + self._size[root_b]
        return self.rules.conflict(self._counts[root_a], self._counts[root_b], size=size) or ""

    def groups(self) -> dict[K, list[K]]:
        """Root -> the keys of its component (roots included), keys in insertion order."""
        out: dict[K, list[K]] = {}
        for key in self._parent:
            out.setdefault(self.find(key), []).append(key)
        return out


# Shared: most edges of a replay join what is already joined, and the outcome is immutable.
_ALREADY_JOINED: LinkOutcome[Any] = LinkOutcome(applied=True)


def replay(
    rules: MergeRules,
    *,
    nodes: Iterable[tuple[int, str, tuple[int, ...]]],
    edges: Iterable[tuple[int, int]],
) -> tuple[Components[int], list[LinkOutcome[int]]]:
    """Seed one component per ``(identifier id, kind, rank)`` and link ``edges`` in order;
    returns the components and each edge's outcome (in the order given)."""
    components: Components[int] = Components(rules)
    for identifier_id, kind, rank in nodes:
        components.add(identifier_id, counts={kind: 1}, rank=rank)
    outcomes = [components.link(a, b) for a, b in edges]
    return components, outcomes
