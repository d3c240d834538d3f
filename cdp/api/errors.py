"""The one error contract: every error body is ``{"type", "code", "detail", "attr"}``.

Domain code raises ``ApplicationError`` subclasses; ``exception_handler`` (wired into DRF) maps
them and DRF's own exceptions to that body and a status code. Per-item errors (a batch in which
some events are invalid) travel in an extra ``errors`` list of the same shape plus ``index``.
"""

from __future__ import annotations

import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response

CLIENT_ERROR = "client_error"
VALIDATION_ERROR = "validation_error"
SERVER_ERROR = "server_error"


class ApplicationError(Exception):
    """Base of every domain error; subclasses set the status, type and default code."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    type = CLIENT_ERROR
    default_code = "invalid"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        attr: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.attr = attr
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body = error_body(type=self.type, code=self.code, detail=self.detail, attr=self.attr)
        if self.errors is not None:
            body["errors"] = self.errors
        return body


class InvalidInput(ApplicationError):
    type = VALIDATION_ERROR
    default_code = "invalid"


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    default_code = "not_found"


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


def error_body(*, type: str, code: str, detail: str, attr: str | None = None) -> dict[str, Any]:
    return {"type": type, "code": code, "detail": detail, "attr": attr}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        return Response(exc.body(), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if not isinstance(exc, drf_exceptions.APIException):
        return None  # unexpected: Django's 500 handler answers (see server_error below)

    headers: dict[str, str] = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    wait = getattr(exc, "wait", None) if isinstance(exc, drf_exceptions.Throttled) else None
    if wait is not None:
        headers["Retry-After"] = str(max(1, math.ceil(wait)))

    if isinstance(exc, drf_exceptions.ValidationError):
        errors = _flatten(exc.detail)
        first: dict[str, Any] = (
            errors[0] if errors else {"code": "invalid", "detail": "Invalid input.", "attr": None}
        )
        body = error_body(
            type=VALIDATION_ERROR,
            code=str(first["code"]),
            detail=str(first["detail"]),
            attr=first["attr"],
        )
        if len(errors) > 1:
            body["errors"] = errors
        return Response(body, status=exc.status_code, headers=headers)

    detail: Any = exc.detail
    code: Any = exc.get_codes()
    body = error_body(
        type=SERVER_ERROR if exc.status_code >= 500 else CLIENT_ERROR,
        code=code if isinstance(code, str) else str(exc.default_code),
        detail=str(exc.default_detail if isinstance(detail, (dict, list)) else detail),
    )
    return Response(body, status=exc.status_code, headers=headers)


def _flatten(detail: Any, path: str | None = None) -> list[dict[str, Any]]:
    """Turn DRF's nested error structure into a flat list with dotted ``attr`` paths."""
    if isinstance(detail, dict):
        out: list[dict[str, Any]] = []
        for key, value in detail.items():
            attr = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            out.extend(_flatten(value, attr))
        return out
    if isinstance(detail, list):
        out = []
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                out.extend(_flatten(item, f"{path}.{index}" if path else str(index)))
            else:
                out.extend(_flatten(item, path))
        return out
    return [{"code": getattr(detail, "code", "invalid"), "detail": str(detail), "attr": path}]


def server_error(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """handler500: the same body for unexpected failures; the traceback goes to the log only."""
    return JsonResponse(
        error_body(type=SERVER_ERROR, code="error", detail="Internal server error."), status=500
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """handler404 for URLs that match no route."""
    return JsonResponse(
        error_body(type=CLIENT_ERROR, code="not_found", detail="Not found."), status=404
    )
