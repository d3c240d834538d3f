"""The review queue API: probabilistic match candidates, approve and reject.

Values are PII: a candidate shows the compared fields of both profiles only to tokens holding
``pii:read`` (else ``"[redacted]"``); the comparison (outcomes, similarities, weights) is no PII.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import NotFound
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import request_actor, request_has_scope
from identity.matching.decisions import (
    MAX_REASON_LENGTH,
    match_candidate_approve,
    match_candidate_reject,
)
from identity.matching.features import FIELDS
from identity.matching.selectors import Side, candidate_sides, match_candidates
from identity.models import MatchCandidate, MatchStatus

TAGS = ["match candidates"]
ERRORS = {
    400: OpenApiResponse(description="Invalid parameters or body (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks a required scope."),
}
CANDIDATE_ID = OpenApiParameter("candidate_id", int, OpenApiParameter.PATH)


class CandidateQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=MatchStatus.choices, required=False)
    min_score = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    max_score = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)


class DecisionInputSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=MAX_REASON_LENGTH
    )


class FieldComparisonSerializer(serializers.Serializer):
    feature = serializers.CharField()
    field = serializers.CharField()
    how = serializers.CharField()
    agrees = serializers.BooleanField(allow_null=True, help_text="null: a side lacks the field.")
    similarity = serializers.FloatField(allow_null=True)
    weight = serializers.FloatField(help_text="Match weight in bits (log2 odds) it contributed.")


class SideSerializer(serializers.Serializer):
    identifier_id = serializers.IntegerField()
    profile_id = serializers.IntegerField(allow_null=True)
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(allow_null=True)
    )


class CandidateOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    score = serializers.FloatField()
    model = serializers.CharField(allow_null=True)
    conflict = serializers.CharField()
    weak_bridge = serializers.BooleanField()
    edge_id = serializers.IntegerField(allow_null=True)
    a = SideSerializer()
    b = SideSerializer()
    comparison = FieldComparisonSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    decided_by = serializers.CharField()
    reason = serializers.CharField()


def _shape(candidate: MatchCandidate, sides: tuple[Side, Side]) -> dict[str, Any]:
    from identity.matching.comparing import FEATURES

    comparison = [
        {
            "feature": f.name,
            "field": f.field,
            "how": f.how,
            "agrees": candidate.comparison.get(f.name, {}).get("agrees"),
            "similarity": candidate.comparison.get(f.name, {}).get("similarity"),
            "weight": candidate.comparison.get(f.name, {}).get("weight", 0.0),
        }
        for f in FEATURES
    ]
    return {
        "id": candidate.pk,
        "status": candidate.status,
        "score": candidate.score,
        "model": None if candidate.model is None else str(candidate.model),
        "conflict": candidate.conflict,
        "weak_bridge": candidate.weak_bridge,
        "edge_id": candidate.edge_id,
        "a": sides[0].__dict__,
        "b": sides[1].__dict__,
        "comparison": comparison,
        "created_at": candidate.created_at,
        "updated_at": candidate.updated_at,
        "decided_at": candidate.decided_at,
        "decided_by": candidate.decided_by,
        "reason": candidate.reason,
    }


def _body(candidates: list[MatchCandidate], request: Request) -> list[dict[str, Any]]:
    sides = candidate_sides(candidates, reveal_pii=request_has_scope(request, Scope.PII_READ))
    return CandidateOutputSerializer([_shape(c, sides[c.pk]) for c in candidates], many=True).data  # type: ignore[return-value]


class MatchCandidateListView(APIView):
    required_scopes = {Scope.PROFILES_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="match_candidates_list",
        summary="The probabilistic match review queue (cursor-paginated, newest first)",
        description=(
            "Pairs of profiles the matcher scored, with both sides' compared fields "
            f"({', '.join(FIELDS)}) side by side and, per feature, whether it agrees, the "
            "similarity behind it and its match weight. Filter by status (pending: the review "
            "queue) and score. Field values only with pii:read, else '[redacted]'."
        ),
        tags=TAGS,
        parameters=[CandidateQuerySerializer],
        responses={200: CandidateOutputSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = CandidateQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = match_candidates(**query.validated_data)
        paginator = self.pagination_class()
        page = list(paginator.paginate_queryset(rows, request, view=self) or [])
        return paginator.get_paginated_response(_body(page, request))


class _DecisionView(APIView):
    required_scopes = {Scope.PROFILES_WRITE}

    def decide(self, request: Request, candidate_id: int, *, approve: bool) -> Response:
        body = DecisionInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        service = match_candidate_approve if approve else match_candidate_reject
        candidate = service(
            candidate_id=candidate_id,
            actor=request_actor(request),
            reason=body.validated_data["reason"],
        )
        found = match_candidates().filter(pk=candidate.pk).first()
        if found is None:  # pragma: no cover - the service just wrote it
            raise NotFound(f"No match candidate {candidate_id}.", code="match_candidate_not_found")
        return Response(_body([found], request)[0])


DECISION_ERRORS = {
    **ERRORS,
    404: OpenApiResponse(description="No such candidate."),
    409: OpenApiResponse(description="Already decided, or the pair already has evidence."),
}


class MatchCandidateApproveView(_DecisionView):
    @extend_schema(
        operation_id="match_candidates_approve",
        summary="Approve a match: add the probabilistic evidence edge and merge",
        description=(
            "Links the two anchor identifiers with a probabilistic edge (score and feature "
            "weights as evidence) and merges the profiles under the merge rules. When a rule "
            "refuses (two user ids, a limit, the size guardrail) the edge is kept unapplied and "
            "the candidate's status is 'conflict'. Undo with POST /v1/profiles/{id}/unmerge."
        ),
        tags=TAGS,
        parameters=[CANDIDATE_ID],
        request=DecisionInputSerializer,
        responses={200: CandidateOutputSerializer, **DECISION_ERRORS},
    )
    def post(self, request: Request, candidate_id: int) -> Response:
        return self.decide(request, candidate_id, approve=True)


class MatchCandidateRejectView(_DecisionView):
    @extend_schema(
        operation_id="match_candidates_reject",
        summary="Reject a match: the pair stays apart until its data changes",
        tags=TAGS,
        parameters=[CANDIDATE_ID],
        request=DecisionInputSerializer,
        responses={200: CandidateOutputSerializer, **DECISION_ERRORS},
    )
    def post(self, request: Request, candidate_id: int) -> Response:
        return self.decide(request, candidate_id, approve=False)
