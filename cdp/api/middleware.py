"""Probes answered before anything else runs, host validation included.

Load balancers and the kubelet call ``/healthz`` and ``/readyz`` with whatever Host header they
like (a pod IP, say), which ``ALLOWED_HOSTS`` would refuse with a 400 before a view runs. The
probes reveal nothing, so they are served here, first in the middleware chain.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from cdp.api.views import healthz, readyz

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        return self.get_response(request)
