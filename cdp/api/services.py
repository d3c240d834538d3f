from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from cdp.api import keys
from cdp.api.errors import InvalidInput
from cdp.api.models import ApiToken, Scope
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record

TOKEN_KIND = "cdp"  # noqa: S105  (the prefix of generated tokens, not a secret)


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    plaintext: str


@transaction.atomic
def api_token_create(*, name: str, scopes: Iterable[str], actor: str = "system") -> IssuedToken:
    """Create a bearer token; the plaintext is returned once and never stored. Audited (name
    and scopes, never the secret)."""
    wanted = sorted(set(scopes))
    unknown = [scope for scope in wanted if scope not in Scope.values]
    if unknown:
        raise InvalidInput(
            f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(Scope.values)}.",
            code="unknown_scope",
            attr="scopes",
        )
    if not wanted:
        raise InvalidInput("A token needs at least one scope.", code="no_scope", attr="scopes")
    if not name.strip():
        raise InvalidInput("A token needs a name.", code="blank", attr="name")
    secret = keys.new_secret(TOKEN_KIND)
    token = ApiToken.objects.create(
        name=name.strip(), display_prefix=secret.display_prefix, digest=secret.digest, scopes=wanted
    )
    audit_record(
        actor=actor,
        action=AuditAction.TOKEN_CREATED,
        target_type="api_token",
        target_id=token.pk,
        details={"name": token.name, "scopes": wanted},
    )
    return IssuedToken(token=token, plaintext=secret.plaintext)


LAST_USED_RESOLUTION_SECONDS = 60


def api_token_touch(*, token: ApiToken) -> ApiToken:
    """Record that the token was used, at most once a minute (no write on every request)."""
    now = timezone.now()
    last = token.last_used_at
    if last is None or (now - last).total_seconds() > LAST_USED_RESOLUTION_SECONDS:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: str = "system") -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action=AuditAction.TOKEN_REVOKED,
            target_type="api_token",
            target_id=token.pk,
            details={"name": token.name},
        )
    return token
