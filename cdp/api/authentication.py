"""Authentication for both faces of the API, in one place.

* ``BearerTokenAuthentication``: management API, ``Authorization: Bearer <token>``.
* ``WriteKeyAuthentication``: tracking API, HTTP Basic with the source write key as username
  (what Segment and RudderStack SDKs send), or ``writeKey`` in the JSON body.

Both find the secret by digest and compare digests in constant time. ``request.user`` stays
``None``; ``request.auth`` is the ``ApiToken`` or the ``SourcePrincipal``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from cdp.api import keys
from cdp.api.models import ApiToken
from cdp.api.services import api_token_touch
from cdp.ingestion.selectors import SourcePrincipal, source_for_write_key


class BearerTokenAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[None, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: expected 'Bearer <token>'.")
        try:
            plaintext = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid token.") from exc
        token_digest = keys.digest(plaintext)
        token = ApiToken.objects.filter(digest=token_digest).first()
        if token is None or not keys.same(token_digest, token.digest) or not token.is_active:
            raise AuthenticationFailed("Invalid or revoked token.")
        api_token_touch(token=token)
        return (None, token)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="cdp"'


class WriteKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[None, SourcePrincipal] | None:
        write_key = _basic_username(request) or _body_write_key(request)
        if not write_key:
            raise AuthenticationFailed(
                "Missing write key: send it as the HTTP Basic username or as 'writeKey'."
            )
        principal = source_for_write_key(write_key)
        if principal is None:
            raise AuthenticationFailed("Invalid write key.")
        return (None, principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Basic realm="cdp"'


def _basic_username(request: Request) -> str | None:
    parts = get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationFailed("Malformed HTTP Basic credentials.") from exc
    username, _, _password = decoded.partition(":")
    return username or None


def _body_write_key(request: Request) -> str | None:
    data: Any = request.data
    if isinstance(data, dict):
        value = data.get("writeKey")
        if isinstance(value, str) and value:
            return value
    return None
