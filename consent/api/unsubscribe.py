"""Unsubscribe links: minting them for the operator's email tool (bearer token), and the pages
the links open (no login: the signed token is the authority).

``GET /v1/unsubscribe/{token}`` changes nothing: it shows a confirmation page whose button
POSTs back (link scanners and prefetchers open links; they must not unsubscribe anyone).
``POST /v1/unsubscribe/{token}`` unsubscribes, from the page's form or as the RFC 8058 one-click
POST a mail provider sends (``List-Unsubscribe=One-Click``, no cookies). Both are CSRF-exempt
(no session authenticates them), rate limited per client and per link, and answer an invalid,
expired or erased link identically. Browsers (``Accept: text/html``) get pages, everyone else the
JSON error contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.template import loader
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotAcceptable, ParseError, UnsupportedMediaType
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cdp.api.errors import ApplicationError, NotFound
from cdp.api.models import Scope
from cdp.api.parsers import ORJSONRenderer
from cdp.api.permissions import request_actor
from cdp.api.throttling import UnsubscribeClientThrottle, UnsubscribeLinkThrottle
from consent.opt_out import (
    MAX_LINKS_PER_CALL,
    UnsubscribeLink,
    link_purpose,
    unsubscribe_apply,
    unsubscribe_links_create,
)
from consent.unsubscribe import unsubscribe_subject
from identity.api.serializers import LookupQuerySerializer
from identity.api.views import lookup_identifier
from identity.selectors import identifiers_find

TAGS = ["unsubscribe"]
NOT_FOUND = "No identifier has this value."
# A subject page: nothing external, nothing cached, nothing indexed, no referrer to leak the
# token to a site the page links to, no framing.
PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CONFIRM_TEMPLATE = "consent/unsubscribe/confirm.html"
DONE_TEMPLATE = "consent/unsubscribe/done.html"
PROBLEM_TEMPLATE = "consent/unsubscribe/problem.html"
TOKEN = OpenApiParameter(
    "token", str, OpenApiParameter.PATH, description="The signed token of an unsubscribe link."
)


# --- serializers ------------------------------------------------------------------------------
class LinkInputSerializer(LookupQuerySerializer):
    """One identifier, as in the profile lookup, and what to unsubscribe it from."""

    purpose = serializers.CharField(
        required=False,
        max_length=64,
        help_text=(
            "Default: the purpose whose channel is the identifier's kind (email -> "
            "marketing_email). Required for kinds no purpose names as its channel."
        ),
    )


class LinkBatchInputSerializer(serializers.Serializer):
    identifiers = serializers.ListField(
        child=LinkInputSerializer(), allow_empty=False, max_length=MAX_LINKS_PER_CALL
    )


class LinkOutputSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="For List-Unsubscribe and the message's footer.")
    expires_at = serializers.DateTimeField()
    purpose = serializers.CharField()
    identifier_id = serializers.IntegerField()


class LinkBatchItemSerializer(LinkOutputSerializer):
    index = serializers.IntegerField(help_text="Position in the request's identifiers.")


class LinkErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    type = serializers.CharField()
    code = serializers.CharField()
    detail = serializers.CharField()
    attr = serializers.CharField(allow_null=True)


class LinkBatchOutputSerializer(serializers.Serializer):
    links = LinkBatchItemSerializer(many=True)
    rejected = LinkErrorSerializer(many=True, help_text="Identifiers no link was minted for.")


class OneClickInputSerializer(serializers.Serializer):
    # The RFC 8058 body's field name is not a Python identifier.
    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "List-Unsubscribe": serializers.CharField(
                required=False,
                help_text="'One-Click' in a mail provider's POST; absent from the page's form.",
            )
        }


class UnsubscribedOutputSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="Always 'unsubscribed' (also for a repeated POST).")
    purpose = serializers.CharField()


# --- minting ----------------------------------------------------------------------------------
MINT_ERRORS = {
    400: OpenApiResponse(description="Invalid body, unknown purpose (error contract)."),
    401: OpenApiResponse(description="Missing or invalid bearer token."),
    403: OpenApiResponse(description="The token lacks profiles:write."),
}


def _link_body(link: UnsubscribeLink) -> dict[str, Any]:
    return {
        "url": link.url,
        "expires_at": link.expires_at,
        "purpose": link.purpose,
        "identifier_id": link.identifier_id,
    }


class UnsubscribeLinkCreateView(APIView):
    required_scopes = {Scope.PROFILES_WRITE}

    @extend_schema(
        operation_id="unsubscribe_links_create",
        summary="Mint a signed unsubscribe link for one identifier",
        description=(
            "For the email tool: put the URL in the message's footer and in its List-Unsubscribe "
            "header, with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058). The "
            "link names the identifier by id (never its address), is signed, and works until "
            "`expires_at` (CDP_UNSUBSCRIBE_MAX_AGE_DAYS). Minting writes only an audit entry."
        ),
        tags=TAGS,
        request=LinkInputSerializer,
        responses={
            201: LinkOutputSerializer,
            **MINT_ERRORS,
            404: OpenApiResponse(description="No identifier has this value."),
        },
    )
    def post(self, request: Request) -> Response:
        body = LinkInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        kind, raw = lookup_identifier(body.validated_data)
        (identifier,) = identifiers_find([(kind, raw)])
        if identifier is None:
            raise NotFound(NOT_FOUND, code="identifier_not_found")
        purpose = link_purpose(kind=kind, purpose=body.validated_data.get("purpose"))
        (link,) = unsubscribe_links_create(
            subjects=[(identifier.pk, purpose)], actor=request_actor(request)
        )
        return Response(LinkOutputSerializer(_link_body(link)).data, status=201)


class UnsubscribeLinkBatchView(APIView):
    required_scopes = {Scope.PROFILES_WRITE}

    @extend_schema(
        operation_id="unsubscribe_links_batch",
        summary=f"Mint unsubscribe links for up to {MAX_LINKS_PER_CALL} identifiers",
        description=(
            "The same links as POST /v1/unsubscribe-links, for a mailing. Identifiers are found "
            "in one query; those that are unknown, or have no default purpose, are listed in "
            "`rejected` by index (values are never echoed) and the others get their link."
        ),
        tags=TAGS,
        request=LinkBatchInputSerializer,
        responses={200: LinkBatchOutputSerializer, **MINT_ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = LinkBatchInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        items = body.validated_data["identifiers"]
        wanted = [lookup_identifier(item) for item in items]
        found = identifiers_find(wanted)
        subjects: list[tuple[int, str]] = []
        indexes: list[int] = []
        rejected: list[dict[str, Any]] = []
        for index, (item, (kind, _), identifier) in enumerate(
            zip(items, wanted, found, strict=True)
        ):
            try:
                if identifier is None:
                    raise NotFound(NOT_FOUND, code="identifier_not_found")
                purpose = link_purpose(kind=kind, purpose=item.get("purpose"))
            except ApplicationError as error:
                rejected.append({"index": index, **error.body()})
                continue
            subjects.append((identifier.pk, purpose))
            indexes.append(index)
        links = unsubscribe_links_create(subjects=subjects, actor=request_actor(request))
        return Response(
            LinkBatchOutputSerializer(
                {
                    "links": [
                        {"index": index, **_link_body(link)}
                        for index, link in zip(indexes, links, strict=True)
                    ],
                    "rejected": rejected,
                }
            ).data
        )


# --- the pages --------------------------------------------------------------------------------
class PageRenderer(TemplateHTMLRenderer):
    """The subject pages for browsers; errors (invalid link, rate limit) get the problem page."""

    def get_exception_template(self, response: Response) -> Any:
        return loader.get_template(PROBLEM_TEMPLATE)

    def get_template_context(self, data: Any, renderer_context: Mapping[str, Any]) -> Any:
        context = dict(data) if isinstance(data, Mapping) else {}
        response = renderer_context["response"]
        context["throttled"] = response.status_code == 429
        return context


class JsonUnlessHtml(DefaultContentNegotiation):
    """HTML for browsers, JSON for everyone else: a mail provider's one-click POST is never
    refused for the Accept header it happens to send."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        offered = list(renderers)
        try:
            return super().select_renderer(request, offered, format_suffix)
        except NotAcceptable:
            return offered[0], offered[0].media_type


def _purpose_label(purpose: str) -> str:
    return purpose.replace("_", " ")


class UnsubscribePageView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [UnsubscribeClientThrottle, UnsubscribeLinkThrottle]
    parser_classes = [FormParser, MultiPartParser]
    renderer_classes = [ORJSONRenderer, PageRenderer]
    content_negotiation_class = JsonUnlessHtml

    @extend_schema(
        operation_id="unsubscribe_page",
        summary="The confirmation page of an unsubscribe link (HTML; changes nothing)",
        description=(
            "No authentication: the signed token is the authority. Shows the address masked "
            "(a***@example.com) and a button that POSTs back. An invalid, forged, expired or "
            "erased link answers 400 with an explanatory page (or the JSON error body, "
            "code unsubscribe_link_invalid, for clients that do not accept text/html)."
        ),
        tags=TAGS,
        auth=[],
        parameters=[TOKEN],
        responses={
            (200, "text/html"): OpenApiResponse(description="The confirmation page."),
            400: OpenApiResponse(description="Invalid or expired link (all alike)."),
            429: OpenApiResponse(description="Rate limited; Retry-After says when to retry."),
        },
    )
    def get(self, request: Request, token: str) -> Response:
        subject = unsubscribe_subject(token)
        context = {
            "purpose": subject.claim.purpose,
            "purpose_label": _purpose_label(subject.claim.purpose),
            "address": subject.masked_address,
            "expires_at": subject.claim.expires_at,
        }
        return Response(context, template_name=CONFIRM_TEMPLATE)

    @extend_schema(
        operation_id="unsubscribe",
        summary="Unsubscribe: the page's button, or an RFC 8058 one-click POST",
        description=(
            "Records the opt-out of the link's purpose for the address it names, bound to that "
            "address (no later grant through another identifier lifts it). No authentication, "
            "no cookies, no CSRF token: the signed token is the authority. Idempotent: a repeat "
            "answers the same and records nothing. Browsers get a confirmation page, other "
            "clients JSON; invalid or expired links answer as for GET."
        ),
        tags=TAGS,
        auth=[],
        parameters=[TOKEN],
        request={"application/x-www-form-urlencoded": OneClickInputSerializer},
        responses={
            200: UnsubscribedOutputSerializer,
            400: OpenApiResponse(description="Invalid or expired link (all alike)."),
            429: OpenApiResponse(description="Rate limited; Retry-After says when to retry."),
        },
        examples=[
            OpenApiExample(
                "One-click",
                value={"List-Unsubscribe": "One-Click"},
                request_only=True,
                media_type="application/x-www-form-urlencoded",
            )
        ],
    )
    def post(self, request: Request, token: str) -> Response:
        done = unsubscribe_apply(
            token=token,
            one_click=_one_click(request),
            ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        body = UnsubscribedOutputSerializer({"status": "unsubscribed", "purpose": done.purpose})
        # The page says the purpose in words; the JSON gives its name.
        page = {**body.data, "purpose_label": _purpose_label(done.purpose)}
        html = isinstance(request.accepted_renderer, PageRenderer)
        return Response(page if html else body.data, template_name=DONE_TEMPLATE)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in PAGE_HEADERS.items():
            response[name] = value
        if isinstance(getattr(request, "accepted_renderer", None), PageRenderer):
            response["Content-Security-Policy"] = PAGE_CSP
        return response


def _one_click(request: Request) -> bool:
    try:
        data = request.data
    except (ParseError, UnsupportedMediaType):
        return False  # any POST unsubscribes; the body only says who sent it
    return isinstance(data, Mapping) and data.get("List-Unsubscribe") == "One-Click"
