"""Validation of CRM records (API and file import share it): pure functions, no database."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

from cdp.crypto.blind_index import keyed_digest
from cdp.ingestion.validation import Invalid, ItemError, bounded_text, has_nul

MAX_FIELD_LENGTH = {
    "external_id": 255,
    "email": 320,
    "phone": 64,
    "first_name": 200,
    "last_name": 200,
    "street": 300,
    "city": 200,
    "postcode": 32,
    "country": 64,
}
TEXT_FIELDS = ("email", "phone", "first_name", "last_name", "street", "city", "postcode", "country")
# The person fields, stored only encrypted (cdp.ingestion.pii); country stays in clear.
PII_FIELDS = ("email", "phone", "first_name", "last_name", "street", "city", "postcode")
DIGEST_PURPOSE = "record-digest"
ADDRESS_KEYS = {
    "street": "street",
    "city": "city",
    "postcode": "postcode",
    "postal_code": "postcode",
    "country": "country",
}
KNOWN_FIELDS = frozenset({"external_id", "birth_date", "attributes", "address", *TEXT_FIELDS})
MAX_ATTRIBUTES_BYTES = 16 * 1024
_PHONE = re.compile(r"^[0-9+()\-.\s/x]{3,64}$")


@dataclass(frozen=True, slots=True)
class RecordRow:
    external_id: str
    email: str
    phone: str
    first_name: str
    last_name: str
    street: str
    city: str
    postcode: str
    country: str
    birth_date: date | None
    attributes: str  # JSON text, without the PII keys (those are in ``pii``)
    content_digest: str
    # JSON text of the PII: the person fields that have a value and ``{"attributes": {...}}``
    # for attributes named in ``pii_keys``; None when there is none. Encrypted before storing.
    pii: str | None = None


@dataclass(frozen=True, slots=True)
class RecordError(ItemError):
    external_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"external_id": self.external_id, **ItemError.as_dict(self)}


def validate_record(
    raw: Any,
    *,
    index: int,
    extra_as_attributes: bool = False,
    pii_keys: frozenset[str] = frozenset(),
) -> RecordRow | RecordError:
    """Validate one record. With ``extra_as_attributes`` unknown keys (CSV columns) become
    attributes; otherwise they are an error, so API typos are not silently kept. The person
    fields and the attributes named in ``pii_keys`` go to ``RecordRow.pii``."""
    external_id = raw.get("external_id") if isinstance(raw, dict) else None
    try:
        return _validate(raw, extra_as_attributes=extra_as_attributes, pii_keys=pii_keys)
    except Invalid as exc:
        return RecordError(
            index=index,
            attr=exc.attr,
            code=exc.code,
            detail=exc.detail,
            external_id=str(external_id) if isinstance(external_id, (str, int)) else None,
        )


def _validate(raw: Any, *, extra_as_attributes: bool, pii_keys: frozenset[str]) -> RecordRow:
    if not isinstance(raw, dict):
        raise Invalid(None, "not_an_object", "Each record must be a JSON object.")
    attributes = raw.get("attributes")
    if attributes is None or attributes == "":  # "" is an empty CSV column
        attributes = {}
    if not isinstance(attributes, dict):
        raise Invalid("attributes", "not_an_object", "attributes must be a JSON object.")
    unknown = {key: value for key, value in raw.items() if key not in KNOWN_FIELDS}
    if unknown and not extra_as_attributes:
        name = sorted(unknown)[0]
        raise Invalid(
            name, "unknown_field", f"Unknown field {name!r}; put free fields in attributes."
        )
    attributes = {**unknown, **attributes}

    values = {name: _text(raw.get(name), name, name) for name in TEXT_FIELDS}
    address = raw.get("address")
    if isinstance(address, dict):
        for key, field in ADDRESS_KEYS.items():
            if not values[field] and address.get(key) is not None:
                values[field] = _text(address.get(key), f"address.{key}", field)
    elif isinstance(address, str):
        values["street"] = values["street"] or _text(address, "address", "street")
    elif address is not None:
        raise Invalid("address", "invalid", "address must be a string or an object.")

    external_id = _text(raw.get("external_id"), "external_id", "external_id")
    if not external_id:
        raise Invalid("external_id", "required", "external_id is required.")
    if values["email"] and "@" not in values["email"]:
        raise Invalid("email", "invalid_email", "email is not an email address.")
    if values["phone"] and not _PHONE.match(values["phone"]):
        raise Invalid("phone", "invalid_phone", "phone contains characters a phone number cannot.")
    birth_date = _date(raw.get("birth_date"))

    encoded_attributes = orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS)
    if len(encoded_attributes) > MAX_ATTRIBUTES_BYTES:
        raise Invalid("attributes", "too_large", f"attributes exceed {MAX_ATTRIBUTES_BYTES} bytes.")
    if has_nul(encoded_attributes):
        raise Invalid("attributes", "null_character", "Text may not contain the NUL character.")
    # Keyed, not a plain hash: the digest covers the PII, and a plain hash of it could be
    # confirmed against guesses by anyone who can read the table.
    digest = keyed_digest(
        DIGEST_PURPOSE,
        orjson.dumps([external_id, *(values[name] for name in TEXT_FIELDS), str(birth_date or "")])
        + encoded_attributes,
    )
    pii: dict[str, Any] = {name: values[name] for name in PII_FIELDS if values[name]}
    if birth_date is not None:
        pii["birth_date"] = birth_date.isoformat()
    if pii_keys and not pii_keys.isdisjoint(attributes):
        pii["attributes"] = {key: value for key, value in attributes.items() if key in pii_keys}
        attributes = {key: value for key, value in attributes.items() if key not in pii_keys}
        encoded_attributes = orjson.dumps(attributes, option=orjson.OPT_SORT_KEYS)
    return RecordRow(
        external_id=external_id,
        birth_date=birth_date,
        attributes=encoded_attributes.decode(),
        content_digest=digest,
        pii=orjson.dumps(pii, option=orjson.OPT_SORT_KEYS).decode() if pii else None,
        **values,
    )


def _text(value: Any, attr: str, field: str) -> str:
    """The trimmed text of ``field``, read from ``attr`` (``address.postal_code``...)."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Invalid(attr, "invalid_string", f"{attr} must be a string.")
    return bounded_text(str(value).strip(), attr=attr, limit=MAX_FIELD_LENGTH[field])


def _date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Invalid("birth_date", "invalid_date", "birth_date must be a YYYY-MM-DD string.")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(
            "birth_date", "invalid_date", "birth_date must be a YYYY-MM-DD date."
        ) from None
