"""The profile API: profiles, their identifiers, events, evidence graph and merge ledger, unmerge
and merge preview. Reads go through ``identity.selectors``, writes through services.

Identifier values are PII: the only ones a request carries are the lookup's query parameter and
the merge preview's body, and no response, error message or log line repeats them. Every read
of a merged profile's id answers for its survivor.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import InvalidInput, NotFound
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import pii_revealed, request_actor
from cdp.ingestion.api.serializers import EventOutputSerializer
from cdp.ingestion.pii import REDACTED, events_show_pii
from identity import selectors
from identity.api import serializers as s
from identity.kinds import IdentifierKind, external_value
from identity.models import Profile
from identity.services.unmerge import profile_unmerge

TAGS = ["profiles"]
ERRORS = {
    400: OpenApiResponse(description="Invalid parameters or body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
    404: OpenApiResponse(description="No such profile (merged ids answer for their survivor)."),
}
MERGED_NOTE = (
    "A merged profile's id answers with its survivor: `id` is the survivor's, `requested_id` the "
    "id asked for and `merged_into` the survivor's id."
)
PROFILE_ID = OpenApiParameter(
    "profile_id",
    int,
    OpenApiParameter.PATH,
    description="A profile id; a merged one stands for the profile it was merged into.",
)


def _reveal(request: Request, profile_id: int, what: str) -> bool:
    return pii_revealed(request, target_type="profile", target_id=profile_id, what=what)


def _current(profile_id: int) -> Profile:
    profile = selectors.profile_current(profile_id)
    if profile is None:
        raise NotFound(f"No profile {profile_id}.", code="profile_not_found")
    return profile


def _profile_body(profile_id: int, request: Request) -> Response:
    read = selectors.profile_read(
        profile_id, reveal_pii=_reveal(request, profile_id, "profiles_retrieve")
    )
    if read is None:
        raise NotFound(f"No profile {profile_id}.", code="profile_not_found")
    return Response(s.ProfileOutputSerializer(read).data)


class _ProfileReadView(APIView):
    required_scopes = {Scope.PROFILES_READ}


class ProfileLookupView(_ProfileReadView):
    @extend_schema(
        operation_id="profiles_lookup",
        summary="The profile of one identifier",
        description=(
            "Give exactly one of email, phone, user_id, anonymous_id, or external_id with source. "
            "The value is normalized the way the resolver normalizes it (' Ada@Example.COM ' "
            "finds ada@example.com). Answers with the profile itself (200, no redirect), the "
            f"same body as GET /v1/profiles/{{id}}. {s.PII_NOTE}"
        ),
        tags=TAGS,
        parameters=[s.LookupQuerySerializer],
        responses={200: s.ProfileOutputSerializer, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        return self._lookup(request, request.query_params)

    @extend_schema(
        operation_id="profiles_lookup_by_body",
        summary="The profile of one identifier, given in the body",
        description=(
            "The same lookup as GET, with the identifier in a JSON body instead of the query "
            "string, so the value (an email, a phone number) never appears in a URL, an access "
            f"log or a proxy's log. {s.PII_NOTE}"
        ),
        tags=TAGS,
        request=s.LookupQuerySerializer,
        responses={200: s.ProfileOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        return self._lookup(request, request.data)

    def _lookup(self, request: Request, data: Any) -> Response:
        query = s.LookupQuerySerializer(data=data)
        query.is_valid(raise_exception=True)
        kind, raw = lookup_identifier(query.validated_data)
        identifier = selectors.identifier_find(kind=kind, raw_value=raw)
        if identifier is None or identifier.profile_id is None:
            raise NotFound("No profile has this identifier.", code="profile_not_found")
        return _profile_body(identifier.profile_id, request)


def lookup_identifier(data: dict[str, Any]) -> tuple[str, str]:
    """The (kind, raw value) a validated ``LookupQuerySerializer`` names (also used by the
    privacy API)."""
    if "external_id" not in data:
        (name,) = (name for name in s.LOOKUP_KINDS if name in data)
        return name, data[name]
    try:
        value = external_value(source=data["source"], external_id=data["external_id"])
    except ValueError:
        raise InvalidInput(
            "source must be a source name (no ':' or whitespace).", attr="source"
        ) from None
    return IdentifierKind.EXTERNAL, value


class ProfileDetailView(_ProfileReadView):
    @extend_schema(
        operation_id="profiles_retrieve",
        summary="A profile: counters, traits with provenance, identifiers by kind",
        description=f"{MERGED_NOTE} {s.PII_NOTE}",
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: s.ProfileOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        return _profile_body(profile_id, request)


class ProfileIdentifiersView(_ProfileReadView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="profiles_identifiers_list",
        summary="A profile's identifiers, newest first (cursor-paginated)",
        description=f"{s.PII_NOTE} A merged profile's id lists its survivor's identifiers.",
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: s.IdentifierOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        profile = _current(profile_id)
        reveal = _reveal(request, profile.pk, "profiles_identifiers_list")
        identifiers = selectors.profile_identifiers(profile.pk, with_values=reveal)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(identifiers, request, view=self) or []
        values = selectors.identifier_values_shown(page, reveal_pii=reveal)
        rows = [
            {
                "id": row.pk,
                "kind": row.kind,
                "value": values[row.pk],
                "first_seen_at": row.first_seen_at,
                "last_seen_at": row.last_seen_at,
                "event_count": row.event_count,
                "first_event_at": row.first_event_at,
                "last_event_at": row.last_event_at,
            }
            for row in page
        ]
        return paginator.get_paginated_response(s.IdentifierOutputSerializer(rows, many=True).data)


class ProfileEventsView(APIView):
    required_scopes = {Scope.PROFILES_READ, Scope.EVENTS_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="profiles_events_list",
        summary="The events of a profile's identifiers, newest first (cursor-paginated)",
        description=(
            "Needs profiles:read and events:read. The same event body as GET /v1/events; PII "
            "values in traits and context are shown only to tokens that also hold pii:read, "
            f"otherwise each is present with the value {REDACTED!r}."
        ),
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: EventOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        profile = _current(profile_id)
        events = selectors.profile_events(profile.pk)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(events, request, view=self) or []
        events_show_pii(page, reveal=_reveal(request, profile.pk, "profiles_events_list"))
        return paginator.get_paginated_response(EventOutputSerializer(page, many=True).data)


class ProfileGraphView(_ProfileReadView):
    @extend_schema(
        operation_id="profiles_graph",
        summary="A profile's identity graph: identifiers and the evidence edges touching them",
        description=(
            f"At most {selectors.GRAPH_MAX_NODES} identifiers and {selectors.GRAPH_MAX_EDGES} "
            "edges (the first by id; `truncated` says when there were more). Edges include "
            "refused (applied=false) and invalidated ones; an edge whose other end is in another "
            "profile names it in other_profile_id. With from and to (identifier ids in this "
            "profile), `path` is the shortest chain of valid applied edges between them, and "
            f"404 (no_evidence_path) when there is none. {s.PII_NOTE}"
        ),
        tags=TAGS,
        parameters=[PROFILE_ID, s.PathQuerySerializer],
        responses={200: s.GraphOutputSerializer, **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        query = s.PathQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        profile = _current(profile_id)
        graph = selectors.profile_graph(
            profile.pk, reveal_pii=_reveal(request, profile.pk, "profiles_graph")
        )
        body = s.GraphOutputSerializer(graph).data
        if "from" in query.validated_data:
            path = _path(graph, query.validated_data["from"], query.validated_data["to"])
            body["path"] = s.EvidencePathSerializer(path).data
        return Response(body)


def _path(graph: selectors.ProfileGraph, source: int, target: int) -> selectors.EvidencePath:
    nodes = {node.id for node in graph.nodes}
    for attr, identifier_id in (("from", source), ("to", target)):
        if identifier_id not in nodes:
            raise NotFound(
                f"Identifier {identifier_id} is not in this profile.",
                code="identifier_not_found",
                attr=attr,
            )
    path = selectors.evidence_path(graph, source=source, target=target)
    if path is None:
        raise NotFound(
            f"No valid evidence connects identifiers {source} and {target}.",
            code="no_evidence_path",
        )
    return path


class ProfileMergesView(_ProfileReadView):
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="profiles_merges_list",
        summary="The merge ledger entries naming a profile, newest first (cursor-paginated)",
        description=(
            "Merges, unmerges, refused merges (conflict) and guardrail hits where the profile is "
            "`profile` or `other_profile`."
        ),
        tags=TAGS,
        parameters=[PROFILE_ID],
        responses={200: s.LedgerEntryOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request, profile_id: int) -> Response:
        profile = _current(profile_id)
        entries = selectors.profile_merge_ledger(profile.pk)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(entries, request, view=self) or []
        return paginator.get_paginated_response(s.LedgerEntryOutputSerializer(page, many=True).data)


class ProfileUnmergeView(APIView):
    required_scopes = {Scope.PROFILES_WRITE}

    @extend_schema(
        operation_id="profiles_unmerge",
        summary="Undo a merge: invalidate evidence and split the profile where it falls apart",
        description=(
            "Name the evidence: edge_ids (edges inside the profile) or identifier_id (detach it: "
            "every valid edge of it). The side holding the profile's oldest identifier keeps the "
            "id; each other side gets its earlier profile id back, or a new one. Recorded in the "
            "merge ledger with actor 'api:<token name> #<token id>' and the reason. The id must "
            "be the live profile's (409 profile_merged for a merged id)."
        ),
        tags=TAGS,
        parameters=[PROFILE_ID],
        request=s.UnmergeInputSerializer,
        responses={
            200: s.UnmergeOutputSerializer,
            **ERRORS,
            404: OpenApiResponse(description="No such profile, or edge/identifier not in it."),
            409: OpenApiResponse(description="Edge already invalidated, or profile merged."),
        },
    )
    def post(self, request: Request, profile_id: int) -> Response:
        body = s.UnmergeInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = profile_unmerge(
            profile_id=profile_id,
            actor=request_actor(request),
            reason=data["reason"],
            edge_ids=data.get("edge_ids", ()),
            identifier_id=data.get("identifier_id"),
        )
        return Response(s.UnmergeOutputSerializer(result).data)


class MergePreviewView(_ProfileReadView):
    @extend_schema(
        operation_id="profiles_merge_preview",
        summary="What linking these identifiers would do, without writing anything",
        description=(
            "Normalizes each identifier, finds the existing ones and decides, as the resolver "
            "would for one piece of evidence linking them all (a star from the strongest kind), "
            "which profiles would merge (the oldest survives), which identifiers would be new "
            "and which links a merge rule would refuse. Items that are not usable identifiers "
            "are listed in `rejected` (400 when every item is). Values are never echoed."
        ),
        tags=TAGS,
        request=s.MergePreviewInputSerializer,
        responses={200: s.MergePreviewOutputSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = s.MergePreviewInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        items = body.validated_data["identifiers"]
        preview = selectors.merge_preview(
            identifiers=[(item["kind"], item["value"]) for item in items]
        )
        if not preview.items:
            raise InvalidInput(
                "None of the identifiers is usable.",
                code=preview.rejected[0].code,
                attr=preview.rejected[0].attr,
                errors=[
                    {"index": r.index, "attr": r.attr, "code": r.code, "detail": r.detail}
                    for r in preview.rejected
                ],
            )
        return Response(s.MergePreviewOutputSerializer(preview).data)
