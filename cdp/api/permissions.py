"""Scope checks: a view lists ``required_scopes`` (a set, or a dict by HTTP method)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.exceptions import NotAuthenticated, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from cdp.api.models import ApiToken, Scope
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.ingestion.selectors import SourcePrincipal


def required_scopes(view: Any, method: str) -> set[str]:
    scopes = getattr(view, "required_scopes", None)
    if scopes is None:
        # Fail closed: a view that forgot to say what it needs must not accept any token.
        raise ImproperlyConfigured(
            f"{type(view).__name__} uses HasScopes but sets no required_scopes "
            "(use an empty set for a view any token may call)."
        )
    if isinstance(scopes, dict):
        return set(scopes.get(method, set()))
    return set(scopes)


def request_has_scope(request: Request, scope: str) -> bool:
    """Whether the request's API token also holds ``scope``: for views whose output, not their
    access, depends on a scope (``pii:read`` reveals PII values that are otherwise redacted)."""
    token = request.auth
    return isinstance(token, ApiToken) and token.has_scopes({scope})


class HasScopes(BasePermission):
    """The request carries an active API token holding every scope the view requires."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            raise NotAuthenticated("This endpoint needs 'Authorization: Bearer <token>'.")
        required = required_scopes(view, request.method or "GET")
        if not token.has_scopes(required):
            missing = required - set(token.scopes)
            raise PermissionDenied(f"Token lacks scope(s): {', '.join(sorted(missing))}.")
        return True


class IsSource(BasePermission):
    """The request was authenticated by a source write key."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, SourcePrincipal):
            raise NotAuthenticated("This endpoint needs a source write key.")
        return True


ACTOR_MAX_LENGTH = 200


def request_actor(request: Request) -> str:
    """Who an API call acts as, for ledgers and the audit log: ``api:<token name> #<token id>``
    (never the secret)."""
    token = request.auth
    if not isinstance(token, ApiToken):
        raise TypeError("request_actor needs a request authenticated by an API token")
    return f"api:{token.name} #{token.pk}"[:ACTOR_MAX_LENGTH]


def pii_revealed(request: Request, *, target_type: str, target_id: object, what: str) -> bool:
    """Whether this response may show PII values (the token holds ``pii:read``); when it may,
    the reveal is written to the audit log (who, which endpoint, which target; never values)."""
    if not request_has_scope(request, Scope.PII_READ):
        return False
    audit_record(
        actor=request_actor(request),
        action=AuditAction.PII_REVEALED,
        target_type=target_type,
        target_id=target_id,
        details={"endpoint": what},
    )
    return True
