"""JSON in and out with orjson; gzip request bodies; a hard size limit checked while reading.

A view may set ``max_body_bytes``; otherwise ``DEFAULT_MAX_BODY_BYTES`` applies. The limit is on
the decompressed body, read incrementally, so neither a large upload nor a gzip bomb is ever held
whole in memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import IO, Any

import orjson
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer

from cdp.api.errors import PayloadTooLarge

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
_CHUNK = 64 * 1024


def read_body(stream: IO[bytes] | None, meta: Mapping[str, Any], limit: int) -> bytes:
    """Read (and gunzip) a request body, failing with 413 as soon as it passes ``limit`` bytes."""
    if stream is None:
        return b""
    encoding = str(meta.get("HTTP_CONTENT_ENCODING", "identity")).strip().lower()
    if encoding not in {"", "identity", "gzip"}:
        raise UnsupportedMediaType(
            encoding, detail=f"Content-Encoding {encoding!r} is not supported."
        )
    gzipped = encoding == "gzip"
    if not gzipped:
        declared = meta.get("CONTENT_LENGTH")
        if declared and str(declared).isdigit() and int(declared) > limit:
            raise _too_large(limit)
    decompressor = zlib.decompressobj(wbits=31) if gzipped else None
    parts: list[bytes] = []
    size = 0
    while chunk := stream.read(_CHUNK):
        if decompressor is not None:
            try:
                chunk = decompressor.decompress(chunk, limit + 1 - size)
            except zlib.error as exc:
                raise ParseError("Request body is not valid gzip.") from exc
            if decompressor.unconsumed_tail:
                raise _too_large(limit)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    if decompressor is not None and not decompressor.eof:
        raise ParseError("Request body is truncated gzip.")
    return b"".join(parts)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than {limit} bytes.", code="body_too_large")


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        context = parser_context or {}
        view = context.get("view")
        request = context.get("request")
        limit = getattr(view, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        meta = request.META if request is not None else {}
        raw = read_body(stream, meta, limit)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"Malformed JSON: {exc.msg} at position {exc.pos}.") from exc


def _default(value: Any) -> Any:
    return str(value)


class ORJSONRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
