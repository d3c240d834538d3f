"""Deterministic demo people, the events their web and app visits produce, and CRM records.

Each person is drawn from a random generator seeded by ``(seed, index)``, so person 17 is the
same person whatever ``--people`` says, and every messageId is derived from the seed, the person
and the event's position: loading the same seed twice stores nothing new (events dedupe on
``(source, messageId)``; records upsert to "unchanged").

What people do: anonymous page views, later an identify (userId + email, name, phone) for most;
product views, "Product Added", "Checkout Started" and "Order Completed" with revenue; cart
abandoners who add but never buy; a few aliases from a legacy user id; group calls for people
who buy for a B2B account; screen calls from the mobile app. The CRM knows part of them: some
exactly as on the web, some with variants (nicknames, typos, other phone formats, dropped
accents, no email) and a few twice, so probabilistic matching has work to do.
"""

from __future__ import annotations

import random
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cdp.ingestion.demo import catalog
from cdp.ingestion.demo.catalog import Account, City, Product

DEMO_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-4c1d-9e7f-0a2b3c4d5e6f")


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    first_name: str
    last_name: str
    email: str
    phone_digits: str
    city: City
    street: str
    postcode: str
    birth_date: date
    anonymous_id: str
    user_id: str | None  # None: never identifies on the web
    mobile_id: str | None  # the app's anonymousId, if they use the app
    device: tuple[str, str, str, str, str] | None
    account: Account | None
    legacy_id: str | None  # an older user id, aliased to user_id
    abandoner: bool
    crm: str | None  # "exact", "variant", "only" (CRM knows them, the web does not) or None
    crm_duplicate: bool
    # What the shop's consent banner sends (Segment's categoryPreferences); {}: never answered.
    consent: dict[str, bool] = field(default_factory=dict)
    gpc: bool = False  # their browser sends Global Privacy Control

    @property
    def phone(self) -> str:
        return f"{self.city.phone_prefix} {self.phone_digits}"

    @property
    def phone_local(self) -> str:
        return f"{self.city.trunk_prefix} {self.phone_digits[:3]}-{self.phone_digits[3:]}"

    @property
    def traits(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "name": f"{self.first_name} {self.last_name}",
            "phone": self.phone,
            "address": {"city": self.city.name, "country": self.city.country},
        }


def person_make(*, seed: int, index: int) -> Person:
    rng = random.Random(f"cdp-demo:{seed}:{index}")  # noqa: S311 - demo data, not secrets
    first, last = rng.choice(catalog.FIRST_NAMES), rng.choice(catalog.LAST_NAMES)
    city = rng.choice(catalog.CITIES)
    identifies = rng.random() < 0.6
    mobile = rng.random() < 0.2
    on_crm = rng.random() < (0.45 if identifies else 0.15)
    return Person(
        index=index,
        first_name=first,
        last_name=last,
        email=_email(rng, first, last, index),
        phone_digits=str(rng.randint(2_000_000, 9_899_999)),
        city=city,
        street=f"{rng.choice(catalog.STREET_NAMES)} {rng.randint(1, 180)}",
        postcode=rng.choice(city.postcodes),
        birth_date=date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55)),
        anonymous_id=_uuid(rng),
        user_id=f"usr_{rng.getrandbits(48):012x}" if identifies else None,
        mobile_id=_uuid(rng).upper() if mobile else None,
        device=rng.choice(catalog.MOBILE_DEVICES) if mobile else None,
        account=rng.choice(catalog.ACCOUNTS) if identifies and rng.random() < 0.12 else None,
        legacy_id=f"legacy-{index + 10_000}" if identifies and rng.random() < 0.04 else None,
        abandoner=rng.random() < 0.15,
        crm=(("exact" if rng.random() < 0.65 else "variant") if identifies else "only")
        if on_crm
        else None,
        crm_duplicate=on_crm and rng.random() < 0.04,
        **_privacy_choices(seed, index),
    )


def _privacy_choices(seed: int, index: int) -> dict[str, Any]:
    """The banner answers and GPC of one person, from a generator of their own (so adding them
    left every other demo value as it was)."""
    rng = random.Random(f"cdp-demo-consent:{seed}:{index}")  # noqa: S311 - demo data
    consent = (
        {
            "Analytics": rng.random() < 0.9,
            "Advertising": rng.random() < 0.45,
            "Email": rng.random() < 0.55,
        }
        if rng.random() < 0.7
        else {}
    )
    return {"consent": consent, "gpc": rng.random() < 0.08}


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def ascii_fold(text: str) -> str:
    """Müller -> Muller, José -> Jose: what forms and older systems do to accents."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _email(rng: random.Random, first: str, last: str, index: int) -> str:
    # The index keeps addresses unique, so two demo people never share one by accident.
    first, last = (
        ascii_fold(first).lower(),
        ascii_fold(last).lower().replace(" ", "").replace("'", ""),
    )
    local = rng.choice((f"{first}.{last}{index}", f"{first[0]}{last}{index}", f"{first}{index}"))
    return f"{local}@{rng.choice(catalog.EMAIL_DOMAINS)}"


# --- events -----------------------------------------------------------------------------------
@dataclass
class _Timeline:
    """Builds one person's messages in time order, numbering them for stable messageIds."""

    seed: int
    person: Person
    events: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    def add(self, at: datetime, message: dict[str, Any]) -> None:
        number = len(self.events)
        message["messageId"] = str(
            uuid.uuid5(DEMO_NAMESPACE, f"{self.seed}:{self.person.index}:{number}")
        )
        message["timestamp"] = at.isoformat().replace("+00:00", "Z")
        self.events.append((at, message))


def person_events(
    person: Person, *, seed: int, start: datetime, end: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """Everything ``person`` does between ``start`` and ``end``, as (time, Segment message)."""
    rng = random.Random(f"cdp-demo:{seed}:{person.index}:events")  # noqa: S311 - demo data, not secrets
    # Visits start at least an hour before ``end`` and last well under an hour, so no event is
    # in the future and none is cut off (a later re-run would otherwise store the cut ones).
    span = (end - start).total_seconds() - 3600
    first = rng.uniform(0, span * 0.9)
    count = rng.choices((1, 2, 3, 4, 5, 6, 8), weights=(30, 25, 18, 12, 7, 5, 3))[0]
    offsets = sorted([first, *(rng.uniform(first, span) for _ in range(count - 1))])
    # Most people sign up on an early visit, so later visits are known ones.
    identify_at = min(rng.randrange(count), rng.randrange(count)) if person.user_id else None
    timeline = _Timeline(seed=seed, person=person)
    user_agent = rng.choice(catalog.USER_AGENTS)
    identified = False
    for number, offset in enumerate(offsets):
        at = start + timedelta(seconds=offset)
        identified = identified or identify_at == number
        _web_session(
            timeline, rng, at, user_agent, identify=identify_at == number, known=identified
        )
    if person.mobile_id:
        app_offsets = sorted(rng.uniform(first, span) for _ in range(rng.randint(1, 4)))
        identify_offset = offsets[identify_at] if identify_at is not None else None
        app_known = False
        for offset in app_offsets:
            at = start + timedelta(seconds=offset)
            log_in = not app_known and identify_offset is not None and offset > identify_offset
            app_known = app_known or log_in
            _app_session(timeline, rng, at, log_in=log_in, known=app_known)
    return timeline.events


def _web_context(person: Person, user_agent: str, path: str, title: str) -> dict[str, Any]:
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "4.1.0"},
        "locale": person.city.locale,
        "timezone": person.city.timezone,
        "userAgent": user_agent,
        "page": {"path": path, "url": f"https://shop.example.com{path}", "title": title},
    }
    if person.consent:
        context["consent"] = {"categoryPreferences": person.consent}
    if person.gpc:
        context["gpc"] = True
    return context


def _web_session(
    timeline: _Timeline,
    rng: random.Random,
    at: datetime,
    user_agent: str,
    *,
    identify: bool,
    known: bool,
) -> None:
    person = timeline.person
    ids: dict[str, Any] = {"anonymousId": person.anonymous_id}
    if known and not identify:
        ids["userId"] = person.user_id
    clock = _Clock(rng, at)

    def page(path: str, title: str, **extra: Any) -> None:
        context = _web_context(person, user_agent, path, title)
        if extra:
            context.update(extra)
        properties = {"path": path, "title": title, "url": context["page"]["url"]}
        timeline.add(
            clock.next(), {"type": "page", "name": title, **ids, "properties": properties,
                           "context": context}
        )  # fmt: skip

    def track(event: str, properties: dict[str, Any], path: str, title: str) -> None:
        context = _web_context(person, user_agent, path, title)
        timeline.add(
            clock.next(), {"type": "track", "event": event, **ids, "properties": properties,
                           "context": context}
        )  # fmt: skip

    landing_path, landing_title = rng.choice(catalog.CONTENT_PAGES)
    extra: dict[str, Any] = {"referrer": {"url": rng.choice(catalog.REFERRERS)}}
    if rng.random() < 0.4:
        extra["campaign"] = rng.choice(catalog.CAMPAIGNS)
    page(landing_path, landing_title, **extra)

    if identify:
        ids["userId"] = person.user_id
        context = _web_context(person, user_agent, "/account/signup", "Sign up")
        timeline.add(
            clock.next(), {"type": "identify", **ids, "traits": person.traits, "context": context}
        )
        if person.legacy_id:
            timeline.add(
                clock.next(),
                {"type": "alias", "previousId": person.legacy_id, "userId": person.user_id,
                 "context": context},
            )  # fmt: skip
        if person.account:
            account = person.account
            traits = {"name": account.name, "industry": account.industry,
                      "employees": account.employees, "plan": account.plan}  # fmt: skip
            timeline.add(
                clock.next(),
                {"type": "group", **ids, "groupId": account.group_id, "traits": traits,
                 "context": context},
            )  # fmt: skip

    cart: list[Product] = []
    for _ in range(rng.randint(0, 4)):
        product = rng.choice(catalog.PRODUCTS)
        path, title = f"/products/{product.slug}", product.name
        page(path, title)
        track("Product Viewed", _product_properties(product), path, title)
        if rng.random() < (0.6 if person.abandoner else 0.35):
            quantity = 1 if rng.random() < 0.8 else 2
            cart.append(product)
            track("Product Added", _product_properties(product, quantity=quantity), path, title)
    buys = cart and known and not person.abandoner and rng.random() < 0.6
    if buys:
        track("Checkout Started", _order_properties(rng, person, cart), "/checkout", "Checkout")
        order = _order_properties(rng, person, cart)
        track("Order Completed", order, "/checkout/done", "Thank you")


def _app_session(
    timeline: _Timeline, rng: random.Random, at: datetime, *, log_in: bool, known: bool
) -> None:
    person = timeline.person
    assert person.device is not None and person.mobile_id is not None
    kind, manufacturer, model, os_name, os_version = person.device
    context = {
        "library": {"name": f"analytics-{kind}", "version": "4.3.1"},
        "app": {"name": "Trailhead Shop", "version": "3.12.0", "build": "3120"},
        "device": {"type": kind, "manufacturer": manufacturer, "model": model},
        "os": {"name": os_name, "version": os_version},
        "locale": person.city.locale,
        "timezone": person.city.timezone,
    }
    ids: dict[str, Any] = {"anonymousId": person.mobile_id}
    if known and not log_in:
        ids["userId"] = person.user_id
    clock = _Clock(rng, at)
    timeline.add(clock.next(), {"type": "screen", "name": "Home", **ids, "context": context})
    if log_in:
        ids["userId"] = person.user_id
        timeline.add(
            clock.next(),
            {"type": "identify", **ids, "traits": person.traits, "context": context},
        )
    for _ in range(rng.randint(1, 4)):
        screen = rng.choice(catalog.APP_SCREENS)
        properties: dict[str, Any] = {}
        if screen == "Product Detail":
            properties = _product_properties(rng.choice(catalog.PRODUCTS))
        timeline.add(
            clock.next(),
            {"type": "screen", "name": screen, **ids, "properties": properties,
             "context": context},
        )  # fmt: skip


class _Clock:
    """Time moving forward through a session, 5 s to 2 min between actions."""

    def __init__(self, rng: random.Random, at: datetime) -> None:
        self._rng, self._at = rng, at

    def next(self) -> datetime:
        self._at += timedelta(
            seconds=self._rng.randint(5, 120), milliseconds=self._rng.randint(0, 999)
        )
        return self._at


def _product_properties(product: Product, *, quantity: int | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "product_id": product.sku,
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "price": product.price,
    }
    if quantity is not None:
        properties["quantity"] = quantity
    return properties


def _order_properties(rng: random.Random, person: Person, cart: list[Product]) -> dict[str, Any]:
    currency = "USD" if person.city.country in ("US", "CA", "AU") else "EUR"
    subtotal = round(sum(product.price for product in cart), 2)
    shipping = 0.0 if subtotal >= 100 else 4.9
    return {
        "order_id": f"ord-{rng.getrandbits(40):010x}",
        "revenue": subtotal,
        "shipping": shipping,
        "tax": round(subtotal * 0.19, 2),
        "total": round(subtotal + shipping, 2),
        "currency": currency,
        "products": [_product_properties(product, quantity=1) for product in cart],
    }


# --- CRM records ------------------------------------------------------------------------------
def person_records(person: Person, *, seed: int) -> Iterator[dict[str, Any]]:
    """The CRM's view of ``person``: nothing, one record, or (rarely) two that disagree."""
    if person.crm is None:
        return
    rng = random.Random(f"cdp-demo:{seed}:{person.index}:crm")  # noqa: S311 - demo data, not secrets
    record = {
        "external_id": f"crm-{seed}-{person.index:06d}",
        "email": person.email,
        "phone": person.phone_local if rng.random() < 0.5 else person.phone,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "street": person.street,
        "city": person.city.name,
        "postcode": person.postcode,
        "country": person.city.country,
        "birth_date": person.birth_date.isoformat(),
        "attributes": {
            "segment": rng.choice(catalog.CRM_SEGMENTS),
            "lifetime_value": round(rng.uniform(0, 2500), 2),
            "customer_since": (date(2015, 1, 1) + timedelta(days=rng.randrange(3300))).isoformat(),
            "account_manager": rng.choice(catalog.ACCOUNT_MANAGERS),
            "newsletter": rng.random() < 0.5,
        },
    }
    if person.crm == "variant":
        record = _variant(rng, record)
    yield record
    if person.crm_duplicate:
        duplicate = _variant(
            rng, {**record, "external_id": f"crm-{seed}-{person.index + 500_000:06d}"}
        )
        yield duplicate


def _variant(rng: random.Random, record: dict[str, Any]) -> dict[str, Any]:
    """The same person as another system typed them: one or two differences."""
    record = dict(record)
    changes = rng.sample(
        ("email_case", "email_typo", "gmail_dots", "no_email", "nickname", "name_typo", "ascii",
         "no_birth_date"),
        k=rng.randint(1, 2),
    )  # fmt: skip
    local, _, domain = record["email"].partition("@")
    for change in changes:
        if change == "email_case":
            record["email"] = f"{local.title()}@{domain.upper()}"
        elif change == "email_typo":
            record["email"] = f"{local}@{_domain_typo(domain)}"
        elif change == "gmail_dots" and domain == "gmail.com":
            record["email"] = f"{local.replace('.', '')}@googlemail.com"
        elif change == "no_email":
            record["email"] = ""
        elif change == "nickname":
            record["first_name"] = catalog.NICKNAMES.get(
                record["first_name"], record["first_name"][:3]
            )
        elif change == "name_typo" and len(record["last_name"]) > 3:
            name = record["last_name"]
            at = rng.randrange(1, len(name) - 2)
            record["last_name"] = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
        elif change == "ascii":
            record["first_name"] = ascii_fold(record["first_name"])
            record["last_name"] = ascii_fold(record["last_name"])
        elif change == "no_birth_date":
            record["birth_date"] = None
    return record


def _domain_typo(domain: str) -> str:
    """A well-known misspelling, or the domain with one letter dropped."""
    if domain in catalog.DOMAIN_TYPOS:
        return catalog.DOMAIN_TYPOS[domain]
    name, dot, tld = domain.partition(".")
    return f"{name[:-2]}{name[-1]}{dot}{tld}"


def demo_start_end(*, now: datetime, days: int) -> tuple[datetime, datetime]:
    """The window events fall in: the ``days`` up to the current hour (whole hours keep re-runs
    within the hour identical; later re-runs still store nothing, their messageIds repeat)."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end
