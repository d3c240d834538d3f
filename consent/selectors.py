"""Reads of consent: a profile's states and ledger, and activation gating.

Everything that hands people out for a purpose (segment members, exports, webhooks) filters
through ``profiles_allowed`` / ``allowed_q`` / ``allowed_sql``: a profile is allowed when its
state for the purpose is ``granted``, or when it has no state and the purpose is allowed by
default. For channel purposes (``marketing_email`` -> email), ``opted_out_identifiers`` names the
addresses that stay opted out even when the profile is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from consent.models import ConsentEntry, ConsentState
from consent.purposes import GRANTED, purpose_get, purposes
from identity.models import Identifier, Profile

_COLUMN = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


@dataclass(frozen=True)
class PurposeState:
    purpose: str
    status: str
    allowed: bool
    is_default: bool  # no choice recorded: the purpose's default
    given_at: datetime | None
    entry_id: int | None
    opted_out_identifiers: list[int]


def profile_consent(profile_id: int) -> list[PurposeState]:
    """The state of every configured purpose for a (current) profile, in configuration order."""
    states = {state.purpose: state for state in ConsentState.objects.filter(profile_id=profile_id)}
    result = []
    for purpose in purposes().by_name.values():
        state = states.get(purpose.name)
        if state is None:
            result.append(
                PurposeState(
                    purpose=purpose.name,
                    status=purpose.default,
                    allowed=purpose.allowed_by_default,
                    is_default=True,
                    given_at=None,
                    entry_id=None,
                    opted_out_identifiers=[],
                )
            )
        else:
            result.append(
                PurposeState(
                    purpose=purpose.name,
                    status=state.status,
                    allowed=state.status == GRANTED,
                    is_default=False,
                    given_at=state.given_at,
                    entry_id=state.entry_id,
                    opted_out_identifiers=list(state.opted_out_identifiers),
                )
            )
    return result


def profile_consent_ledger(profile_id: int) -> QuerySet[ConsentEntry]:
    """Every entry recorded through the profile's identifiers, newest first."""
    return ConsentEntry.objects.filter(
        identifier_id__in=Identifier.objects.filter(profile_id=profile_id).values("pk")
    ).order_by("-id")


# --- activation gating ------------------------------------------------------------------------
def allowed_q(purpose: str, *, profile_field: str = "pk") -> Q:
    """A filter on any queryset whose ``profile_field`` is a profile id: the rows of people
    allowed for ``purpose``. ``LookupError`` for an unknown purpose (never silently open)."""
    configured = purpose_get(purpose)
    states = ConsentState.objects.filter(profile_id=OuterRef(profile_field), purpose=purpose)
    if configured.allowed_by_default:
        return ~Q(Exists(states.exclude(status=GRANTED)))
    return Q(Exists(states.filter(status=GRANTED)))


def allowed_sql(purpose: str, *, profile_column: str) -> tuple[str, list[Any]]:
    """The same filter as SQL for hand-built queries (the segment compiler): a boolean
    expression over ``profile_column`` (code, never input) and its parameters."""
    if not _COLUMN.fullmatch(profile_column):
        raise ValueError("profile_column must be a column reference like 'p.id'")
    configured = purpose_get(purpose)
    test, status = ("NOT EXISTS", "<>") if configured.allowed_by_default else ("EXISTS", "=")
    sql = (
        f"{test} (SELECT 1 FROM consent_consentstate AS cs "  # noqa: S608 (checked above)
        f"WHERE cs.profile_id = {profile_column} AND cs.purpose = %s AND cs.status {status} %s)"
    )
    return sql, [purpose, GRANTED]


def allowed_status_sql(purpose: str, *, status_column: str) -> tuple[str, list[Any]]:
    """The same rule over a state's status already joined per row (``LEFT JOIN`` of the
    profile's ``consent_consentstate`` row for the purpose: NULL when it has none)."""
    if not _COLUMN.fullmatch(status_column):
        raise ValueError("status_column must be a column reference like 'c.status'")
    if purpose_get(purpose).allowed_by_default:
        return f"({status_column} IS NULL OR {status_column} = %s)", [GRANTED]
    return f"({status_column} = %s)", [GRANTED]


def profiles_allowed(profile_ids: Iterable[int], purpose: str) -> set[int]:
    """Which of these profiles are allowed for ``purpose`` (one query)."""
    ids = set(profile_ids)
    if not ids:
        return set()
    return set(
        Profile.objects.filter(pk__in=ids).filter(allowed_q(purpose)).values_list("pk", flat=True)
    )


def identifiers_opted_out(profile_ids: Iterable[int], purpose: str) -> set[int]:
    """Identifiers of these profiles whose own address-bound opt-out of ``purpose`` stands (an
    unsubscribed email address): a channel export leaves those addresses out."""
    purpose_get(purpose)
    rows = ConsentState.objects.filter(profile_id__in=set(profile_ids), purpose=purpose)
    return {
        identifier_id
        for ids in rows.values_list("opted_out_identifiers", flat=True)
        for identifier_id in ids
    }
