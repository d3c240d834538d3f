"""The segments API, statistics: does a segment do an event more (or less) than everyone else?
The counting and the test are ``segments.stats``."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import Conflict
from cdp.api.models import Scope
from segments import selectors
from segments.api import serializers as s
from segments.api.views import ERRORS, SEGMENT_ID, TAGS
from segments.stats import segment_event_stats


class SegmentStatsView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_stats",
        summary="Members against everyone else: did they do an event? (chi-square test)",
        description=(
            "A 2x2 table: the segment's current members and every other current profile, each "
            "split by whether they did `event` at least once within `window` before now "
            "(counted in one SQL query). `rate` is the conversion rate (did / total). `test` is "
            "Pearson's chi-square test of independence with Yates' continuity correction "
            "(scipy.stats.chi2_contingency): a small `p_value` says the segment's rate differs "
            "from the rest's beyond chance. When an expected count is under 5 the approximation "
            "is unreliable: `note` says so and `fisher_p_value` gives Fisher's exact test. With "
            "an empty row or column there is no test (p_value null, note set). Consent does not "
            "filter these aggregate counts; a too-small segment answers 409 segment_too_small "
            "(small groups' statistics would single people out; no fallback here)."
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID, s.StatsQuerySerializer],
        responses={
            200: s.StatsOutputSerializer,
            409: OpenApiResponse(description="segment_too_small"),
            503: OpenApiResponse(
                description="stats_timeout: counting took longer than "
                "CDP_SEGMENTS_STATS_TIMEOUT_MS (default 30 s)."
            ),
            **ERRORS,
        },
    )
    def get(self, request: Request, segment_id: int) -> Response:
        query = s.StatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        segment = selectors.segment_get(segment_id)
        if segment.too_small:
            raise Conflict(
                f"Segment {segment.pk} has fewer members than its minimum size "
                f"({segment.min_size}) or was not computed yet: no statistics.",
                code="segment_too_small",
            )
        stats = segment_event_stats(
            segment_id=segment.pk,
            event=query.validated_data["event"],
            window=query.validated_data["window"],
            now=timezone.now(),
        )
        return Response(s.StatsOutputSerializer(stats).data)
