"""The profile graph, merge ledger, unmerge and merge-preview APIs over resolved data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.api.models import ApiToken
from cdp.crypto.models import DataKey
from identity import selectors
from identity.models import (
    Edge,
    EdgeRule,
    Identifier,
    MergeLedgerEntry,
    Profile,
    TraitObservation,
)
from identity.selectors import GraphEdge, GraphNode, ProfileGraph, evidence_path
from tests.conftest import post_json
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db

READ = "profiles:read"
WRITE = "profiles:write"
PII = "pii:read"
REDACTED = "[redacted]"
EMAIL = "ada@example.com"


@dataclass(frozen=True)
class Graph:
    visitor: int  # anon-1's profile, the survivor of the merge with u1's
    user: int  # u1's profile, merged into the visitor's
    other: int  # u2's profile: its link to anon-1 was refused
    anon: int  # identifier ids
    u1: int
    email: int
    u2: int
    link: int  # the identify edge u1 - anon-1
    email_link: int  # u1 - email
    refused: int  # u2 - anon-1, limit:user_id


def _identifier(kind: str, value: str) -> int:
    found = selectors.identifier_find(kind=kind, raw_value=value)
    assert found is not None
    return found.pk


def _edge(a: int, b: int) -> int:
    low, high = sorted((a, b))
    return Edge.objects.get(a_id=low, b_id=high).pk


@pytest.fixture
def graph(source: Any) -> Graph:
    web = source.source.pk
    ingest(web, message("page", anonymousId="anon-1", name="Home"))
    resolve()
    ingest(web, message("track", at=1, userId="u1", event="Signed In"))
    resolve()
    user = pid("user_id", "u1")
    ingest(
        web,
        message(
            "identify",
            at=2,
            userId="u1",
            anonymousId="anon-1",
            traits={"email": EMAIL, "plan": "pro"},
        ),
        message("identify", at=3, userId="u2", anonymousId="anon-1"),
    )
    resolve()
    anon, u1 = _identifier("anonymous_id", "anon-1"), _identifier("user_id", "u1")
    email, u2 = _identifier("email", EMAIL), _identifier("user_id", "u2")
    return Graph(
        visitor=pid("anonymous_id", "anon-1"),
        user=user,
        other=pid("user_id", "u2"),
        anon=anon,
        u1=u1,
        email=email,
        u2=u2,
        link=_edge(anon, u1),
        email_link=_edge(u1, email),
        refused=_edge(anon, u2),
    )


def test_the_scenario_is_what_the_tests_assume(graph: Graph) -> None:
    assert graph.visitor < graph.user < graph.other
    assert Profile.objects.get(pk=graph.user).merged_into_id == graph.visitor
    assert Edge.objects.get(pk=graph.refused).conflict == "limit:user_id"


# --- graph ------------------------------------------------------------------------------------
def test_the_graph_has_the_profiles_identifiers_and_every_edge_touching_them(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    response = api_client(READ).get(f"/v1/profiles/{graph.visitor}/graph")
    assert response.status_code == 200
    body = response.json()
    assert body["profile_id"] == graph.visitor
    assert body["truncated"] is False
    assert body["path"] is None
    assert {(n["id"], n["kind"], n["value"]) for n in body["nodes"]} == {
        (graph.anon, "anonymous_id", REDACTED),
        (graph.u1, "user_id", REDACTED),
        (graph.email, "email", REDACTED),
    }
    edges = {edge["id"]: edge for edge in body["edges"]}
    assert set(edges) == {graph.link, graph.email_link, graph.refused}
    link = edges[graph.link]
    assert (link["rule"], link["source"], link["applied"], link["conflict"]) == (
        "identify",
        "web",
        True,
        "",
    )
    assert link["event_id"] is not None and link["record_id"] is None
    assert link["evidence"] == {"fields": ["anonymousId", "userId"]}
    assert link["other_profile_id"] is None and link["invalidated_at"] is None
    refused = edges[graph.refused]
    assert (refused["applied"], refused["conflict"], refused["other_profile_id"]) == (
        False,
        "limit:user_id",
        graph.other,
    )
    # The merged id answers with the survivor's graph.
    assert api_client(READ).get(f"/v1/profiles/{graph.user}/graph").json() == body


def test_graph_values_are_shown_with_pii_read(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    body = api_client(READ, PII).get(f"/v1/profiles/{graph.visitor}/graph").json()
    assert {n["kind"]: n["value"] for n in body["nodes"]} == {
        "anonymous_id": "anon-1",
        "user_id": "u1",
        "email": EMAIL,
    }


def test_the_evidence_path_between_two_identifiers(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    url = f"/v1/profiles/{graph.visitor}/graph"
    body = api_client(READ).get(url, {"from": graph.anon, "to": graph.email}).json()
    assert body["path"] == {
        "identifiers": [graph.anon, graph.u1, graph.email],
        "edges": [graph.link, graph.email_link],
    }
    outside = api_client(READ).get(url, {"from": graph.anon, "to": graph.u2})
    assert (outside.status_code, outside.json()["code"], outside.json()["attr"]) == (
        404,
        "identifier_not_found",
        "to",
    )
    half = api_client(READ).get(url, {"from": graph.anon})
    assert (half.status_code, half.json()["attr"]) == (400, "to")


def test_evidence_path_uses_only_valid_applied_edges() -> None:
    def edge(pk: int, a: int, b: int, *, applied: bool = True, invalid: bool = False) -> GraphEdge:
        made = Edge(pk=pk, a_id=a, b_id=b, rule=EdgeRule.IDENTIFY, applied=applied)
        made.invalidated_at = timezone.now() if invalid else None
        return GraphEdge(edge=made, other_profile_id=None)

    nodes = [GraphNode(id=i, kind="anonymous_id", value=None) for i in (1, 2, 3, 4)]
    edges = [
        edge(10, 1, 4, invalid=True),
        edge(11, 1, 4, applied=False),
        edge(12, 1, 2),
        edge(9, 2, 3),
        edge(13, 2, 3),
        edge(14, 3, 4),
    ]
    graph = ProfileGraph(profile_id=1, nodes=nodes, edges=edges, truncated=False)
    path = evidence_path(graph, source=1, target=4)
    assert path is not None
    assert (path.identifiers, path.edges) == ([1, 2, 3, 4], [12, 9, 14])
    alone = ProfileGraph(profile_id=1, nodes=nodes, edges=edges[:2], truncated=False)
    assert evidence_path(alone, source=1, target=4) is None


def test_a_graph_past_the_caps_says_it_is_truncated(
    graph: Graph, api_client: Callable[..., APIClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "GRAPH_MAX_NODES", 2)
    monkeypatch.setattr(selectors, "GRAPH_MAX_EDGES", 1)
    body = api_client(READ).get(f"/v1/profiles/{graph.visitor}/graph").json()
    assert body["truncated"] is True
    assert [n["id"] for n in body["nodes"]] == sorted([graph.anon, graph.u1])
    assert len(body["edges"]) == 1


# --- merge ledger -----------------------------------------------------------------------------
def test_the_ledger_lists_entries_naming_the_profile_newest_first(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    response = api_client(READ).get(f"/v1/profiles/{graph.visitor}/merges")
    assert response.status_code == 200
    entries = response.json()["results"]
    assert [(e["action"], e["profile"], e["other_profile"], e["edge"]) for e in entries] == [
        ("conflict", graph.visitor, graph.other, graph.refused),
        ("merge", graph.visitor, graph.user, graph.link),
    ]
    assert entries[0]["details"] == {"conflict": "limit:user_id"}
    assert {e["actor"] for e in entries} == {"resolver"}
    other = api_client(READ).get(f"/v1/profiles/{graph.other}/merges").json()["results"]
    assert [e["action"] for e in other] == ["conflict"]
    merged = api_client(READ).get(f"/v1/profiles/{graph.user}/merges").json()["results"]
    assert merged == entries
    page = api_client(READ).get(f"/v1/profiles/{graph.visitor}/merges", {"limit": 1}).json()
    assert [e["action"] for e in page["results"]] == ["conflict"] and page["next"]


# --- unmerge ----------------------------------------------------------------------------------
def _unmerge(client: APIClient, profile_id: int, body: dict[str, Any]) -> Any:
    return post_json(client, f"/v1/profiles/{profile_id}/unmerge", body)


def test_unmerge_restores_both_sides(
    graph: Graph, api_client: Callable[..., APIClient], make_token: Callable[..., str]
) -> None:
    steward = APIClient()
    steward.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(WRITE, name='steward')}")
    response = _unmerge(
        steward, graph.visitor, {"edge_ids": [graph.link], "reason": "shared laptop"}
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "profile_id": graph.visitor,
        "edges": [graph.link],
        "split": True,
        "profiles": [graph.user],  # the earlier profile id comes back
        "still_connected_by": None,
    }
    reader = api_client(READ, PII)
    user = reader.get(f"/v1/profiles/{graph.user}").json()
    visitor = reader.get(f"/v1/profiles/{graph.visitor}").json()
    assert (user["id"], user["merged_into"], user["event_count"]) == (graph.user, None, 2)
    assert (visitor["event_count"], visitor["identifier_counts"]) == (1, {"anonymous_id": 1})
    assert {name: t["value"] for name, t in user["traits"].items()} == {
        "email": EMAIL,
        "plan": "pro",
    }
    assert visitor["traits"] == {}
    assert reader.get("/v1/profiles/lookup", {"user_id": "u1"}).json()["id"] == graph.user
    assert reader.get("/v1/profiles/lookup", {"anonymous_id": "anon-1"}).json()["id"] == (
        graph.visitor
    )
    events = api_client(READ, "events:read").get(f"/v1/profiles/{graph.user}/events").json()
    assert [e["type"] for e in events["results"]] == ["identify", "track"]
    edge = Edge.objects.get(pk=graph.link)
    steward_actor = f"api:steward #{ApiToken.objects.get(name='steward').pk}"
    assert (edge.invalidated_by, edge.invalidation_reason) == (steward_actor, "shared laptop")
    ledger = reader.get(f"/v1/profiles/{graph.visitor}/merges").json()["results"][0]
    assert (ledger["action"], ledger["actor"], ledger["reason"], ledger["other_profile"]) == (
        "unmerge",
        steward_actor,
        "shared laptop",
        graph.user,
    )
    again = _unmerge(steward, graph.visitor, {"edge_ids": [graph.link], "reason": "again"})
    assert again.status_code == 404  # the edge is no longer inside the visitor's profile


def test_unmerge_can_detach_an_identifier(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    response = _unmerge(
        api_client(WRITE), graph.visitor, {"identifier_id": graph.email, "reason": "typo"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["edges"] == [graph.email_link]
    (split_off,) = body["profiles"]
    assert split_off > graph.other  # a new profile: the email never had one of its own
    found = api_client(READ).get("/v1/profiles/lookup", {"email": EMAIL}).json()
    assert found["id"] == split_off


@pytest.mark.parametrize(
    ("body", "status", "code", "attr"),
    [
        ({"edge_ids": [1]}, 400, "required", "reason"),
        ({"edge_ids": [1], "reason": "   "}, 400, "blank", "reason"),
        ({"edge_ids": [1], "reason": "x" * 2001}, 400, "max_length", "reason"),
        ({"reason": "why"}, 400, "unmerge_target", "edge_ids"),
        ({"edge_ids": [1], "identifier_id": 1, "reason": "why"}, 400, "unmerge_target", None),
        ({"edge_ids": [], "reason": "why"}, 400, "empty", "edge_ids"),
        ({"edge_ids": ["x"], "reason": "why"}, 400, "invalid", "edge_ids.0"),
    ],
)
def test_unmerge_input_is_validated(
    graph: Graph,
    api_client: Callable[..., APIClient],
    body: dict[str, Any],
    status: int,
    code: str,
    attr: str | None,
) -> None:
    response = _unmerge(api_client(WRITE), graph.visitor, body)
    assert response.status_code == status
    error = response.json()
    assert error["code"] == code
    if attr is not None:
        assert error["attr"] == attr
    assert not Edge.objects.filter(invalidated_at__isnull=False).exists()


def test_unmerge_domain_errors_follow_the_error_contract(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    client = api_client(WRITE)
    cases: list[tuple[int, dict[str, Any], int, str]] = [
        (graph.visitor, {"edge_ids": [graph.refused + 1000]}, 404, "edge_not_found"),
        (graph.visitor, {"identifier_id": graph.u2}, 404, "identifier_not_found"),
        (graph.user, {"edge_ids": [graph.link]}, 409, "profile_merged"),
        (999999, {"edge_ids": [graph.link]}, 404, "profile_not_found"),
    ]
    for profile_id, body, status, code in cases:
        response = _unmerge(client, profile_id, {**body, "reason": "why"})
        assert (response.status_code, response.json()["code"]) == (status, code), body
        assert set(response.json()) == {"type", "code", "detail", "attr"}
    ok = _unmerge(client, graph.visitor, {"edge_ids": [graph.email_link], "reason": "why"})
    assert ok.status_code == 200
    # The email left with its edge: the invalidated edge is no longer inside the profile.
    gone = _unmerge(client, graph.visitor, {"edge_ids": [graph.email_link], "reason": "why"})
    assert (gone.status_code, gone.json()["code"]) == (404, "edge_not_found")


def test_unmerge_needs_profiles_write(graph: Graph, api_client: Callable[..., APIClient]) -> None:
    body = {"edge_ids": [graph.link], "reason": "why"}
    forbidden = _unmerge(api_client(READ, PII), graph.visitor, body)
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "permission_denied")
    assert _unmerge(APIClient(), graph.visitor, body).status_code == 401
    assert Edge.objects.get(pk=graph.link).invalidated_at is None


# --- merge preview ----------------------------------------------------------------------------
def _preview(client: APIClient, *items: tuple[str, str]) -> Any:
    body = {"identifiers": [{"kind": kind, "value": value} for kind, value in items]}
    return post_json(client, "/v1/profiles/merge-preview", body)


def _snapshot() -> tuple[int, ...]:
    return tuple(
        model.objects.count()
        for model in (Identifier, Edge, Profile, MergeLedgerEntry, TraitObservation, DataKey)
    )


def test_preview_reports_a_conflict_between_two_user_ids(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    before = _snapshot()
    response = _preview(api_client(READ), ("user_id", " u1 "), ("user_id", "u2"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert _snapshot() == before
    assert (body["merges"], body["profiles"], body["survivor_id"], body["hub_index"]) == (
        False,
        [graph.visitor],
        graph.visitor,
        0,
    )
    assert body["refused"] == [
        {
            "index": 1,
            "kind": "user_id",
            "identifier_id": graph.u2,
            "profile_id": graph.other,
            "linked": False,
            "conflict": "limit:user_id",
        }
    ]
    assert body["new_identifiers"] == [] and body["rejected"] == []


def test_preview_of_a_merge_names_the_survivor_and_new_identifiers(
    graph: Graph, source: Any, api_client: Callable[..., APIClient]
) -> None:
    ingest(source.source.pk, message("track", at=9, anonymousId="visitor-2"))
    resolve()
    second = pid("anonymous_id", "visitor-2")
    before = _snapshot()
    response = _preview(
        api_client(READ),
        ("anonymous_id", "visitor-2"),
        ("phone", "+1 415 555 2671"),
        ("email", " ADA@example.com "),
        ("email", "ada@example.com"),
    )
    assert _snapshot() == before
    body = response.json()
    assert body["hub_index"] == 2  # the strongest kind present: email, which exists
    assert (body["merges"], body["profiles"], body["survivor_id"]) == (
        True,
        [graph.visitor, second],
        graph.visitor,
    )
    assert body["new_identifiers"] == [1]
    assert [(i["index"], i["linked"], i["identifier_id"]) for i in body["identifiers"]] == [
        (0, True, _identifier("anonymous_id", "visitor-2")),
        (1, True, None),
        (2, True, graph.email),
        (3, True, graph.email),
    ]
    content = response.content.decode()
    for secret in ("visitor-2", "555", "ada@", "ADA@"):
        assert secret not in content


def test_preview_of_only_new_identifiers_makes_a_new_profile(
    db: None, api_client: Callable[..., APIClient]
) -> None:
    body = _preview(api_client(READ), ("user_id", "fresh"), ("email", "fresh@example.com")).json()
    assert (body["merges"], body["profiles"], body["survivor_id"]) == (False, [], None)
    assert body["new_identifiers"] == [0, 1]


@override_settings(CDP_MERGE_RULES={"MAX_PROFILE_IDENTIFIERS": 3})
def test_preview_reports_the_size_guardrail(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    body = _preview(api_client(READ), ("user_id", "u1"), ("anonymous_id", "one-more")).json()
    assert [(i["index"], i["conflict"]) for i in body["refused"]] == [
        (1, "max_profile_identifiers")
    ]


def test_preview_rejects_unusable_items_one_by_one(
    graph: Graph, api_client: Callable[..., APIClient]
) -> None:
    response = _preview(
        api_client(READ), ("shoe_size", "42"), ("email", "not-an-email"), ("user_id", "u1")
    )
    assert response.status_code == 200
    body = response.json()
    assert [(r["index"], r["code"], r["attr"]) for r in body["rejected"]] == [
        (0, "unknown_kind", "identifiers.0.kind"),
        (1, "unusable_value", "identifiers.1.value"),
    ]
    assert "not-an-email" not in response.content.decode()
    assert [i["index"] for i in body["identifiers"]] == [2]

    none = _preview(api_client(READ), ("shoe_size", "42"), ("email", "undefined"))
    assert none.status_code == 400
    error = none.json()
    assert (error["type"], error["code"]) == ("validation_error", "unknown_kind")
    assert [e["index"] for e in error["errors"]] == [0, 1]


@pytest.mark.parametrize("count", [0, 1, 51])
def test_preview_takes_two_to_fifty_identifiers(
    db: None, api_client: Callable[..., APIClient], count: int
) -> None:
    items = [("user_id", f"u{i}") for i in range(count)]
    response = _preview(api_client(READ), *items)
    assert response.status_code == 400
    assert response.json()["attr"] == "identifiers"


def test_preview_needs_profiles_read(db: None, api_client: Callable[..., APIClient]) -> None:
    items = (("user_id", "a"), ("user_id", "b"))
    assert _preview(api_client("events:read"), *items).status_code == 403
    assert _preview(APIClient(), *items).status_code == 401
