from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from cdp.api.errors import InvalidInput


class IdCursorPagination(CursorPagination):
    """Newest first by id; stable under concurrent inserts. ``?limit=`` up to 1,000."""

    ordering = "-id"
    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> Any:
        # DRF answers a cursor it did not issue with 404; it is a bad parameter, so 400.
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise InvalidInput(
                "cursor is not one this API issued.", code="invalid_cursor", attr="cursor"
            ) from None
