"""Reads of the identity graph: identifiers by value, their values, a profile's survivor, and
what the profile API shows (profiles, identifiers, events, evidence graph, ledger, merge preview).

Values are PII: nothing here logs one or puts one in an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

import networkx as nx
import orjson
from django.db.models import Count, F, Q, QuerySet

from cdp.crypto.blind_index import blind_index
from cdp.crypto.envelope import decrypt, decrypt_many, decrypt_many_unless_erased
from cdp.ingestion.models import Event
from cdp.ingestion.pii import REDACTED
from identity.components import Components, LinkOutcome
from identity.merging import profile_kind_counts
from identity.models import Edge, Identifier, MergeLedgerEntry, Profile, TraitObservation
from identity.normalization import identity_config, normalize
from identity.rules import merge_rules

logger = logging.getLogger(__name__)

# Merges point a profile at its survivor; a chain this long means the merging code forgot to
# re-point (or wrote a cycle), and the lookup stops instead of walking on.
MAX_MERGE_HOPS = 64


def identifier_find(*, kind: str, raw_value: object) -> Identifier | None:
    """The identifier a raw value (as sent, e.g. ``" Ada@Example.com "``) stands for; None when
    the value is not a usable identifier (invalid, blocked) or no node exists. One query at most;
    ValueError for an unknown kind."""
    value = normalize(kind, raw_value)
    if value is None:
        return None
    return Identifier.objects.filter(kind=kind, blind_index=blind_index(kind, value)).first()


def identifiers_find(pairs: Sequence[tuple[str, object]]) -> list[Identifier | None]:
    """``identifier_find`` for many ``(kind, raw value)`` pairs, in their order: one query for
    all of them. ValueError for an unknown kind."""
    indexes: list[tuple[str, bytes] | None] = []
    for kind, raw in pairs:
        value = normalize(kind, raw)
        indexes.append(None if value is None else (kind, blind_index(kind, value)))
    wanted = {index for index in indexes if index is not None}
    if not wanted:
        return [None] * len(indexes)
    query = Q()
    for kind in {kind for kind, _ in wanted}:
        query |= Q(kind=kind, blind_index__in=[index for k, index in wanted if k == kind])
    found = {(row.kind, bytes(row.blind_index)): row for row in Identifier.objects.filter(query)}
    return [None if index is None else found.get(index) for index in indexes]


def identifier_value(identifier: Identifier) -> str:
    """The plaintext value (``KeyDestroyed`` once the person was erased)."""
    return decrypt(identifier.value_ciphertext, aad=Identifier.value_aad(identifier.pk))


def identifier_values(identifiers: Iterable[Identifier]) -> dict[int, str]:
    """Values by identifier id, with one query for all the uncached data keys."""
    rows = list(identifiers)
    values = decrypt_many((row.value_ciphertext, Identifier.value_aad(row.pk)) for row in rows)
    return {row.pk: value for row, value in zip(rows, values, strict=True)}


_CHAIN = """
WITH RECURSIVE chain (id, merged_into_id, depth, path) AS (
    SELECT id, merged_into_id, 0, ARRAY[id] FROM identity_profile WHERE id = %(id)s
    UNION ALL
    SELECT p.id, p.merged_into_id, c.depth + 1, c.path || p.id
    FROM chain c JOIN identity_profile p ON p.id = c.merged_into_id
    WHERE c.depth < %(max_hops)s AND p.id <> ALL(c.path)
)
SELECT p.* FROM identity_profile p JOIN chain c ON c.id = p.id
ORDER BY c.depth DESC
LIMIT 1
"""


def profile_current(profile_id: int) -> Profile | None:
    """The profile ``profile_id`` is now part of: itself, or the survivor its ``merged_into``
    chain ends at. None for an unknown id, and for a chain that loops or runs past
    ``MAX_MERGE_HOPS`` (logged as an error: the graph needs repair). One query."""
    rows = list(Profile.objects.raw(_CHAIN, {"id": profile_id, "max_hops": MAX_MERGE_HOPS}))
    if not rows:
        return None
    (last,) = rows
    if last.merged_into_id is not None:
        logger.error(
            "merged_into chain of profile %s does not end within %s hops (stopped at profile %s)",
            profile_id,
            MAX_MERGE_HOPS,
            last.pk,
        )
        return None
    return last


def identifier_values_shown(
    identifiers: Iterable[Identifier], *, reveal_pii: bool
) -> dict[int, str | None]:
    """What a reader may see of each identifier's value: the value with ``reveal_pii`` (None for
    an erased one, whose key is destroyed), else ``"[redacted]"``. One key query at most, none
    without ``reveal_pii`` (pass rows loaded without ``value_ciphertext`` then)."""
    rows = list(identifiers)
    if not reveal_pii:
        return dict.fromkeys((row.pk for row in rows), REDACTED)
    values = decrypt_many_unless_erased(
        (row.value_ciphertext, Identifier.value_aad(row.pk)) for row in rows
    )
    return {row.pk: value for row, value in zip(rows, values, strict=True)}


# --- profiles as the API shows them -----------------------------------------------------------
@dataclass(frozen=True)
class ProfileRead:
    """A live profile with what a reader may see of it. ``requested_id`` is the id asked for;
    when that profile was merged away, ``merged_into`` is the survivor's id (= ``id``)."""

    id: int
    requested_id: int
    merged_into: int | None
    created_at: datetime
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    event_count: int
    traits: dict[str, dict[str, Any]]
    identifier_counts: dict[str, int]


def profile_read(profile_id: int, *, reveal_pii: bool) -> ProfileRead | None:
    """The profile ``profile_id`` is now part of, its traits with provenance (PII values only
    with ``reveal_pii``) and its identifiers counted by kind; None when unknown. Three queries,
    five with ``reveal_pii`` and PII traits (their observations, their keys)."""
    profile = profile_current(profile_id)
    if profile is None:
        return None
    counts = dict(
        Identifier.objects.filter(profile_id=profile.pk)
        .values_list("kind")
        .annotate(n=Count("pk"))
        .order_by("kind")
    )
    return ProfileRead(
        id=profile.pk,
        requested_id=profile_id,
        merged_into=profile.pk if profile.pk != profile_id else None,
        created_at=profile.created_at,
        first_seen_at=profile.first_seen_at,
        last_seen_at=profile.last_seen_at,
        event_count=profile.event_count,
        traits=profile_traits_shown(profile, reveal_pii=reveal_pii),
        identifier_counts=counts,
    )


def profile_traits_shown(profile: Profile, *, reveal_pii: bool) -> dict[str, dict[str, Any]]:
    """``Profile.traits`` (provenance, non-PII values) with a ``value`` for every trait: a PII
    trait's is decrypted from its winning observation with ``reveal_pii`` (None when erased),
    else ``"[redacted]"``."""
    stored: dict[str, dict[str, Any]] = profile.traits or {}
    pii_ids = [entry["observation_id"] for entry in stored.values() if entry.get("pii")]
    values = observation_values(pii_ids) if reveal_pii and pii_ids else {}
    shown: dict[str, dict[str, Any]] = {}
    for name, entry in stored.items():
        trait = dict(entry)
        if entry.get("pii"):
            trait["value"] = values.get(entry["observation_id"]) if reveal_pii else REDACTED
        shown[name] = trait
    return shown


def observation_values(observation_ids: Iterable[int]) -> dict[int, Any]:
    """Observation id -> value, PII ones decrypted (one query for the rows, one for the keys)."""
    rows = list(
        TraitObservation.objects.filter(pk__in=set(observation_ids)).values_list(
            "pk", "value", "value_ciphertext"
        )
    )
    sealed = [(pk, ciphertext) for pk, _, ciphertext in rows if ciphertext is not None]
    opened = decrypt_many_unless_erased(
        (ciphertext, TraitObservation.value_aad(pk)) for pk, ciphertext in sealed
    )
    values: dict[int, Any] = {pk: value for pk, value, ciphertext in rows if ciphertext is None}
    for (pk, _), plaintext in zip(sealed, opened, strict=True):
        values[pk] = None if plaintext is None else orjson.loads(plaintext)
    return values


def profile_identifiers(profile_id: int, *, with_values: bool) -> QuerySet[Identifier]:
    """A profile's identifiers (order them: the API pages them by id). ``with_values`` loads the
    value ciphertexts, for ``identifier_values_shown(reveal_pii=True)``."""
    identifiers = Identifier.objects.filter(profile_id=profile_id)
    if not with_values:
        identifiers = identifiers.defer("value_ciphertext", "blind_index")
    return identifiers


def profile_events(profile_id: int) -> QuerySet[Event]:
    """The events anchored on a profile's identifiers (the ``event_identifier_name_ts`` partial
    index serves ``identifier_id IN (...)``). One query for the ids, then the caller's page."""
    ids = list(Identifier.objects.filter(profile_id=profile_id).values_list("pk", flat=True))
    if not ids:
        return Event.objects.none()
    return Event.objects.filter(identifier_id__in=ids).select_related("source")


def profile_merge_ledger(profile_id: int) -> QuerySet[MergeLedgerEntry]:
    """The ledger entries naming the profile on either side (order them: the API pages by id)."""
    return MergeLedgerEntry.objects.filter(
        Q(profile_id=profile_id) | Q(other_profile_id=profile_id)
    )


# --- the evidence graph of a profile ----------------------------------------------------------
GRAPH_MAX_NODES = 5000
GRAPH_MAX_EDGES = 5000


@dataclass(frozen=True)
class GraphNode:
    id: int
    kind: str
    value: str | None


@dataclass(frozen=True)
class GraphEdge:
    edge: Edge
    # The profile of the end outside this one (None when both ends are in it).
    other_profile_id: int | None

    @property
    def valid(self) -> bool:
        return self.edge.applied and self.edge.invalidated_at is None


@dataclass(frozen=True)
class ProfileGraph:
    profile_id: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool  # more nodes or edges than the caps: the first ones by id are shown


@dataclass(frozen=True)
class EvidencePath:
    identifiers: list[int]
    edges: list[int]


def profile_graph(profile_id: int, *, reveal_pii: bool) -> ProfileGraph:
    """A profile's identifiers and every edge touching them (valid or not), capped at
    ``GRAPH_MAX_NODES`` / ``GRAPH_MAX_EDGES`` by id. Two queries, three with ``reveal_pii``."""
    rows = list(
        profile_identifiers(profile_id, with_values=reveal_pii).order_by("pk")[
            : GRAPH_MAX_NODES + 1
        ]
    )
    truncated = len(rows) > GRAPH_MAX_NODES
    rows = rows[:GRAPH_MAX_NODES]
    values = identifier_values_shown(rows, reveal_pii=reveal_pii)
    nodes = [GraphNode(id=row.pk, kind=row.kind, value=values[row.pk]) for row in rows]
    edges: list[GraphEdge] = []
    if rows:
        ids = [row.pk for row in rows]
        found = list(
            Edge.objects.filter(Q(a_id__in=ids) | Q(b_id__in=ids))
            .select_related("source")
            .annotate(a_profile=F("a__profile_id"), b_profile=F("b__profile_id"))
            .order_by("pk")[: GRAPH_MAX_EDGES + 1]
        )
        truncated = truncated or len(found) > GRAPH_MAX_EDGES
        edges = [_graph_edge(edge, profile_id) for edge in found[:GRAPH_MAX_EDGES]]
    return ProfileGraph(profile_id=profile_id, nodes=nodes, edges=edges, truncated=truncated)


def _graph_edge(edge: Edge, profile_id: int) -> GraphEdge:
    ends = (edge.a_profile, edge.b_profile)  # type: ignore[attr-defined]
    other = next((end for end in ends if end != profile_id), None)
    return GraphEdge(edge=edge, other_profile_id=other)


def evidence_path(graph: ProfileGraph, *, source: int, target: int) -> EvidencePath | None:
    """The shortest chain of valid, applied edges from identifier ``source`` to ``target``
    within ``graph`` (between two identifiers, the lowest edge id); None when there is none."""
    network: nx.Graph = nx.Graph()
    network.add_nodes_from(node.id for node in graph.nodes)
    for item in graph.edges:
        edge = item.edge
        if not item.valid:
            continue
        known = network.get_edge_data(edge.a_id, edge.b_id)
        if known is None or edge.pk < known["id"]:
            network.add_edge(edge.a_id, edge.b_id, id=edge.pk)
    try:
        hops = [int(node) for node in nx.shortest_path(network, source, target)]
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None
    edge_ids = [int(network.edges[a, b]["id"]) for a, b in pairwise(hops)]
    return EvidencePath(identifiers=hops, edges=edge_ids)


# --- merge preview: what linking identifiers would do, without writing ------------------------
MERGE_PREVIEW_MAX_ITEMS = 50


@dataclass(frozen=True)
class PreviewRejected:
    index: int
    code: str
    detail: str
    attr: str


@dataclass(frozen=True)
class PreviewItem:
    index: int
    kind: str
    identifier_id: int | None  # None: no node yet, linking would create it
    profile_id: int | None  # where it is now (None: new, or not yet resolved)
    linked: bool  # whether its link to the hub would be applied
    conflict: str  # why not ("limit:<kind>", "max_profile_identifiers"), "" when linked


@dataclass(frozen=True)
class MergePreview:
    items: list[PreviewItem]
    rejected: list[PreviewRejected]
    hub_index: int | None  # the strongest identifier, which every other one is linked to
    profiles: list[int]  # the existing profiles that would end up as one, ascending
    survivor_id: int | None  # the oldest of them (None: a new profile would be made)
    refused: list[PreviewItem]

    @property
    def merges(self) -> bool:
        return len(self.profiles) > 1

    @property
    def new_identifiers(self) -> list[int]:
        return [item.index for item in self.items if item.identifier_id is None]


@dataclass
class _PreviewNode:
    index: int
    kind: str
    value: str
    node: Identifier | None = None


def merge_preview(*, identifiers: Sequence[tuple[str, object]]) -> MergePreview:
    """What linking ``identifiers`` (``(kind, raw value)`` pairs) as one piece of evidence would
    do under the merge rules, decided exactly as the resolver decides (``Components`` seeded with
    each involved profile's kind counts, a star from the strongest identifier). Reads only: two
    queries (the nodes, the profiles' kind counts). Values are never part of the result."""
    wanted, rejected = _preview_normalize(identifiers)
    _preview_find_nodes(wanted)
    distinct = _first_of_each_pair(wanted)
    if not distinct:
        return MergePreview([], rejected, None, [], None, [])
    components, key_of = _preview_components(distinct)
    registry = identity_config().kinds
    hub = min(distinct, key=lambda item: _hub_order(item, registry.rank(item.kind)))
    outcomes: dict[int, LinkOutcome] = {}
    for item in distinct:
        if item is not hub:
            outcomes[item.index] = components.link(key_of[hub.index], key_of[item.index])
    items = [
        _preview_item(item, outcomes.get(_pair_owner(item, distinct).index)) for item in wanted
    ]
    root = components.find(key_of[hub.index])
    profiles = sorted(
        key[1] for key in components.groups()[root] if isinstance(key, tuple) and key[0] == "p"
    )
    return MergePreview(
        items=items,
        rejected=rejected,
        hub_index=hub.index,
        profiles=profiles,
        survivor_id=profiles[0] if profiles else None,
        refused=[item for item in items if not item.linked],
    )


def _preview_normalize(
    identifiers: Sequence[tuple[str, object]],
) -> tuple[list[_PreviewNode], list[PreviewRejected]]:
    wanted: list[_PreviewNode] = []
    rejected: list[PreviewRejected] = []
    for index, (kind, raw) in enumerate(identifiers):
        try:
            value = normalize(kind, raw)
        except ValueError:
            rejected.append(
                PreviewRejected(
                    index,
                    "unknown_kind",
                    "Not an identifier kind this deployment uses.",
                    f"identifiers.{index}.kind",
                )
            )
            continue
        if value is None:
            rejected.append(
                PreviewRejected(
                    index,
                    "unusable_value",
                    "The value is not a usable identifier of this kind (invalid or blocked).",
                    f"identifiers.{index}.value",
                )
            )
            continue
        wanted.append(_PreviewNode(index=index, kind=kind, value=value))
    return wanted, rejected


def _preview_find_nodes(wanted: Sequence[_PreviewNode]) -> None:
    if not wanted:
        return
    indexes = {(item.kind, blind_index(item.kind, item.value)): item for item in wanted}
    match = Q()
    for kind, index in indexes:
        match |= Q(kind=kind, blind_index=index)
    found = Identifier.objects.filter(match).only("pk", "kind", "blind_index", "profile_id")
    by_index = {(node.kind, bytes(node.blind_index)): node for node in found}
    for item in wanted:
        item.node = by_index.get((item.kind, blind_index(item.kind, item.value)))


def _first_of_each_pair(wanted: Sequence[_PreviewNode]) -> list[_PreviewNode]:
    seen: set[tuple[str, str]] = set()
    distinct = []
    for item in wanted:
        if (item.kind, item.value) not in seen:
            seen.add((item.kind, item.value))
            distinct.append(item)
    return distinct


def _pair_owner(item: _PreviewNode, distinct: Sequence[_PreviewNode]) -> _PreviewNode:
    return next(d for d in distinct if (d.kind, d.value) == (item.kind, item.value))


PreviewKey = tuple[str, int]  # ("p", profile id) or ("i", item index)


def _preview_components(
    distinct: Sequence[_PreviewNode],
) -> tuple[Components[PreviewKey], dict[int, PreviewKey]]:
    """Seeds as the resolver's ``_decide``: each involved profile whole (its kind counts, ranked
    by id so the oldest survives), each identifier without a profile (existing, then new) alone."""
    profile_ids = sorted({i.node.profile_id for i in distinct if i.node and i.node.profile_id})
    components: Components[PreviewKey] = Components(merge_rules())
    for profile_id, counts in sorted(profile_kind_counts(profile_ids).items()):
        components.add(("p", profile_id), counts=counts, rank=(0, profile_id))
    key_of: dict[int, PreviewKey] = {}
    for item in distinct:
        node = item.node
        if node is not None and node.profile_id is not None:
            key_of[item.index] = ("p", node.profile_id)
            continue
        rank = (1, node.pk) if node is not None else (2, item.index)
        key_of[item.index] = ("i", item.index)
        components.add(key_of[item.index], counts={item.kind: 1}, rank=rank)
    return components, key_of


def _hub_order(item: _PreviewNode, kind_rank: int) -> tuple[int, int, int]:
    # The resolver's hub: the strongest kind, then the oldest node; a new node after existing.
    if item.node is not None:
        return (kind_rank, 0, item.node.pk)
    return (kind_rank, 1, item.index)


def _preview_item(item: _PreviewNode, outcome: LinkOutcome[PreviewKey] | None) -> PreviewItem:
    linked = outcome is None or outcome.applied
    return PreviewItem(
        index=item.index,
        kind=item.kind,
        identifier_id=item.node.pk if item.node else None,
        profile_id=item.node.profile_id if item.node else None,
        linked=linked,
        conflict="" if outcome is None else outcome.conflict,
    )


def events_pending_count() -> int:
    """How many stored events the resolver has not reached yet (served by the partial index)."""
    return Event.objects.filter(identifier_id__isnull=True).count()
