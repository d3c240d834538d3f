"""``rebuild_identity``: recompute the whole partition from the evidence, as incremental
resolution would have built it.

Three steps, each reported to ``progress``:

1. **evidence**: re-extract the edges of every resolved identify/alias event and every resolved
   CRM record from the raw rows (``identity.services.resolution``'s extraction) and store the
   ones missing (an edge already stored, invalidated ones included, is kept as it is: an
   unmerge stays decided);
2. **graph**: replay every valid edge in id order over all identifiers under the merge rules
   (``identity.components``): the same algorithm, edges and order as incremental resolution,
   hence the same partition;
3. **write**: only what differs. Each new component keeps the oldest profile its identifiers
   were in (profile ids stay stable), a profile left without identifiers points at the one
   that took most of them, edge applied/conflict flags are corrected, and the changed
   profiles' derived fields are recomputed.

It runs under ``LOCK TABLE identity_profile IN EXCLUSIVE MODE``: resolver batches wait (their
``SELECT ... FOR UPDATE`` needs a row-share lock), readers do not.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction

from consent.services import consent_states_refresh
from identity.components import Components, LinkOutcome
from identity.merging import (
    identifiers_assign,
    ledger_entry,
    ledger_write,
    profile_changes_mark,
    profiles_create,
)
from identity.models import LedgerAction
from identity.rules import merge_rules
from identity.services.profiles import profiles_refresh
from identity.services.resolution import evidence_restore

REBUILD_ACTOR = "rebuild_identity"
WRITE_CHUNK = 10_000

Progress = Callable[[str, int, int], object]  # (step, done, total)


@dataclass
class RebuildResult:
    identifiers: int = 0
    edges: int = 0
    edges_added: int = 0
    components: int = 0
    identifiers_moved: int = 0
    profiles_created: int = 0
    profiles_retired: int = 0
    edges_flipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.identifiers_moved or self.edges_flipped or self.edges_added)


def identity_rebuild(*, progress: Progress | None = None, dry_run: bool = False) -> RebuildResult:
    """Rebuild the partition; with ``dry_run`` compute and report it, write nothing."""
    result = RebuildResult()
    report = progress or (lambda step, done, total: None)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE identity_profile IN EXCLUSIVE MODE")
        started = time.perf_counter()
        if not dry_run:
            result.edges_added = evidence_restore(progress=report)
        result.seconds["evidence"] = time.perf_counter() - started

        started = time.perf_counter()
        nodes = _identifiers()
        edges = _edges()
        report("load", len(nodes), len(nodes))
        result.seconds["load"] = time.perf_counter() - started

        started = time.perf_counter()
        components, outcomes = _replay(nodes, edges)
        result.seconds["graph"] = time.perf_counter() - started
        result.identifiers, result.edges = len(nodes), len(edges)
        report("graph", len(edges), len(edges))

        started = time.perf_counter()
        plan = _plan(nodes, components)
        result.components = plan.components
        result.identifiers_moved = len(plan.moves)
        result.edges_flipped = sum(
            edge[3] != outcome.applied or edge[4] != outcome.conflict
            for edge, outcome in zip(edges, outcomes, strict=True)
        )
        if not dry_run:
            _apply(plan, edges, outcomes, result=result, report=report)
        result.seconds["write"] = time.perf_counter() - started
        if dry_run:
            transaction.set_rollback(True)
    return result


# --- load -------------------------------------------------------------------------------------
Node = tuple[int, str, int | None, int | None]  # id, kind, profile_id, first_profile_id
EdgeRow = tuple[int, int, int, bool, str]  # id, a, b, applied, conflict


def _identifiers() -> list[Node]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, kind, profile_id, first_profile_id FROM identity_identifier ORDER BY id"
        )
        return cursor.fetchall()


def _edges() -> list[EdgeRow]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, a_id, b_id, applied, conflict FROM identity_edge "
            "WHERE invalidated_at IS NULL ORDER BY id"
        )
        return cursor.fetchall()


def _replay(
    nodes: Sequence[Node], edges: Sequence[EdgeRow]
) -> tuple[Components[int], list[LinkOutcome[int]]]:
    components: Components[int] = Components(merge_rules())
    for identifier_id, kind, _, _ in nodes:
        components.add(identifier_id, counts={kind: 1}, rank=(identifier_id,))
    outcomes = [components.link(a, b) for _, a, b, _, _ in edges]
    return components, outcomes


# --- plan -------------------------------------------------------------------------------------
@dataclass
class _Plan:
    components: int = 0
    moves: dict[int, int | None] = field(default_factory=dict)  # identifier -> profile (None: new)
    new_groups: list[list[int]] = field(default_factory=list)  # components needing a new profile
    retired: dict[int, int | None] = field(default_factory=dict)  # profile -> successor
    revived: set[int] = field(default_factory=set)


def _plan(nodes: Sequence[Node], components: Components[int]) -> _Plan:
    """Profile of each component: the oldest of its identifiers' current profiles not taken by
    an older component, else the oldest earlier profile that is free, else a new one."""
    by_id = {node[0]: node for node in nodes}
    plan = _Plan()
    taken: set[int] = set()
    for members in sorted(components.groups().values(), key=min):
        current = sorted({p for i in members if (p := by_id[i][2]) is not None})
        if not current:
            continue  # identifiers the resolver has not reached yet: left to it
        plan.components += 1
        earlier = sorted({p for i in members if (p := by_id[i][3]) is not None} - set(current))
        pick = next((p for p in [*current, *earlier] if p not in taken), None)
        if pick is None:
            plan.new_groups.append(members)
        else:
            taken.add(pick)
            if pick not in current:
                plan.revived.add(pick)
        for identifier_id in members:
            if by_id[identifier_id][2] != pick or pick is None:
                plan.moves[identifier_id] = pick
    old_profiles = {node[2] for node in nodes if node[2] is not None}
    for profile_id in sorted(old_profiles - taken):
        plan.retired[profile_id] = None  # successor resolved once new profiles exist
    return plan


def _apply(
    plan: _Plan,
    edges: Sequence[EdgeRow],
    outcomes: Sequence[LinkOutcome[int]],
    *,
    result: RebuildResult,
    report: Progress,
) -> None:
    new_ids = profiles_create(len(plan.new_groups))
    result.profiles_created = len(new_ids)
    for group, profile_id in zip(plan.new_groups, new_ids, strict=True):
        for identifier_id in group:
            plan.moves[identifier_id] = profile_id
    moves: dict[int, int] = {i: p for i, p in plan.moves.items() if p is not None}
    old = _current_profiles(list(moves))
    items = sorted(moves.items())
    for start in range(0, len(items), WRITE_CHUNK):
        identifiers_assign(dict(items[start : start + WRITE_CHUNK]))
        report("write", min(start + WRITE_CHUNK, len(items)), len(items))
    _retire(plan, old, moves)
    result.profiles_retired = len(plan.retired)
    _edges_flip(edges, outcomes)
    touched = sorted(
        set(moves.values()) | {p for p in old.values() if p is not None and p not in plan.retired}
    )
    for start in range(0, len(touched), WRITE_CHUNK):
        chunk = touched[start : start + WRITE_CHUNK]
        profiles_refresh(profile_ids=chunk, traits_for=chunk)
        consent_states_refresh(profile_ids=chunk)
    consent_states_refresh(profile_ids=list(plan.retired))
    profile_changes_mark(touched)
    ledger_write(
        [
            ledger_entry(
                action=LedgerAction.MERGE,
                profile_id=successor,
                other_profile_id=retired,
                actor=REBUILD_ACTOR,
                reason="rebuild_identity joined these profiles",
            )
            for retired, successor in plan.retired.items()
            if successor is not None
        ]
        + [
            ledger_entry(
                action=LedgerAction.UNMERGE,
                profile_id=profile_id,
                actor=REBUILD_ACTOR,
                reason="rebuild_identity split this profile off",
            )
            for profile_id in [*new_ids, *sorted(plan.revived)]
        ]
    )


def _current_profiles(identifier_ids: list[int]) -> dict[int, int | None]:
    if not identifier_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, profile_id FROM identity_identifier WHERE id = ANY(%s::bigint[])",
            [identifier_ids],
        )
        return dict(cursor.fetchall())


def _retire(plan: _Plan, old: dict[int, int | None], moves: dict[int, int]) -> None:
    """Profiles left without identifiers point at where most of them went; revived ones are
    live again."""
    went: dict[int, Counter[int]] = {}
    for identifier_id, new in moves.items():
        previous = old.get(identifier_id)
        if previous is not None:
            went.setdefault(previous, Counter())[new] += 1
    for retired in plan.retired:
        destinations = went.get(retired)
        if destinations:
            plan.retired[retired] = max(sorted(destinations), key=destinations.__getitem__)
    with connection.cursor() as cursor:
        if plan.revived:
            cursor.execute(
                "UPDATE identity_profile SET merged_into_id = NULL, updated_at = now() "
                "WHERE id = ANY(%s::bigint[])",
                [sorted(plan.revived)],
            )
        pairs = sorted((p, s) for p, s in plan.retired.items() if s is not None)
        if pairs:
            cursor.execute(
                """
                UPDATE identity_profile AS p SET merged_into_id = t.successor, updated_at = now()
                FROM unnest(%s::bigint[], %s::bigint[]) AS t(retired, successor)
                WHERE p.id = t.retired OR p.merged_into_id = t.retired
                """,
                [[p for p, _ in pairs], [s for _, s in pairs]],
            )


def _edges_flip(edges: Sequence[EdgeRow], outcomes: Sequence[LinkOutcome]) -> None:
    changed: list[tuple[int, bool, str]] = [
        (edge[0], outcome.applied, outcome.conflict)
        for edge, outcome in zip(edges, outcomes, strict=True)
        if edge[3] != outcome.applied or edge[4] != outcome.conflict
    ]
    if not changed:
        return
    params: list[Any] = [[c[0] for c in changed], [c[1] for c in changed], [c[2] for c in changed]]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE identity_edge AS e SET applied = t.applied, conflict = t.conflict
            FROM unnest(%s::bigint[], %s::boolean[], %s::varchar[]) AS t(id, applied, conflict)
            WHERE e.id = t.id
            """,
            params,
        )
