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


def _served_headers(served: Served) -> dict[str, str]:
    return {SERVED_HEADER: str(served.segment.pk)} if served.is_fallback else {}


class SegmentMembersView(APIView):
    required_scopes = {Scope.SEGMENTS_READ}

    @extend_schema(
        operation_id="segments_members_list",
        summary="A segment's members by profile id (cursor-paginated), or as of an instant",
        description=(
            "Each member: profile id, when the stay began, and the profile's traits (name -> "
            "value). Pages go by profile id, ascending: follow `next` until it is null. With "
            f"`as_of`, the people whose stay was open at that instant. {SERVING_NOTE} "
            f"{s.PII_NOTE}"
        ),
        tags=TAGS,
        parameters=[SEGMENT_ID, s.MembersQuerySerializer],
        responses={200: s.MembersPageSerializer, 409: TOO_SMALL, **ERRORS},
    )
    def get(self, request: Request, segment_id: int) -> Response:
        query = s.MembersQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        as_of: datetime | None = data.get("as_of")
        after = _member_position(data["cursor"]) if "cursor" in data else None
        limit: int = data["limit"]
        served = segment_served(selectors.segment_get(segment_id))
        found = selectors.members_page(served, after=after, limit=limit + 1, as_of=as_of)
        page = found[:limit]
        reveal = bool(page) and pii_revealed(
            request,
            target_type="segment",
            target_id=served.segment.pk,
            what="segments_members_list",
        )
        traits = selectors.member_traits_shown(page, reveal_pii=reveal)
        envelope = {
            "next": _next_link(request, [page[-1].profile_id]) if len(found) > limit else None,
            "segment_id": served.requested.pk,
            "served_segment_id": served.segment.pk,
            "fallback": served.is_fallback,
            "as_of": as_of,
        }
        body = {
            **s.MembersEnvelopeSerializer(envelope).data,
            "results": s.member_rows(page, traits),
        }
        return Response(body, headers=_served_headers(served))


# --- cursors: opaque base64 JSON of the last row's position ---------------------------------
MAX_ID = 2**63 - 1


def _cursor_encode(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def _invalid_cursor() -> InvalidInput:
    return InvalidInput("cursor is not one this API issued.", code="invalid_cursor", attr="cursor")


def _cursor_decode(cursor: str) -> list[Any]:
    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        position = None
    if not isinstance(position, list) or not position:
        raise _invalid_cursor()
    return position


def _member_position(cursor: str) -> int:
    position = _cursor_decode(cursor)
    if len(position) != 1 or not _is_id(position[0]):
        raise _invalid_cursor()
    return int(position[0])


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _next_link(request: Request, position: list[Any]) -> str:
    return replace_query_param(request.build_absolute_uri(), "cursor", _cursor_encode(position))


def _change_position(cursor: str) -> tuple[datetime, int, str]:
    position = _cursor_decode(cursor)
    try:
        at, membership_id, change = position
        parsed = (datetime.fromisoformat(at), int(membership_id), str(change))
    except (TypeError, ValueError):
        parsed = None
    if (
        parsed is None
        or not _is_id(parsed[1])
        or parsed[0].tzinfo is None
        or parsed[2] not in (selectors.ENTERED, selectors.EXITED)
    ):
        raise _invalid_cursor()
    return parsed


# --- changes ----------------------------------------------------------------------------------
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
        after = _change_position(data["cursor"]) if "cursor" in data else None
        served = segment_served(selectors.segment_get(segment_id))
        limit: int = data["limit"]
        found = selectors.segment_changes(served, since=data["since"], after=after, limit=limit + 1)
        page = found[:limit]
        next_link = None
        if len(found) > limit:
            at, membership_id, change = page[-1].position
            next_link = _next_link(request, [at.isoformat(), membership_id, change])
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
