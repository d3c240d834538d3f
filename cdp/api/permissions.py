"""Scope checks: a view lists ``required_scopes`` (a set, or a dict by HTTP method)."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from cdp.api.authentication import SourcePrincipal
from cdp.api.models import ApiToken


def required_scopes(view: Any, method: str) -> set[str]:
    scopes = getattr(view, "required_scopes", None)
    if scopes is None:
        return set()
    if isinstance(scopes, dict):
        return set(scopes.get(method, set()))
    return set(scopes)


class HasScopes(BasePermission):
    """The request carries an active API token holding every scope the view requires."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            raise NotAuthenticated("This endpoint needs 'Authorization: Bearer <token>'.")
        missing = required_scopes(view, request.method or "GET") - set(token.scopes)
        if missing:
            raise PermissionDenied(f"Token lacks scope(s): {', '.join(sorted(missing))}.")
        return True


class IsSource(BasePermission):
    """The request was authenticated by a source write key."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, SourcePrincipal):
            raise NotAuthenticated("This endpoint needs a source write key.")
        return True
