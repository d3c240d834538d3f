"""Liveness and readiness probes (no authentication, no details that help an attacker)."""

from __future__ import annotations

from django.db import connection
from django.db.utils import DatabaseError
from django.http import HttpRequest, JsonResponse

from cdp.api.errors import CLIENT_ERROR, error_body

_PROBE_METHODS = ("GET", "HEAD")


def _method_not_allowed() -> JsonResponse:
    response = JsonResponse(
        error_body(type=CLIENT_ERROR, code="method_not_allowed", detail="Use GET."), status=405
    )
    response["Allow"] = ", ".join(_PROBE_METHODS)
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    if request.method not in _PROBE_METHODS:
        return _method_not_allowed()
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    if request.method not in _PROBE_METHODS:
        return _method_not_allowed()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse({"status": "ok", "database": "up"})
