"""Writes of opt-outs: minting unsubscribe links, unsubscribing through one, and the server-side
do-not-sell/share request of the privacy API. Every choice goes through
``consent.services.consent_record`` (locks, ledger, derived state, audit).

* An unsubscribe is tied to the address (``address_bound``): the identifier the link names stays
  opted out whatever the person grants later through their other identifiers, and it stays with
  the address's side of an unmerge. Its legal basis is ``consent`` (consent withdrawn).
* An opt-out request is the person's, not an address's: a later explicit grant by the same
  person lifts it (``consent.derivation``). Its legal basis is ``legal_obligation``: it is
  honoured because the law requires it (CCPA/CPRA's right to opt out of sale and sharing, the
  GDPR's right to object, Art. 21).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from cdp.api.errors import InvalidInput, NotFound
from cdp.audit.models import AuditAction
from cdp.audit.services import audit_record
from consent.models import ConsentChannel, ConsentStatus, LegalBasis
from consent.services import ChoiceInput, ConsentRecorded, consent_record
from consent.unsubscribe import (
    UnsubscribeLinkInvalid,
    default_purpose,
    link_for,
    max_age,
    token_mint,
    token_verify,
)

SUBJECT_ACTOR = "subject"
ONE_CLICK_PROVIDER = "list-unsubscribe-post"  # RFC 8058, from the mail provider
PAGE_PROVIDER = "unsubscribe-page"  # the person's click on the confirmation page
# Links per call: its one audit entry lists their identifier ids.
MAX_LINKS_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class UnsubscribeLink:
    identifier_id: int
    purpose: str
    url: str
    expires_at: datetime


def link_purpose(*, kind: str, purpose: str | None) -> str:
    """The purpose a link for an identifier of ``kind`` unsubscribes from: the one given, else
    the purpose whose channel the kind is (email -> marketing_email)."""
    if purpose:
        return purpose
    found = default_purpose(kind)
    if found is None:
        raise InvalidInput(
            f"No purpose has the {kind} channel: give the purpose to unsubscribe from.",
            code="purpose_required",
            attr="purpose",
        )
    return found


@transaction.atomic
def unsubscribe_links_create(
    *, subjects: Sequence[tuple[int, str]], actor: str
) -> list[UnsubscribeLink]:
    """Links for ``(identifier id, purpose)`` pairs, with one audit entry (ids and purposes, never
    an address). Minting writes nothing else: a link is valid by its signature alone."""
    if not subjects:
        return []
    if len(subjects) > MAX_LINKS_PER_CALL:
        raise InvalidInput(f"At most {MAX_LINKS_PER_CALL} links per call.", code="too_many")
    links = []
    for identifier_id, purpose in subjects:
        token = token_mint(identifier_id=identifier_id, purpose=purpose)
        claim = token_verify(token)  # its expiry, read the way every later request reads it
        links.append(
            UnsubscribeLink(
                identifier_id=identifier_id,
                purpose=purpose,
                url=link_for(token),
                expires_at=claim.expires_at,
            )
        )
    single = len(subjects) == 1
    audit_record(
        actor=actor,
        action=AuditAction.TOKEN_CREATED,
        target_type="identifier",
        target_id=subjects[0][0] if single else "",
        details={
            "token": "unsubscribe_link",
            "count": len(links),
            "identifier_ids": [identifier_id for identifier_id, _ in subjects],
            "purposes": sorted({purpose for _, purpose in subjects}),
            "max_age_days": max_age().days,
        },
    )
    return links


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    purpose: str
    profile_id: int | None
    recorded: bool  # False: the address was already unsubscribed (a repeated POST)


def unsubscribe_apply(
    *, token: str, one_click: bool, ip: str | None = None, user_agent: str = ""
) -> Unsubscribed:
    """Unsubscribe the identifier a genuine token names from its purpose. Safe to repeat: a
    second POST records nothing (``consent_entries_append``). A token naming an identifier that
    no longer exists (erased) answers ``UnsubscribeLinkInvalid``, like an expired one."""
    claim = token_verify(token)
    choice = ChoiceInput(
        purpose=claim.purpose,
        status=ConsentStatus.DENIED,  # recorded as withdrawn when it had been granted
        channel=ConsentChannel.UNSUBSCRIBE,
        legal_basis=LegalBasis.CONSENT,
        provider=ONE_CLICK_PROVIDER if one_click else PAGE_PROVIDER,
        ip=ip,
        user_agent=user_agent,
        address_bound=True,
    )
    try:
        result = consent_record(
            identifier_id=claim.identifier_id,
            choices=[choice],
            actor=SUBJECT_ACTOR,
            audit_action=AuditAction.UNSUBSCRIBE,
        )
    except NotFound:
        raise UnsubscribeLinkInvalid() from None
    return Unsubscribed(
        purpose=claim.purpose, profile_id=result.profile_id, recorded=bool(result.entries)
    )


def opt_out_record(
    *,
    identifier_id: int,
    purposes: Sequence[str],
    actor: str,
    ip: str | None = None,
    user_agent: str = "",
    reason: str = "",
) -> ConsentRecorded:
    """A do-not-sell/share (or any opt-out) request for the person behind ``identifier_id``:
    each purpose denied, or withdrawn where it had been granted, with one audit entry."""
    unique = list(dict.fromkeys(purposes))
    return consent_record(
        identifier_id=identifier_id,
        choices=[
            ChoiceInput(
                purpose=purpose,
                status=ConsentStatus.DENIED,
                channel=ConsentChannel.OPT_OUT,
                legal_basis=LegalBasis.LEGAL_OBLIGATION,
                ip=ip,
                user_agent=user_agent,
            )
            for purpose in unique
        ],
        actor=actor,
        audit_action=AuditAction.OPT_OUT,
        reason=reason,
    )
