"""The segments API, people: a segment's members (now or as of an instant), its entries and
exits since a time, and a profile's segments.

Members and changes are activation: they are served only for a segment large enough (else its
fallback, said in the body and the ``X-CDP-Served-Segment`` header, else 409
``segment_too_small``) and only for people allowed for its consent purpose
(``segments.activation.serving``). Profile ids are not PII; PII trait values are redacted unless
the token holds pii:read (audited).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import orjson
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from cdp.api.errors import InvalidInput, NotFound
from cdp.api.models import Scope
from cdp.api.pagination import IdCursorPagination
from cdp.api.permissions import pii_revealed
from identity.selectors import profile_current
from segments import selectors
from segments.activation.serving import Served, segment_served
from segments.api import serializers as s
from segments.api.views import ERRORS, SEGMENT_ID, TAGS

SERVED_HEADER = "X-CDP-Served-Segment"
TOO_SMALL = OpenApiResponse(
    description="segment_too_small: fewer members than min_size (or never computed) and no "
    "fallback large enough."
)
SERVING_NOTE = (
    "Only people allowed for the segment's consent purpose are served (and for the fallback's "
    "purpose too when a fallback is served). A segment with fewer members than its min_size, or "
    "never computed, answers 409 segment_too_small, unless it has a fallback: then the first "
    "fallback large enough is served, with `fallback: true`, its id in `served_segment_id` and "
    f"in the {SERVED_HEADER} header."
)


class MemberCursorPagination(IdCursorPagination):
    """By profile id, ascending: a page boundary does not move when people enter or exit."""

    ordering = "profile_id"


def _served_headers(served: Served) -> dict[str, str]:
    return {SERVED_HEADER: str(served.segment.pk)} if served.is_fallback else {}


class SegmentMembersView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}
    pagination_class = MemberCursorPagination

    @extend_schema(
        operation_id="segments_members_list",
        summary="A segment's members by profile id (cursor-paginated), or as of an instant",
        description=(
            "Each member: profile id, when the current stay began, and the profile's traits "
            f"(name -> value). With `as_of`, the people whose stay was open at that instant. "
            f"{SERVING_NOTE} {s.PII_NOTE}"
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID, s.MembersQuerySerializer],
        responses={200: s.MembersPageSerializer, 409: TOO_SMALL, **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        query = s.MembersQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        as_of: datetime | None = query.validated_data.get("as_of")
        served = segment_served(selectors.segment_get(segment_id))
        stays = (
            selectors.members_current(served)
            if as_of is None
            else selectors.members_as_of(served, at=as_of)
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(stays, request, view=self) or []
        reveal = bool(page) and pii_revealed(
            request,
            target_type="segment",
            target_id=served.segment.pk,
            what="segments_members_list",
        )
        traits = selectors.member_traits_shown([stay.profile for stay in page], reveal_pii=reveal)
        rows = [
            {
                "profile_id": stay.profile_id,
                "entered_at": stay.entered_at,
                "traits": traits[stay.profile_id],
            }
            for stay in page
        ]
        body = {
            "next": paginator.get_next_link(),
            "previous": paginator.get_previous_link(),
            "segment_id": served.requested.pk,
            "served_segment_id": served.segment.pk,
            "fallback": served.is_fallback,
            "as_of": as_of,
            "results": rows,
        }
        return Response(s.MembersPageSerializer(body).data, headers=_served_headers(served))


# --- changes ----------------------------------------------------------------------------------
def _cursor_encode(position: tuple[datetime, int, str]) -> str:
    at, membership_id, change = position
    raw = orjson.dumps([at.isoformat(), membership_id, change])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, membership_id, change = orjson.loads(raw)
        position = (datetime.fromisoformat(at), int(membership_id), str(change))
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput(
            "cursor is not one this API issued.", code="invalid_cursor", attr="cursor"
        ) from None
    if position[0].tzinfo is None or position[2] not in (selectors.ENTERED, selectors.EXITED):
        raise InvalidInput(
            "cursor is not one this API issued.", code="invalid_cursor", attr="cursor"
        )
    return position


class SegmentChangesView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_changes_list",
        summary="Who entered and exited a segment after a time, oldest first (cursor-paginated)",
        description=(
            "Every entry (`entered`, at the stay's start) and exit (`exited`, at its end, with "
            "the reason: rule, merged, erased, deleted) strictly after `since`, in time order "
            "(ties: by stay, entry first), so a consumer can page to the end and keep the last "
            "`at` as its next `since`; follow `next` until it is null. People not allowed now "
            f"for the purpose are left out, their exits too. {SERVING_NOTE}"
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID, s.ChangesQuerySerializer],
        responses={200: s.ChangesPageSerializer, 409: TOO_SMALL, **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        query = s.ChangesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        after = _cursor_decode(data["cursor"]) if "cursor" in data else None
        served = segment_served(selectors.segment_get(segment_id))
        limit: int = data["limit"]
        found = selectors.segment_changes(served, since=data["since"], after=after, limit=limit + 1)
        page = found[:limit]
        next_link = None
        if len(found) > limit:
            url = request.build_absolute_uri()
            next_link = replace_query_param(url, "cursor", _cursor_encode(page[-1].position))
        body: dict[str, Any] = {
            "next": next_link,
            "segment_id": served.requested.pk,
            "served_segment_id": served.segment.pk,
            "fallback": served.is_fallback,
            "results": page,
        }
        return Response(s.ChangesPageSerializer(body).data, headers=_served_headers(served))


# --- a profile's segments ---------------------------------------------------------------------
class ProfileSegmentsView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}
    pagination_class = IdCursorPagination

    @extend_schema(
        operation_id="profiles_segments_list",
        summary="A profile's segments: its current stays, or with history=true every stay",
        description=(
            "Newest stay first (cursor-paginated); deleted segments are left out. A merged "
            "profile's id answers for the profile it was merged into."
        ),
        tags=["profiles"],
        parameters=[
            OpenApiParameter("profile_id", int, OpenApiParameter.PATH),
            s.ProfileSegmentsQuerySerializer,
        ],
        responses={
            200: s.ProfileSegmentOutputSerializer(many=True),
            **ERRORS,
            404: OpenApiResponse(description="No such profile."),
        },
    )
    def get(self, request: Request, profile_id: int) -> Response:
        query = s.ProfileSegmentsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        profile = profile_current(profile_id)
        if profile is None:
            raise NotFound(f"No profile {profile_id}.", code="profile_not_found")
        stays = selectors.profile_segments(profile.pk, history=query.validated_data["history"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(stays, request, view=self) or []
        return paginator.get_paginated_response(
            s.ProfileSegmentOutputSerializer(page, many=True).data
        )
