"""Unmerge: invalidate evidence and recompute only the component it held together.

The component's remaining valid, applied edges are replayed in id order under the merge rules
(``identity.components.replay``, the algorithm every partition comes from). When the component
falls apart, the side holding the profile's oldest identifier keeps the profile id; each other
side gets back the earlier profile its identifiers first belonged to (re-activated, so ids that
clients stored keep working), or a new one. Events, trait observations and counters belong to
identifiers, so both sides get exactly their own back; the derived fields are recomputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cdp.api.errors import Conflict, InvalidInput, NotFound
from consent.services import consent_states_refresh
from identity.components import replay
from identity.merging import (
    components_lock,
    identifiers_assign,
    ledger_entry,
    ledger_write,
    profile_changes_mark,
    profiles_create,
)
from identity.models import Edge, Identifier, LedgerAction, Profile
from identity.rules import merge_rules
from identity.services.profiles import profiles_refresh

MAX_REASON_LENGTH = 2000


@dataclass
class UnmergeResult:
    profile_id: int  # the profile the edges were in (it keeps its id)
    edges: list[int]  # the edges invalidated
    profiles: list[int] = field(default_factory=list)  # the split-off profiles, if any
    # When the component held together through other evidence: identifier ids of one path.
    still_connected_by: list[int] | None = None

    @property
    def split(self) -> bool:
        return bool(self.profiles)


@transaction.atomic
def profile_unmerge(
    *,
    profile_id: int,
    actor: str,
    reason: str = "",
    edge_ids: Sequence[int] = (),
    identifier_id: int | None = None,
) -> UnmergeResult:
    """Invalidate ``edge_ids`` (evidence inside the profile) or, with ``identifier_id``, every
    valid edge of that identifier (detach it), then split the profile where it falls apart.

    Domain errors: NotFound (profile, edge or identifier not in the profile), InvalidInput
    (nothing named, both named), Conflict (an edge already invalidated).
    """
    if bool(edge_ids) == (identifier_id is not None):
        raise InvalidInput(
            "Name the evidence to remove: edge_ids, or identifier_id to detach an identifier.",
            code="unmerge_target",
            attr="edge_ids",
        )
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput(f"reason is longer than {MAX_REASON_LENGTH} characters.", attr="reason")
    profile = Profile.objects.filter(pk=profile_id).first()
    if profile is None:
        raise NotFound(f"No profile {profile_id}.", code="profile_not_found")
    if profile.merged_into_id is not None:
        raise Conflict(
            f"Profile {profile_id} was merged into profile {profile.merged_into_id}: "
            "unmerge there.",
            code="profile_merged",
        )
    members = _members(profile_id)
    edges = _target_edges(members, edge_ids=edge_ids, identifier_id=identifier_id)
    components_lock(members)
    # Locked: the membership read before the lock must still hold (components_lock checked it).
    now = timezone.now()
    Edge.objects.filter(pk__in=[edge.pk for edge in edges]).update(
        invalidated_at=now, invalidated_by=actor, invalidation_reason=reason
    )
    result = UnmergeResult(profile_id=profile_id, edges=sorted(edge.pk for edge in edges))
    _split(
        profile_id,
        result=result,
        actor=actor,
        reason=reason,
        first_edge=edges[0],
        detached=identifier_id,
    )
    return result


def _members(profile_id: int) -> list[int]:
    return list(
        Identifier.objects.filter(profile_id=profile_id).order_by("pk").values_list("pk", flat=True)
    )


def _target_edges(
    members: Sequence[int], *, edge_ids: Sequence[int], identifier_id: int | None
) -> list[Edge]:
    inside = Q(a_id__in=members, b_id__in=members)
    if identifier_id is not None:
        if identifier_id not in set(members):
            raise NotFound(
                f"Identifier {identifier_id} is not in this profile.", code="identifier_not_found"
            )
        edges = list(
            Edge.objects.filter(inside, Q(a_id=identifier_id) | Q(b_id=identifier_id))
            .filter(invalidated_at__isnull=True)
            .order_by("pk")
        )
        if not edges:
            raise Conflict(
                f"Identifier {identifier_id} has no valid evidence left to remove.",
                code="nothing_to_unmerge",
            )
        return edges
    found = {edge.pk: edge for edge in Edge.objects.filter(inside, pk__in=set(edge_ids))}
    missing = sorted(set(edge_ids) - set(found))
    if missing:
        raise NotFound(
            f"Edge {missing[0]} is not evidence inside this profile.",
            code="edge_not_found",
            attr="edge_ids",
        )
    invalid = sorted(pk for pk, edge in found.items() if edge.invalidated_at is not None)
    if invalid:
        raise Conflict(f"Edge {invalid[0]} is already invalidated.", code="edge_invalidated")
    return [found[pk] for pk in sorted(found)]


def _split(
    profile_id: int,
    *,
    result: UnmergeResult,
    actor: str,
    reason: str,
    first_edge: Edge,
    detached: int | None,
) -> None:
    identifiers = list(
        Identifier.objects.filter(profile_id=profile_id)
        .order_by("pk")
        .values_list("pk", "kind", "first_profile_id")
    )
    edges = list(
        Edge.objects.filter(
            a__profile_id=profile_id,
            b__profile_id=profile_id,
            applied=True,
            invalidated_at__isnull=True,
        )
        .order_by("pk")
        .values_list("a_id", "b_id")
    )
    components, _ = replay(
        merge_rules(),
        nodes=[(pk, kind, (pk,)) for pk, kind, _ in identifiers],
        edges=edges,
    )
    groups = list(components.groups().values())
    if len(groups) == 1:
        result.still_connected_by = _path(edges, first_edge.a_id, first_edge.b_id)
        ledger_write(
            [
                ledger_entry(
                    action=LedgerAction.UNMERGE,
                    profile_id=profile_id,
                    edge_id=first_edge.pk,
                    actor=actor,
                    reason=reason,
                    details={"edges": result.edges, "split": False},
                )
            ]
        )
        profile_changes_mark([profile_id])
        return
    first_profile = {pk: first for pk, _, first in identifiers}
    keeper = _keeper(groups, first_profile, profile_id, detached=detached)
    others = [group for group in groups if group is not keeper]
    targets = _targets(others, first_profile, profile_id)
    assignments = {
        key: target for group, target in zip(others, targets, strict=True) for key in group
    }
    identifiers_assign(assignments)
    _repoint_merged(profile_id, first_profile, assignments)
    result.profiles = targets
    ledger_write(
        [
            ledger_entry(
                action=LedgerAction.UNMERGE,
                profile_id=profile_id,
                other_profile_id=target,
                edge_id=first_edge.pk,
                actor=actor,
                reason=reason,
                details={"edges": result.edges, "identifiers_moved": len(group)},
            )
            for group, target in zip(others, targets, strict=True)
        ]
    )
    touched = [profile_id, *targets]
    profiles_refresh(profile_ids=touched, traits_for=touched)
    # Each side's consent is derived from its own identifiers' ledger again.
    consent_states_refresh(profile_ids=touched)
    profile_changes_mark(touched)


def _keeper(
    groups: list[list[int]],
    first_profile: Mapping[int, int | None],
    profile_id: int,
    *,
    detached: int | None,
) -> list[int]:
    """The side holding the profile's oldest own identifier (the first it was created for);
    when an identifier is detached, the oldest among the others: the detached one leaves."""
    staying = [pk for pk in first_profile if pk != detached]
    own = [pk for pk in staying if first_profile[pk] == profile_id]
    oldest = min(own) if own else min(staying)
    return next(group for group in groups if oldest in group)


def _targets(
    others: list[list[int]], first_profile: Mapping[int, int | None], profile_id: int
) -> list[int]:
    """Each split-off side's profile: the earliest earlier profile of its identifiers that was
    merged away and is not taken by another side, else a new one."""
    taken: set[int] = set()
    chosen: list[int | None] = []
    for group in others:
        candidates = sorted(
            {
                first
                for key in group
                if (first := first_profile[key]) is not None
                and first != profile_id
                and first not in taken
            }
        )
        revivable = _merged_away(candidates)
        pick = revivable[0] if revivable else None
        if pick is not None:
            taken.add(pick)
        chosen.append(pick)
    fresh = iter(profiles_create(sum(pick is None for pick in chosen)))
    targets = [pick if pick is not None else next(fresh) for pick in chosen]
    revived = [pick for pick in chosen if pick is not None]
    if revived:
        Profile.objects.filter(pk__in=revived).update(merged_into=None, updated_at=timezone.now())
    return targets


def _merged_away(candidates: list[int]) -> list[int]:
    """Those of ``candidates`` that are merged profiles with no identifiers of their own."""
    if not candidates:
        return []
    dead = set(
        Profile.objects.filter(pk__in=candidates, merged_into__isnull=False).values_list(
            "pk", flat=True
        )
    )
    return [pk for pk in candidates if pk in dead]


def _repoint_merged(
    profile_id: int, first_profile: Mapping[int, int | None], assignments: dict[int, int]
) -> None:
    """Profiles merged into this one whose identifiers moved to a split-off side now point at
    that side, so a lookup by their id finds where their identifiers went."""
    moved_to: dict[int, int] = {}
    for identifier_id, target in sorted(assignments.items()):
        first = first_profile[identifier_id]
        if first is not None and first != target and first != profile_id:
            moved_to.setdefault(first, target)
    for old, target in moved_to.items():
        Profile.objects.filter(pk=old, merged_into_id=profile_id).update(merged_into_id=target)


def _path(edges: Sequence[tuple[int, int]], a: int, b: int) -> list[int] | None:
    graph: nx.Graph = nx.Graph()
    graph.add_edges_from(edges)
    try:
        return [int(node) for node in nx.shortest_path(graph, a, b)]
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None
