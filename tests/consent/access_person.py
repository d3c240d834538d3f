"""A person with a bit of everything, for the access export tests and the benchmark: identify and
track events with PII, an alias-merged second profile, a CRM record, consent choices, and an
unmerge (a shared laptop's anonymous id split off again) in the merge history."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Any

import orjson

from cdp.audit.models import AuditAction
from cdp.ingestion.services import source_create
from consent.models import ConsentChannel
from consent.services import ChoiceInput, consent_record
from identity.models import Edge, EdgeRule
from identity.selectors import identifier_find
from identity.services.unmerge import profile_unmerge
from tests.identity.resolving import ingest, message, pid, resolve, upsert

EMAIL = "ada.lovelace@example.com"
CRM_PHONE = "+44 20 7946 0958"
IP = "203.0.113.77"
SHARED_ANON = "shared-laptop-anon"


@dataclass(frozen=True)
class Person:
    profile_id: int  # the current profile
    absorbed_profile_id: int  # the alias-merged one
    split_profile_id: int  # the shared laptop's, split off by the unmerge
    web_id: int
    crm_id: int


def person_build(*, tracks: int = 3) -> Person:
    web = source_create(name="web").source.pk
    crm = source_create(name="crm").source.pk
    ingest(
        web,
        message(
            "identify",
            userId="ada",
            anonymousId="anon-ada",
            traits={"email": EMAIL, "firstName": "Ada", "plan": "pro"},
            context={"ip": IP, "locale": "en-GB"},
        ),
        *(
            message("track", at=10 + i, userId="ada", event="Viewed", properties={"n": i})
            for i in range(tracks)
        ),
    )
    ingest(web, message("page", at=1, anonymousId="anon-phone", name="Pricing"))
    resolve()
    absorbed = pid("anonymous_id", "anon-phone")
    ingest(web, message("alias", at=100, userId="ada", previousId="anon-phone"))
    upsert(crm, {"external_id": "C-1", "email": EMAIL, "phone": CRM_PHONE, "last_name": "Byron"})
    ingest(web, message("identify", at=200, userId="ada", anonymousId=SHARED_ANON))
    resolve()
    profile_id = pid("user_id", "ada")
    assert pid("anonymous_id", "anon-phone") == profile_id == pid("external", "crm:C-1")
    shared = identifier_find(kind="anonymous_id", raw_value=SHARED_ANON)
    assert shared is not None
    edge = Edge.objects.get(rule=EdgeRule.IDENTIFY, b_id=shared.pk)
    profile_unmerge(
        profile_id=profile_id, edge_ids=[edge.pk], actor="api:steward", reason="shared laptop"
    )
    split = pid("anonymous_id", SHARED_ANON)
    assert split != profile_id
    email = identifier_find(kind="email", raw_value=EMAIL)
    user = identifier_find(kind="user_id", raw_value="ada")
    assert email is not None and user is not None
    consent_record(
        identifier_id=email.pk,
        choices=[ChoiceInput(purpose="marketing_email", status="granted", channel="api")],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )
    consent_record(
        identifier_id=user.pk,
        choices=[
            ChoiceInput(
                purpose="sale_or_share",
                status="denied",
                channel=ConsentChannel.GPC,
                user_agent="Firefox",
            )
        ],
        actor="subject",
        audit_action=AuditAction.CONSENT_RECORDED,
    )
    return Person(
        profile_id=profile_id,
        absorbed_profile_id=absorbed,
        split_profile_id=split,
        web_id=web,
        crm_id=crm,
    )


def export_read(content: bytes) -> dict[str, Any]:
    """The export's files by name: JSON parsed, JSONL as a list of rows."""
    files: dict[str, Any] = {}
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name.endswith(".jsonl"):
                files[name] = [orjson.loads(line) for line in data.splitlines() if line]
            else:
                files[name] = orjson.loads(data)
    return files
