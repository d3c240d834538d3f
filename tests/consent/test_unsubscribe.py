"""Unsubscribe links: the token (round trip, forgery, expiry, key rotation), the pages (GET asks,
POST records; RFC 8058 one-click; idempotent; CSRF-exempt; rate limited; never the address),
the address-bound opt-out through later grants and unmerge, minting by API and command."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from pytest_django import DjangoAssertNumQueries, Settings
from rest_framework.test import APIClient

from cdp.audit.models import AuditAction, AuditEntry
from cdp.crypto.services import data_keys_destroy
from cdp.ingestion.services import SourceWithKey
from consent.models import ConsentChannel, ConsentEntry, ConsentStatus
from consent.selectors import identifiers_opted_out, profile_consent
from consent.services import ChoiceInput, consent_record
from consent.unsubscribe import (
    TAG_BYTES,
    UnsubscribeLinkInvalid,
    address_masked,
    max_age,
    token_mint,
    token_verify,
    unsubscribe_link,
)
from identity.models import Identifier
from identity.selectors import identifier_find, identifiers_find
from identity.services.unmerge import profile_unmerge
from tests.conftest import post_json
from tests.identity.resolving import ingest, message, pid, resolve

pytestmark = pytest.mark.django_db

EMAIL = "ada.lovelace@example.com"
MASKED = "a***@example.com"
ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DAY = 86400


@pytest.fixture
def email_id(source: SourceWithKey) -> int:
    """A person known by user id and email (one profile), who granted marketing email."""
    ingest(source.source.pk, message("identify", userId="u1", traits={"email": EMAIL}))
    resolve()
    identifier = identifier_find(kind="email", raw_value=EMAIL)
    assert identifier is not None
    return identifier.pk


def grant(identifier_id: int, purpose: str = "marketing_email") -> None:
    consent_record(
        identifier_id=identifier_id,
        choices=[ChoiceInput(purpose=purpose, status="granted", channel=ConsentChannel.API)],
        actor="test",
        audit_action=AuditAction.CONSENT_RECORDED,
    )


def path_of(token: str) -> str:
    return f"/v1/unsubscribe/{token}"


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def states(profile_id: int) -> dict[str, str]:
    return {state.purpose: state.status for state in profile_consent(profile_id)}


def one_click(client: Client, token: str) -> Any:
    return client.post(path_of(token), ONE_CLICK, content_type=FORM)


# --- the token --------------------------------------------------------------------------------
def test_token_round_trip_is_compact_url_safe_and_names_no_address(email_id: int) -> None:
    url = unsubscribe_link(identifier_id=email_id, purpose="marketing_email")
    assert url.startswith("http://127.0.0.1:8000/v1/unsubscribe/")
    token = token_of(url)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token) and len(token) <= 64
    assert EMAIL not in url and "ada" not in url
    claim = token_verify(token)
    assert (claim.identifier_id, claim.purpose) == (email_id, "marketing_email")
    assert claim.expires_at - claim.issued_at == max_age()


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forged(token: str, how: str, settings: Settings) -> str:
    raw = _raw(token)
    body, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if how == "identifier":  # bytes 1..8: the identifier id
        return _text(body[:8] + bytes([body[8] ^ 1]) + body[9:] + tag)
    if how == "purpose":
        return _text(body.replace(b"marketing_email", b"marketing_sms") + tag)
    if how == "issued_at":  # re-dated to look fresh
        return _text(body[:9] + (int(time.time()) + 5).to_bytes(4, "big") + body[13:] + tag)
    if how == "signature":
        return _text(body + tag[:-1] + bytes([tag[-1] ^ 0x80]))
    if how == "truncated":
        return token[:-4]
    if how == "no_tag":
        return _text(body)
    if how == "other_key":
        original = settings.SECRET_KEY
        settings.SECRET_KEY = "another-deployment-" + "x" * 40
        other = token_mint(identifier_id=_claim_id(token), purpose="marketing_email")
        settings.SECRET_KEY = original
        return other
    if how == "padding_bits":  # the same bytes, another spelling
        last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        index = last.index(token[-1])
        return token[:-1] + last[index ^ 1]
    if how == "garbage":
        return "not-a-token!"
    raise AssertionError(how)


def _claim_id(token: str) -> int:
    return int.from_bytes(_raw(token)[1:9], "big")


FORGERIES = [
    "identifier",
    "purpose",
    "issued_at",
    "signature",
    "truncated",
    "no_tag",
    "other_key",
    "padding_bits",
    "garbage",
]


@pytest.mark.parametrize("how", FORGERIES)
def test_forged_tokens_are_refused_alike(email_id: int, how: str, settings: Settings) -> None:
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    forged = _forged(token, how, settings)
    assert forged != token
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(forged)
    token_verify(token)  # the genuine one still works


def test_expiry_is_the_max_age_after_minting(email_id: int, settings: Settings) -> None:
    minted = 1_800_000_000.0
    token = token_mint(identifier_id=email_id, purpose="marketing_email", now=minted)
    last_second = minted + max_age().total_seconds() - 1
    assert token_verify(token, now=last_second).identifier_id == email_id
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(token, now=minted + max_age().total_seconds())
    # Shortening the setting shortens links already sent.
    settings.CDP_CONSENT = {**settings.CDP_CONSENT, "UNSUBSCRIBE_MAX_AGE_DAYS": 1}
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(token, now=minted + 2 * DAY)
    # Minted in the future (beyond clock skew): refused.
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(token, now=minted - 3600)


def test_links_survive_a_secret_key_rotation(email_id: int, settings: Settings) -> None:
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-" + "y" * 50
    assert token_verify(token).identifier_id == email_id
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(token)


def test_a_purpose_dropped_from_the_configuration_invalidates_its_links(
    email_id: int, settings: Settings
) -> None:
    token = token_mint(identifier_id=email_id, purpose="marketing_sms")
    purposes = dict(settings.CDP_CONSENT["PURPOSES"])
    del purposes["marketing_sms"]
    settings.CDP_CONSENT = {**settings.CDP_CONSENT, "PURPOSES": purposes}
    with pytest.raises(UnsubscribeLinkInvalid):
        token_verify(token)


def test_address_masking() -> None:
    assert address_masked("email", EMAIL) == MASKED
    assert address_masked("phone", "+14155550189") == "***-**89"
    assert address_masked("user_id", "u1") is None
    assert address_masked("email", "@example.com") is None


# --- the pages --------------------------------------------------------------------------------
def test_get_shows_a_confirmation_page_and_changes_nothing(email_id: int) -> None:
    token = token_of(unsubscribe_link(identifier_id=email_id, purpose="marketing_email"))
    audits = AuditEntry.objects.count()
    page = Client().get(path_of(token), HTTP_ACCEPT=HTML)
    assert page.status_code == 200
    html = page.content.decode()
    assert MASKED in html
    assert EMAIL not in html and "lovelace" not in html
    assert '<form method="post">' in html and "Unsubscribe" in html
    assert "marketing email" in html
    assert page["Referrer-Policy"] == "no-referrer"
    assert page["Cache-Control"] == "no-store"
    assert "noindex" in page["X-Robots-Tag"]
    assert "default-src 'none'" in page["Content-Security-Policy"]
    assert ConsentEntry.objects.count() == 0
    assert AuditEntry.objects.count() == audits
    # A JSON client sees the same facts, still masked.
    data = Client().get(path_of(token)).json()
    assert (data["purpose"], data["address"]) == ("marketing_email", MASKED)


def test_one_click_post_records_one_address_bound_withdrawal(email_id: int) -> None:
    grant(email_id)
    profile = pid("email", EMAIL)
    assert states(profile)["marketing_email"] == "granted"
    token = token_of(unsubscribe_link(identifier_id=email_id, purpose="marketing_email"))
    # A mail provider: no cookies, no CSRF token, a form body, whatever it accepts.
    provider = Client(enforce_csrf_checks=True, HTTP_USER_AGENT="GoogleOneClick/1.0")
    answer = one_click(provider, token)
    assert answer.status_code == 200
    assert answer.json() == {"status": "unsubscribed", "purpose": "marketing_email"}
    assert answer["Cache-Control"] == "no-store"
    (entry,) = ConsentEntry.objects.filter(channel=ConsentChannel.UNSUBSCRIBE)
    assert (entry.identifier_id, entry.purpose, entry.status) == (
        email_id,
        "marketing_email",
        ConsentStatus.WITHDRAWN,
    )
    assert entry.address_bound and entry.actor == "subject"
    assert (entry.provider, entry.proof_user_agent) == (
        "list-unsubscribe-post",
        "GoogleOneClick/1.0",
    )
    assert entry.proof_ip_digest and "127.0.0.1" not in entry.proof_ip_digest
    assert states(profile)["marketing_email"] == "withdrawn"
    audit = AuditEntry.objects.filter(action=AuditAction.UNSUBSCRIBE).get()
    assert (audit.actor, audit.target_type, audit.target_id) == ("subject", "profile", str(profile))
    assert EMAIL not in str(audit.details)

    # Again (the person also clicks, or the provider retries): the same answer, nothing new.
    again = one_click(provider, token)
    assert (again.status_code, again.json()["status"]) == (200, "unsubscribed")
    assert ConsentEntry.objects.filter(channel=ConsentChannel.UNSUBSCRIBE).count() == 1
    assert states(profile)["marketing_email"] == "withdrawn"


def test_never_granted_is_recorded_as_denied_and_the_form_post_answers_a_page(
    email_id: int,
) -> None:
    token = token_of(unsubscribe_link(identifier_id=email_id, purpose="marketing_email"))
    page = Client(enforce_csrf_checks=True).post(
        path_of(token), "confirm=1", content_type=FORM, HTTP_ACCEPT=HTML
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "You are unsubscribed" in html and EMAIL not in html
    assert page["Referrer-Policy"] == "no-referrer"
    entry = ConsentEntry.objects.get()
    assert (entry.status, entry.provider) == (ConsentStatus.DENIED, "unsubscribe-page")


def test_an_empty_or_odd_body_still_unsubscribes(email_id: int) -> None:
    token = token_of(unsubscribe_link(identifier_id=email_id, purpose="marketing_email"))
    assert Client().post(path_of(token)).status_code == 200
    odd = Client().post(path_of(token), b"{}", content_type="application/json")
    assert odd.status_code == 200
    multipart = Client().post(path_of(token), {"List-Unsubscribe": "One-Click"})
    assert multipart.status_code == 200
    assert ConsentEntry.objects.count() == 1


def _expired(email_id: int) -> str:
    long_ago = time.time() - max_age().total_seconds() - 60
    return token_mint(identifier_id=email_id, purpose="marketing_email", now=long_ago)


def test_forged_expired_and_erased_links_answer_alike(email_id: int, settings: Settings) -> None:
    genuine = token_mint(identifier_id=email_id, purpose="marketing_email")
    missing_id = (Identifier.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 99
    tokens = {
        "expired": _expired(email_id),
        "forged": _forged(genuine, "signature", settings),
        "other_key": _forged(genuine, "other_key", settings),
        "garbage": "x",
        "no_such_identifier": token_mint(identifier_id=missing_id, purpose="marketing_email"),
    }
    answers = set()
    for token in tokens.values():
        for method in ("get", "post"):
            json_answer = getattr(Client(), method)(path_of(token))
            html_answer = getattr(Client(), method)(path_of(token), HTTP_ACCEPT=HTML)
            assert html_answer["Cache-Control"] == "no-store"
            answers.add(
                (
                    json_answer.status_code,
                    json_answer.content,
                    html_answer.status_code,
                    html_answer.content,
                )
            )
    assert len(answers) == 1
    ((status, _body, html_status, html),) = answers
    assert (status, html_status) == (400, 400)
    assert Client().get(path_of("x")).json() == {
        "type": "client_error",
        "code": "unsubscribe_link_invalid",
        "detail": UnsubscribeLinkInvalid().detail,
        "attr": None,
    }
    assert b"This link does not work" in html
    assert ConsentEntry.objects.count() == 0


def test_an_erased_address_link_is_dead(email_id: int) -> None:
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    data_key_id = Identifier.objects.get(pk=email_id).data_key_id
    data_keys_destroy(ids=[data_key_id])
    assert Client().get(path_of(token)).status_code == 400


def test_the_pages_are_rate_limited_per_link(email_id: int, settings: Settings) -> None:
    settings.CDP_CONSENT = {**settings.CDP_CONSENT, "UNSUBSCRIBE_LINK_RATE_LIMIT": "2/min"}
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    other = token_mint(identifier_id=email_id, purpose="marketing_sms")
    client = Client()
    assert [client.get(path_of(token)).status_code for _ in range(2)] == [200, 200]
    limited = client.get(path_of(token), HTTP_ACCEPT=HTML)
    assert limited.status_code == 429 and int(limited["Retry-After"]) >= 1
    assert b"Too many requests" in limited.content
    assert one_click(client, token).status_code == 429
    assert client.get(path_of(other)).status_code == 200


def test_the_pages_are_rate_limited_per_client(email_id: int, settings: Settings) -> None:
    settings.CDP_CONSENT = {**settings.CDP_CONSENT, "UNSUBSCRIBE_RATE_LIMIT": "3/min"}
    client = Client()
    codes = [client.get(path_of(f"forged{n}")).status_code for n in range(4)]
    assert codes == [400, 400, 400, 429]
    assert client.get(path_of("forged"), REMOTE_ADDR="10.0.0.9").status_code == 400


# --- the address-bound opt-out over time ------------------------------------------------------
def test_the_unsubscribed_address_stays_out_after_a_grant_through_another_identifier(
    email_id: int,
) -> None:
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    assert one_click(Client(), token).status_code == 200
    user = identifier_find(kind="user_id", raw_value="u1")
    assert user is not None
    grant(user.pk)  # later, through the user id (a preference centre after login)
    profile = pid("user_id", "u1")
    (state,) = [s for s in profile_consent(profile) if s.purpose == "marketing_email"]
    assert state.status == "granted"
    assert state.opted_out_identifiers == [email_id]
    assert identifiers_opted_out([profile], "marketing_email") == {email_id}


def test_after_unmerge_the_opt_out_stays_with_the_address_side(email_id: int) -> None:
    profile = pid("email", EMAIL)
    token = token_mint(identifier_id=email_id, purpose="marketing_email")
    assert one_click(Client(), token).status_code == 200
    assert states(profile)["marketing_email"] == "denied"
    profile_unmerge(profile_id=profile, actor="test", reason="wrong merge", identifier_id=email_id)
    email_side, user_side = pid("email", EMAIL), pid("user_id", "u1")
    assert email_side != user_side
    assert states(email_side)["marketing_email"] == "denied"
    assert identifiers_opted_out([email_side], "marketing_email") == {email_id}
    assert identifiers_opted_out([user_side], "marketing_email") == set()
    user_state = {s.purpose: s for s in profile_consent(user_side)}["marketing_email"]
    assert user_state.is_default  # the user id's side never chose anything
    # The link still works for its address (idempotent: nothing new).
    assert one_click(Client(), token).status_code == 200
    assert ConsentEntry.objects.count() == 1


# --- minting ----------------------------------------------------------------------------------
@pytest.fixture
def minter(api_client: Callable[..., APIClient]) -> APIClient:
    return api_client("profiles:write")


def test_mint_one_link_by_api(
    email_id: int, minter: APIClient, api_client: Callable[..., APIClient]
) -> None:
    assert (
        post_json(
            api_client("profiles:read"), "/v1/unsubscribe-links", {"email": EMAIL}
        ).status_code
        == 403
    )
    assert post_json(APIClient(), "/v1/unsubscribe-links", {"email": EMAIL}).status_code == 401
    answer = post_json(minter, "/v1/unsubscribe-links", {"email": " Ada.Lovelace@Example.com "})
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert (body["purpose"], body["identifier_id"]) == ("marketing_email", email_id)
    assert EMAIL not in body["url"]
    claim = token_verify(token_of(body["url"]))
    assert claim.identifier_id == email_id
    assert body["expires_at"].startswith(claim.expires_at.isoformat()[:19])
    audit = AuditEntry.objects.get(action=AuditAction.TOKEN_CREATED, target_type="identifier")
    assert audit.target_id == str(email_id)
    assert audit.details["token"] == "unsubscribe_link"
    assert audit.details["identifier_ids"] == [email_id]
    assert EMAIL not in str(audit.details)
    # The link works end to end.
    assert one_click(Client(), token_of(body["url"])).status_code == 200

    sms = post_json(minter, "/v1/unsubscribe-links", {"email": EMAIL, "purpose": "marketing_sms"})
    assert sms.json()["purpose"] == "marketing_sms"
    needs_purpose = post_json(minter, "/v1/unsubscribe-links", {"user_id": "u1"})
    assert (needs_purpose.status_code, needs_purpose.json()["code"]) == (400, "purpose_required")
    with_purpose = post_json(
        minter, "/v1/unsubscribe-links", {"user_id": "u1", "purpose": "advertising"}
    )
    assert with_purpose.status_code == 201
    unknown_purpose = post_json(
        minter, "/v1/unsubscribe-links", {"email": EMAIL, "purpose": "telepathy"}
    )
    assert (unknown_purpose.status_code, unknown_purpose.json()["attr"]) == (400, "purpose")
    missing = post_json(minter, "/v1/unsubscribe-links", {"email": "nobody@example.org"})
    assert missing.status_code == 404 and "nobody" not in missing.content.decode()


def test_mint_links_in_bulk(
    email_id: int, minter: APIClient, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    items = [
        {"email": EMAIL},
        {"email": "nobody@example.org"},
        {"user_id": "u1"},
        {"user_id": "u1", "purpose": "advertising"},
        {"email": "not an email"},
    ]
    with django_assert_max_num_queries(8):  # token, lookup, audit: not one per item
        answer = post_json(minter, "/v1/unsubscribe-links/batch", {"identifiers": items * 20})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [link["index"] for link in body["links"][:2]] == [0, 3]
    assert len(body["links"]) == 40
    assert [(r["index"], r["code"]) for r in body["rejected"][:3]] == [
        (1, "identifier_not_found"),
        (2, "purpose_required"),
        (4, "identifier_not_found"),
    ]
    assert "nobody" not in answer.content.decode()
    audit = AuditEntry.objects.get(action=AuditAction.TOKEN_CREATED, target_type="identifier")
    assert audit.details["count"] == 40
    too_many = post_json(
        minter, "/v1/unsubscribe-links/batch", {"identifiers": [{"email": EMAIL}] * 1001}
    )
    assert too_many.status_code == 400


def test_identifiers_find_keeps_order_and_misses(email_id: int) -> None:
    user = identifier_find(kind="user_id", raw_value="u1")
    assert user is not None
    found = identifiers_find(
        [("email", EMAIL.upper()), ("email", "x@y.org"), ("user_id", "u1"), ("email", "")]
    )
    assert [row.pk if row else None for row in found] == [email_id, None, user.pk, None]
    assert identifiers_find([]) == []


def test_the_command_prints_links(email_id: int, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    call_command("create_unsubscribe_link", "--email", EMAIL, stdout=out)
    url, expires = out.getvalue().strip().split("\t")
    assert token_verify(token_of(url)).identifier_id == email_id and expires
    out = io.StringIO()
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{EMAIL}\nnobody@example.org\n\n"))
    call_command("create_unsubscribe_link", "--stdin", "email", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[1:] == ["-\tidentifier_not_found"] * 2
    assert token_verify(token_of(lines[0].split("\t")[0])).purpose == "marketing_email"
    out = io.StringIO()
    call_command(
        "create_unsubscribe_link",
        "--identifier-id",
        str(email_id),
        "--purpose",
        "advertising",
        stdout=out,
    )
    assert token_verify(token_of(out.getvalue().split("\t")[0])).purpose == "advertising"
    audits = AuditEntry.objects.filter(actor="command:create_unsubscribe_link")
    assert audits.count() == 3
