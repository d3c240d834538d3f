from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_refuse_other_methods_with_the_error_body(client: Any, db: None, path: str) -> None:
    response = client.post(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {
        "type": "client_error",
        "code": "method_not_allowed",
        "detail": "Use GET.",
        "attr": None,
    }


@pytest.mark.parametrize("debug", [True, False])
def test_unknown_api_route_is_json_with_or_without_debug(client: Any, debug: bool) -> None:
    with override_settings(DEBUG=debug):
        response = client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
