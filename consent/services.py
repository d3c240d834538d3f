"""Writes of consent: ledger entries and the derived per-profile state.

Entries are appended by three writers: the resolver (choices in tracked calls, inside its own
locked batch), ``consent_record`` (the API, unsubscribe links and opt-outs) and nothing else.
Each writer then recomputes the state of the profiles whose entries or identifiers changed,
under the profiles' locks (``identity.merging``'s protocol), so a state is never derived from a
membership that a concurrent merge is changing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from cdp.api.errors import InvalidInput, NotFound
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from cdp.crypto.blind_index import keyed_digest
from cdp.ops.bulk import bound_cursor, rows_insert
from consent.derivation import Choice, derive
from consent.models import ConsentChannel, ConsentEntry, ConsentState, ConsentStatus, LegalBasis
from consent.purposes import purposes
from identity.merging import LockRace, components_lock, profile_changes_mark
from identity.models import Identifier

logger = logging.getLogger(__name__)

MAX_LOCK_ATTEMPTS = 8
IP_DIGEST_PURPOSE = "consent-ip"
# Channels whose statements repeat the current state on every call.
RESENT_CHANNELS = frozenset({ConsentChannel.EVENT, ConsentChannel.GPC})
USER_AGENT_MAX = ConsentEntry._meta.get_field("proof_user_agent").max_length or 500


@dataclass(frozen=True, slots=True)
class ChoiceInput:
    """One choice to record for one identifier."""

    purpose: str
    status: str
    channel: str
    legal_basis: str = LegalBasis.CONSENT
    source_id: int | None = None
    provider: str = ""
    policy_version: str = ""
    ip: str | None = None  # hashed before it is stored
    user_agent: str = ""
    event_id: int | None = None
    address_bound: bool = False
    given_at: datetime | None = None  # None: now


@dataclass
class ConsentRecorded:
    profile_id: int | None
    entries: list[ConsentEntry] = field(default_factory=list)


def choice_validate(choice: ChoiceInput) -> None:
    """Refuse an unknown purpose, status, channel or legal basis (an ``InvalidInput`` naming
    the field)."""
    if purposes().get(choice.purpose) is None:
        raise InvalidInput(
            f"Unknown purpose {choice.purpose!r}; known: {', '.join(purposes().names)}.",
            code="unknown_purpose",
            attr="purpose",
        )
    for attr, value, allowed in (
        ("status", choice.status, ConsentStatus.values),
        ("channel", choice.channel, ConsentChannel.values),
        ("legal_basis", choice.legal_basis, LegalBasis.values),
    ):
        if value not in allowed:
            raise InvalidInput(
                f"{attr} must be one of {', '.join(allowed)}.", code=f"invalid_{attr}", attr=attr
            )


# --- appending --------------------------------------------------------------------------------
def consent_entries_append(
    rows: Sequence[tuple[int, ChoiceInput]], *, actor: str
) -> list[ConsentEntry]:
    """Append ``(identifier id, choice)`` rows in order. A choice read from a tracked call that
    repeats its identifier's current one is skipped: consent tools resend their state with every
    call, and a resent state is not a new choice (an explicit one through the API always
    counts), and so is a repeated unsubscribe: an address-bound restriction through an
    identifier whose latest choice already is one (a mail provider's one-click POST and the
    person's own click on the same link). A denial of what the identifier had granted is
    recorded as ``withdrawn``. The caller holds the identifiers' profile locks and refreshes
    their states. One query to read, one to write."""
    if not rows:
        return []
    for _, choice in rows:
        choice_validate(choice)
    current = _latest_statuses({identifier_id for identifier_id, _ in rows})
    now = timezone.now()
    entries: list[ConsentEntry] = []
    for identifier_id, choice in rows:
        key = (identifier_id, choice.purpose)
        previous, previous_bound = current.get(key, (None, False))
        status = choice.status
        if status == ConsentStatus.DENIED and previous == ConsentStatus.GRANTED:
            status = ConsentStatus.WITHDRAWN
        if choice.channel in RESENT_CHANNELS and _same_choice(previous, status):
            continue
        if choice.address_bound and previous_bound and _same_choice(previous, status):
            continue
        current[key] = (status, choice.address_bound)
        entries.append(_entry(identifier_id, choice, status=status, actor=actor, now=now))
    if entries:
        _entries_insert(entries)
    return entries


def _same_choice(previous: str | None, status: str) -> bool:
    restrictive = (ConsentStatus.DENIED, ConsentStatus.WITHDRAWN)
    return status == previous or (previous in restrictive and status in restrictive)


def _entry(
    identifier_id: int, choice: ChoiceInput, *, status: str, actor: str, now: datetime
) -> ConsentEntry:
    return ConsentEntry(
        identifier_id=identifier_id,
        purpose=choice.purpose,
        status=status,
        legal_basis=choice.legal_basis,
        channel=choice.channel,
        source_id=choice.source_id,
        provider=choice.provider[:100],
        policy_version=choice.policy_version[:100],
        proof_ip_digest=keyed_digest(IP_DIGEST_PURPOSE, choice.ip.encode()) if choice.ip else "",
        proof_user_agent=choice.user_agent[:USER_AGENT_MAX],
        event_id=choice.event_id,
        address_bound=choice.address_bound,
        actor=actor,
        given_at=choice.given_at or now,
        recorded_at=now,
    )


_LATEST = """
SELECT DISTINCT ON (identifier_id, purpose) identifier_id, purpose, status, address_bound
FROM consent_consententry
WHERE identifier_id = ANY(%s::bigint[])
ORDER BY identifier_id, purpose, given_at DESC, id DESC
"""


def _latest_statuses(identifier_ids: Iterable[int]) -> dict[tuple[int, str], tuple[str, bool]]:
    """(status, address_bound) of each identifier's latest choice per purpose."""
    with bound_cursor() as cursor:
        cursor.execute(_LATEST, [sorted(identifier_ids)])
        return {(row[0], row[1]): (row[2], row[3]) for row in cursor.fetchall()}


def _entries_insert(entries: Sequence[ConsentEntry]) -> None:
    def column(name: str) -> list[object]:
        return [getattr(entry, name) for entry in entries]

    ids = rows_insert(
        ConsentEntry._meta.db_table,
        {
            "identifier_id": ("bigint[]", column("identifier_id")),
            "purpose": ("varchar[]", column("purpose")),
            "status": ("varchar[]", column("status")),
            "legal_basis": ("varchar[]", column("legal_basis")),
            "channel": ("varchar[]", column("channel")),
            "source_id": ("bigint[]", column("source_id")),
            "provider": ("varchar[]", column("provider")),
            "policy_version": ("varchar[]", column("policy_version")),
            "proof_ip_digest": ("varchar[]", column("proof_ip_digest")),
            "proof_user_agent": ("varchar[]", column("proof_user_agent")),
            "event_id": ("bigint[]", column("event_id")),
            "address_bound": ("boolean[]", column("address_bound")),
            "actor": ("varchar[]", column("actor")),
            "given_at": ("timestamptz[]", column("given_at")),
            "recorded_at": ("timestamptz[]", column("recorded_at")),
        },
        returning="id",
    )
    for entry, entry_id in zip(entries, ids, strict=True):
        entry.pk = entry_id
        entry._state.adding = False


# --- deriving ---------------------------------------------------------------------------------
_CHOICES = """
SELECT i.profile_id, e.id, e.identifier_id, e.purpose, e.status, e.given_at, e.address_bound
FROM identity_identifier AS i
JOIN consent_consententry AS e ON e.identifier_id = i.id
WHERE i.profile_id = ANY(%s::bigint[])
"""
# The latest merge into each profile: the time after which choices are the merged person's own.
# Merges recorded on a profile that was later merged into this one count too.
_MERGED_AT = """
SELECT coalesce(p.merged_into_id, p.id), max(l.created_at)
FROM identity_profile AS p
JOIN identity_mergeledgerentry AS l ON l.profile_id = p.id AND l.action = 'merge'
WHERE p.id = ANY(%s::bigint[]) OR p.merged_into_id = ANY(%s::bigint[])
GROUP BY 1
"""


_STATES_DELETE = "DELETE FROM consent_consentstate WHERE profile_id = ANY(%s::bigint[])"


def consent_states_refresh(*, profile_ids: Iterable[int]) -> int:
    """Recompute the consent state of these profiles from their identifiers' entries; profiles
    merged away lose theirs (their survivor's is the one that counts). The caller holds the
    profiles' locks. Returns the number of state rows written."""
    ids = sorted(set(profile_ids))
    if not ids:
        return 0
    with bound_cursor() as cursor:
        cursor.execute(_CHOICES, [ids])
        choices: dict[int, list[Choice]] = {}
        for profile_id, *fields in cursor.fetchall():
            choices.setdefault(profile_id, []).append(Choice(*fields))
        merged_at: dict[int, datetime] = {}
        if choices:
            cursor.execute(_MERGED_AT, [sorted(choices), sorted(choices)])
            merged_at = dict(cursor.fetchall())
        cursor.execute(
            "DELETE FROM consent_consentstate WHERE profile_id = ANY(%s::bigint[])", [ids]
        )
    now = timezone.now()
    states = [
        (profile_id, purpose, derived)
        for profile_id, own in sorted(choices.items())
        for purpose, derived in derive(own, merged_at=merged_at.get(profile_id)).items()
    ]
    rows_insert(
        ConsentState._meta.db_table,
        {
            "profile_id": ("bigint[]", [row[0] for row in states]),
            "purpose": ("varchar[]", [row[1] for row in states]),
            "status": ("varchar[]", [row[2].status for row in states]),
            "entry_id": ("bigint[]", [row[2].entry_id for row in states]),
            "given_at": ("timestamptz[]", [row[2].given_at for row in states]),
            "opted_out_identifiers": ("jsonb[]", [row[2].opted_out_identifiers for row in states]),
            "updated_at": ("timestamptz[]", [now] * len(states)),
        },
    )
    return len(states)


# --- the API's writer -------------------------------------------------------------------------
def consent_record(
    *,
    identifier_id: int,
    choices: Sequence[ChoiceInput],
    actor: str,
    audit_action: AuditAction,
    reason: str = "",
) -> ConsentRecorded:
    """Record choices made through one identifier, then its profile's state, under the lock
    protocol (retried when a concurrent merge moves the identifier meanwhile), with one audit
    entry naming the purposes and statuses (and the ``reason`` given, if any: no PII)."""
    if not choices:
        raise InvalidInput("Give at least one choice.", code="no_choice", attr="choices")
    for choice in choices:
        choice_validate(choice)
    for attempt in range(MAX_LOCK_ATTEMPTS):
        try:
            with transaction.atomic():
                return _record_locked(
                    identifier_id=identifier_id,
                    choices=choices,
                    actor=actor,
                    action=audit_action,
                    reason=reason,
                )
        except LockRace:
            logger.info("consent write raced a concurrent merge; retrying (attempt %d)", attempt)
    raise LockRace(f"consent write lost the lock race {MAX_LOCK_ATTEMPTS} times")


def _record_locked(
    *,
    identifier_id: int,
    choices: Sequence[ChoiceInput],
    actor: str,
    action: AuditAction,
    reason: str,
) -> ConsentRecorded:
    if not Identifier.objects.filter(pk=identifier_id).exists():
        raise NotFound(f"No identifier {identifier_id}.", code="identifier_not_found")
    locked = components_lock([identifier_id])
    if identifier_id not in locked.profile_of:  # erased since the check above
        raise NotFound(f"No identifier {identifier_id}.", code="identifier_not_found")
    profile_id = locked.profile_of.get(identifier_id)
    entries = consent_entries_append([(identifier_id, choice) for choice in choices], actor=actor)
    if profile_id is not None:
        consent_states_refresh(profile_ids=[profile_id])
        # Segments with consent conditions (and activation) re-evaluate the person now.
        profile_changes_mark([profile_id])
    audit_record(
        actor=actor,
        action=action,
        target_type="profile" if profile_id is not None else "identifier",
        target_id=profile_id if profile_id is not None else identifier_id,
        details={
            "identifier_id": identifier_id,
            "choices": [{"purpose": c.purpose, "status": c.status} for c in choices],
            "recorded": [{"purpose": e.purpose, "status": e.status} for e in entries],
            **({"reason": reason} if reason else {}),
        },
    )
    return ConsentRecorded(profile_id=profile_id, entries=entries)
