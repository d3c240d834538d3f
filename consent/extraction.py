"""The consent choices a tracked call carries in its context. Pure functions over plain values.

Three shapes are read, so consent-management tools work as they are wired for Segment and
RudderStack (docs/privacy.md):

* Segment: ``context.consent.categoryPreferences`` ``{"Advertising": true, "Analytics": false}``;
* RudderStack: ``context.consentManagement`` ``{"provider": "oneTrust", "allowedConsentIds":
  ["C0002"], "deniedConsentIds": ["C0004"]}``;
* cdp's own: ``context.consent.purposes`` ``{"marketing_email": "granted" | "denied" |
  "withdrawn" | true | false}``, with optional ``policyVersion``, ``provider`` and
  ``legalBasis`` beside it in ``context.consent``.

Category names map to purposes by name or alias (``consent.purposes``); unknown categories
(strictly necessary cookies, a vendor id) are ignored. ``context.gpc: true`` (Global Privacy
Control; ingestion sets it from the ``Sec-GPC: 1`` header) is an opt-out of the GPC purposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consent.purposes import DENIED, GPC_PURPOSES, GRANTED, STATUSES, Purposes

MAX_TEXT = 100  # provider and policy version columns


@dataclass(frozen=True, slots=True)
class ContextChoice:
    purpose: str
    status: str
    channel: str  # "event" or "gpc"
    provider: str = ""
    policy_version: str = ""
    legal_basis: str = ""


def context_choices(context: Mapping[str, Any] | None, purposes: Purposes) -> list[ContextChoice]:
    """The choices in an event's context, one per purpose (the last statement of a purpose in
    the order above wins; GPC's opt-out wins over a grant in the same call)."""
    if not isinstance(context, Mapping):
        return []
    found: dict[str, ContextChoice] = {}
    consent = context.get("consent")
    if isinstance(consent, Mapping):
        meta = _meta(consent, provider_key="provider")
        _add_bools(found, consent.get("categoryPreferences"), purposes, meta)
        _add_statuses(found, consent.get("purposes"), purposes, meta)
    management = context.get("consentManagement")
    if isinstance(management, Mapping):
        meta = _meta(management, provider_key="provider")
        for key, status in (("allowedConsentIds", GRANTED), ("deniedConsentIds", DENIED)):
            ids = management.get(key)
            if isinstance(ids, list):
                for category in ids:
                    _add(found, category, status, purposes, meta)
    if context.get("gpc") is True:
        for purpose in GPC_PURPOSES:
            if purposes.get(purpose) is not None:
                found[purpose] = ContextChoice(purpose=purpose, status=DENIED, channel="gpc")
    return list(found.values())


def _meta(block: Mapping[str, Any], *, provider_key: str) -> dict[str, str]:
    return {
        "provider": _text(block.get(provider_key)),
        "policy_version": _text(block.get("policyVersion")),
        "legal_basis": _text(block.get("legalBasis")),
    }


def _add_bools(
    found: dict[str, ContextChoice], values: object, purposes: Purposes, meta: dict[str, str]
) -> None:
    if isinstance(values, Mapping):
        for category, allowed in values.items():
            if isinstance(allowed, bool):
                _add(found, category, GRANTED if allowed else DENIED, purposes, meta)


def _add_statuses(
    found: dict[str, ContextChoice], values: object, purposes: Purposes, meta: dict[str, str]
) -> None:
    if not isinstance(values, Mapping):
        return
    for category, value in values.items():
        if isinstance(value, bool):
            _add(found, category, GRANTED if value else DENIED, purposes, meta)
        elif isinstance(value, str) and value in STATUSES:
            _add(found, category, value, purposes, meta)


def _add(
    found: dict[str, ContextChoice],
    category: object,
    status: str,
    purposes: Purposes,
    meta: dict[str, str],
) -> None:
    if not isinstance(category, str):
        return
    purpose = purposes.resolve(category)
    if purpose is not None:
        found[purpose] = ContextChoice(purpose=purpose, status=status, channel="event", **meta)


def _text(value: object) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""
