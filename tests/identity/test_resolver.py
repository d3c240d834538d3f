"""The deterministic resolver on real PostgreSQL: events and records in, profiles out."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import override_settings

from cdp.crypto.envelope import decrypt
from cdp.crypto.errors import DecryptionFailed
from cdp.crypto.services import data_keys_destroy
from cdp.ingestion.models import Event
from cdp.ingestion.services import SourceWithKey, source_create
from identity.models import (
    Edge,
    EdgeRule,
    Identifier,
    LedgerAction,
    MergeLedgerEntry,
    Profile,
    TraitObservation,
)
from identity.services.profiles import profiles_refresh
from tests.identity.resolving import ingest, message, pid, profile_of, resolve, upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def web(source: SourceWithKey) -> int:
    return source.source.pk


@pytest.fixture
def crm(db: None) -> int:
    return source_create(name="crm").source.pk


def test_identify_links_the_anonymous_visitor_to_the_user(web: int) -> None:
    ingest(
        web,
        message("page", anonymousId="anon-1", name="Home"),
        message("track", at=5, anonymousId="anon-1"),
        message("identify", at=10, userId="u1", anonymousId="anon-1", traits={"plan": "pro"}),
        message("track", at=20, userId="u1", event="Order Completed"),
    )
    result = resolve()
    assert result.events == 4
    profile = Profile.objects.get(pk=pid("user_id", "u1"))
    assert pid("anonymous_id", "anon-1") == profile.pk
    assert profile.event_count == 4
    assert profile.traits["plan"]["value"] == "pro"
    assert profile.traits["plan"]["origin"] == "event"
    assert not Event.objects.filter(identifier_id__isnull=True).exists()
    # The older profile (the visitor's, created for the page view) survives.
    assert MergeLedgerEntry.objects.filter(action=LedgerAction.MERGE).count() == 0 or (
        MergeLedgerEntry.objects.get(action=LedgerAction.MERGE).profile_id == profile.pk
    )


def test_a_merge_across_batches_keeps_the_older_profile_and_records_it(web: int) -> None:
    ingest(web, message("track", anonymousId="anon-1"))
    resolve()
    visitor = pid("anonymous_id", "anon-1")
    ingest(web, message("track", at=1, userId="u1"))
    resolve()
    user = pid("user_id", "u1")
    assert visitor < user
    ingest(web, message("identify", at=2, userId="u1", anonymousId="anon-1"))
    result = resolve()
    assert result.merges == 1
    assert pid("user_id", "u1") == visitor
    assert Profile.objects.get(pk=user).merged_into_id == visitor
    entry = MergeLedgerEntry.objects.get(action=LedgerAction.MERGE)
    assert (entry.profile_id, entry.other_profile_id, entry.actor) == (visitor, user, "resolver")
    assert entry.edge is not None and entry.edge.rule == EdgeRule.IDENTIFY
    assert Profile.objects.get(pk=visitor).event_count == 3


def test_alias_chains_join_every_id(web: int) -> None:
    ingest(
        web,
        message("track", anonymousId="a0"),
        message("alias", at=1, previousId="a0", anonymousId="a1", userId="u1"),
        message("alias", at=2, previousId="a-later", userId="u1"),
    )
    resolve()
    assert pid("anonymous_id", "a0") == pid("anonymous_id", "a1") == pid("user_id", "u1")
    # previousId named no node: it became an anonymous id of the user.
    assert pid("anonymous_id", "a-later") == pid("user_id", "u1")


@override_settings(CDP_MERGE_RULES={"LIMITS": {"user_id": 3}})
def test_alias_renames_user_ids_where_the_limit_allows_it(web: int) -> None:
    ingest(
        web,
        message("track", anonymousId="a0"),
        message("alias", at=1, previousId="a0", userId="tmp-1"),
        message("alias", at=2, previousId="tmp-1", userId="u-final"),
    )
    resolve()
    assert pid("anonymous_id", "a0") == pid("user_id", "tmp-1") == pid("user_id", "u-final")
    # previousId "tmp-1" named an existing user id: no anonymous id node was made for it.
    assert profile_of("anonymous_id", "tmp-1") is None


def test_crm_record_and_web_events_of_one_person_merge(web: int, crm: int) -> None:
    upsert(crm, {"external_id": "C-1", "email": "ada@example.com", "first_name": "Ada"})
    ingest(web, message("identify", userId="u1", traits={"email": " Ada@Example.com "}))
    resolve()
    assert pid("external", "crm:C-1") == pid("user_id", "u1") == pid("email", "ada@example.com")
    traits = Profile.objects.get(pk=pid("user_id", "u1")).traits
    assert traits["first_name"]["origin"] == "record"
    assert traits["email"]["pii"] is True and "value" not in traits["email"]


def test_a_second_user_id_is_a_conflict_not_a_merge(web: int) -> None:
    ingest(
        web,
        message("identify", userId="u1", anonymousId="shared-laptop"),
        message("identify", at=1, userId="u2", anonymousId="shared-laptop"),
    )
    result = resolve()
    assert result.conflicts == 1
    assert pid("user_id", "u1") != pid("user_id", "u2")
    assert pid("anonymous_id", "shared-laptop") == pid("user_id", "u1")
    edge = Edge.objects.get(applied=False)
    assert edge.conflict == "limit:user_id"
    entry = MergeLedgerEntry.objects.get(action=LedgerAction.CONFLICT)
    assert entry.edge_id == edge.pk
    assert entry.details == {"conflict": "limit:user_id"}


def test_an_email_shared_by_two_users_stays_with_the_first(web: int) -> None:
    ingest(
        web,
        message("identify", userId="u1", traits={"email": "family@example.com"}),
        message("identify", at=1, userId="u2", traits={"email": "family@example.com", "plan": "x"}),
    )
    resolve()
    assert pid("email", "family@example.com") == pid("user_id", "u1") != pid("user_id", "u2")
    assert Profile.objects.get(pk=pid("user_id", "u2")).traits["plan"]["value"] == "x"


@override_settings(CDP_MERGE_RULES={"LIMITS": {"anonymous_id": None}, "MAX_PROFILE_IDENTIFIERS": 4})
def test_the_size_guardrail_stops_a_mega_profile_and_says_why(web: int) -> None:
    ingest(
        web,
        *(message("identify", at=i, userId="kiosk", anonymousId=f"a{i}") for i in range(6)),
    )
    result = resolve()
    assert result.conflicts == 3
    assert Identifier.objects.filter(profile_id=pid("user_id", "kiosk")).count() == 4
    assert MergeLedgerEntry.objects.filter(action=LedgerAction.GUARDRAIL).count() == 3


def test_blocked_ids_link_nothing(web: int) -> None:
    ingest(
        web,
        message("identify", userId="u1", anonymousId="undefined"),
        message("identify", at=1, userId="u2", anonymousId="undefined"),
        message("track", at=2, anonymousId="null"),
    )
    resolve()
    assert pid("user_id", "u1") != pid("user_id", "u2")
    assert Event.objects.filter(identifier_id=0).count() == 1  # nothing to anchor it on


def test_rerunning_the_resolver_changes_nothing(web: int, crm: int) -> None:
    ingest(web, message("identify", userId="u1", anonymousId="a1", traits={"email": "x@y.io"}))
    upsert(crm, {"external_id": "C-9", "email": "x@y.io"})
    resolve()
    before = _snapshot()
    again = resolve()
    assert again.empty
    assert _snapshot() == before


def test_a_changed_record_is_resolved_again_without_duplicate_evidence(crm: int) -> None:
    upsert(crm, {"external_id": "C-1", "email": "old@example.com", "city": "Leeds"})
    resolve()
    upsert(crm, {"external_id": "C-1", "email": "old@example.com", "city": "York"})
    result = resolve()
    assert result.records == 1
    assert Edge.objects.filter(rule=EdgeRule.CRM_RECORD).count() == 1
    assert Profile.objects.get(pk=pid("external", "crm:C-1")).traits["city"]["observations"] == 1


def _snapshot() -> tuple[object, ...]:
    return (
        sorted(Identifier.objects.values_list("id", "profile_id", "event_count")),
        sorted(Edge.objects.values_list("id", "applied")),
        sorted(Profile.objects.values_list("id", "merged_into_id", "event_count", "traits")),
        MergeLedgerEntry.objects.count(),
    )


PII = {
    "email": "Grace.Hopper@Navy.example",
    "phone": "+1 415 555 0199",
    "name": "Grace Brewster Hopper",
    "address": {"street": "1 Compiler Way", "city": "Arlington"},
}


def _identity_tables_text() -> str:
    """Every row of every identity table, as PostgreSQL prints it (bytea as hex, JSON as text)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'identity\\_%%' "
            "OR tablename IN ('crypto_datakey')"
        )
        tables = [row[0] for row in cursor.fetchall()]
        dumped = []
        for table in tables:
            cursor.execute(f"SELECT t::text FROM {table} t")  # noqa: S608 (catalog names)
            dumped += [row[0] for row in cursor.fetchall()]
    return "\n".join(dumped)


def test_no_identity_table_holds_pii_in_clear(web: int, crm: int) -> None:
    ingest(web, message("identify", userId="gh", traits={**PII, "plan": "admiral"}))
    upsert(crm, {"external_id": "C-7", "email": PII["email"], "first_name": "Grace"})
    resolve()
    text = _identity_tables_text().lower()
    assert "admiral" in text  # the dump does show non-PII traits
    for needle in ("grace", "hopper", "navy.example", "4155550199", "compiler way", "arlington"):
        assert needle not in text, needle


def test_a_trait_ciphertext_moved_to_another_observation_does_not_decrypt(web: int) -> None:
    ingest(web, message("identify", userId="gh", traits={"email": "a@x.io", "name": "Ann"}))
    resolve()
    email, name = TraitObservation.objects.filter(name__in=["email", "name"]).order_by("name")
    assert email.value is None and email.value_ciphertext is not None
    assert decrypt(email.value_ciphertext, aad=TraitObservation.value_aad(email.pk)) == '"a@x.io"'
    with pytest.raises(DecryptionFailed):
        decrypt(email.value_ciphertext, aad=TraitObservation.value_aad(name.pk))


def test_repeated_identify_calls_add_to_one_observation_per_value(web: int) -> None:
    """SDKs identify on every page: the table grows with distinct values, not with calls."""
    ingest(
        web,
        *(message("identify", at=at, userId="u1", traits={"plan": "pro"}) for at in (5, 1, 9)),
    )
    resolve()
    ingest(web, message("identify", at=3, userId="u1", traits={"plan": "pro", "email": "a@x.io"}))
    ingest(web, message("identify", at=4, userId="u1", traits={"email": "a@x.io"}))
    resolve()
    plan = TraitObservation.objects.get(name="plan")
    assert (plan.count, plan.first_observed_at.second, plan.observed_at.second) == (4, 1, 9)
    email = TraitObservation.objects.get(name="email")
    assert email.count == 2 and email.value is None  # PII: ciphertext only, once
    traits = Profile.objects.get(pk=pid("user_id", "u1")).traits
    assert traits["plan"]["observations"] == 4 and traits["plan"]["value"] == "pro"
    latest = Event.objects.filter(type="identify").order_by("timestamp").last()
    assert latest is not None and traits["plan"]["origin_id"] == latest.pk


@override_settings(CDP_TRAITS={"RULES": {"plan": "first_seen"}})
def test_first_seen_provenance_names_the_first_statement(web: int) -> None:
    ingest(
        web,
        message("identify", at=7, userId="u1", traits={"plan": "pro"}),
        message("identify", at=2, userId="u1", traits={"plan": "free"}),
        message("identify", at=9, userId="u1", traits={"plan": "free"}),
    )
    resolve()
    traits = Profile.objects.get(pk=pid("user_id", "u1")).traits
    first = Event.objects.filter(type="identify").order_by("timestamp").first()
    assert first is not None
    assert traits["plan"]["value"] == "free" and traits["plan"]["origin_id"] == first.pk
    assert traits["plan"]["observed_at"] == first.timestamp.isoformat()


def test_observations_of_an_erased_identifier_no_longer_count(web: int) -> None:
    ingest(web, message("identify", userId="u1", anonymousId="a1", traits={"plan": "pro"}))
    ingest(web, message("identify", at=1, anonymousId="a1", traits={"email": "a@x.io"}))
    resolve()
    profile = pid("user_id", "u1")
    assert set(Profile.objects.get(pk=profile).traits) == {"email", "plan"}
    anon = Identifier.objects.get(kind="anonymous_id")
    data_keys_destroy(ids=[anon.data_key_id])  # the anchor of the email's identify call
    profiles_refresh(profile_ids=[profile], traits_for=[profile])
    assert set(Profile.objects.get(pk=profile).traits) == {"plan"}


def test_a_record_that_changes_its_email_withdraws_the_old_evidence(web: int, crm: int) -> None:
    upsert(crm, {"external_id": "C-1", "email": "old@example.com", "city": "Leeds"})
    ingest(web, message("identify", userId="u-old", traits={"email": "old@example.com"}))
    resolve()
    record_profile = pid("external", "crm:C-1")
    assert pid("user_id", "u-old") == record_profile

    upsert(crm, {"external_id": "C-1", "email": "new@example.com", "city": "Leeds"})
    result = resolve()

    assert result.withdrawn == 1
    assert pid("external", "crm:C-1") == pid("email", "new@example.com")
    # The web user who had the old address is no longer joined to the record.
    assert pid("user_id", "u-old") == pid("email", "old@example.com") != pid("external", "crm:C-1")
    old_edge = Edge.objects.get(rule=EdgeRule.CRM_RECORD, invalidated_at__isnull=False)
    assert old_edge.invalidated_by == "resolver"
    entry = MergeLedgerEntry.objects.get(action=LedgerAction.UNMERGE)
    assert entry.actor == "resolver" and entry.edge_id == old_edge.pk
    # Resolving again changes nothing.
    assert resolve().empty
