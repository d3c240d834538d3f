"""The person fields the matcher compares, in canonical form (pure, pandas).

A profile is read as one row of these fields (``inputs``); ``prepare`` canonicalizes them and
derives the parts blocking and comparing need (birth date parts, the email's local part, the
phone's last digits, a name key). Nothing here touches the database or keeps a value.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pandas as pd

FIELDS = ("first_name", "last_name", "street", "city", "postcode", "birth_date", "email", "phone")
PHONE_SUFFIX_DIGITS = 7
_NOT_ALNUM = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
_EMAIL_TAG = re.compile(r"\+.*$")
_EMAIL_SEPARATORS = re.compile(r"[._\-0-9]+")


def fold(value: Any) -> str | None:
    """Lower case, accents and punctuation removed, spaces collapsed; None when empty."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = unicodedata.normalize("NFKD", str(value))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _SPACES.sub(" ", _NOT_ALNUM.sub(" ", text)).strip()
    return text or None


# Street-type abbreviations, so "12 High St" and "12 High Street" agree.
STREET_WORDS = {
    "st": "street",
    "str": "street",
    "rd": "road",
    "ave": "avenue",
    "av": "avenue",
    "pl": "place",
    "ln": "lane",
    "dr": "drive",
    "ct": "court",
    "cres": "crescent",
    "tce": "terrace",
    "hwy": "highway",
    "blvd": "boulevard",
    "sq": "square",
}


def _street(value: Any) -> str | None:
    text = fold(value)
    if text is None:
        return None
    return " ".join(STREET_WORDS.get(word, word) for word in text.split(" "))


def _postcode(value: Any) -> str | None:
    text = fold(value)
    return text.replace(" ", "") if text else None


def _email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.strip().lower() or None


def _email_local(email: str | None) -> str | None:
    """The local part without a +tag, separators and digits: ``jon.smith+news1`` -> ``jonsmith``."""
    if email is None:
        return None
    local = _EMAIL_SEPARATORS.sub("", _EMAIL_TAG.sub("", email.partition("@")[0]))
    return local or None


def _digits(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return digits or None


def _date_parts(value: Any) -> tuple[int, int, int] | None:
    """(year, month, day) of an ISO date (or YYYYMMDD); None when it does not parse."""
    if not isinstance(value, str):
        return None
    digits = value.replace("-", "").strip()
    if len(digits) != 8 or not digits.isdigit():
        return None
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    return year, month, day


def prepare(raw: pd.DataFrame) -> pd.DataFrame:
    """Canonical fields plus derived columns, same index as ``raw`` (which has ``FIELDS``)."""
    out = pd.DataFrame(index=raw.index)
    for name in ("first_name", "last_name", "city"):
        out[name] = raw[name].map(fold)
    out["street"] = raw["street"].map(_street)
    out["postcode"] = raw["postcode"].map(_postcode)
    out["email"] = raw["email"].map(_email)
    out["email_local"] = out["email"].map(_email_local)
    out["phone"] = raw["phone"].map(_digits)
    out["phone_suffix"] = out["phone"].map(
        lambda d: d[-PHONE_SUFFIX_DIGITS:] if d and len(d) >= PHONE_SUFFIX_DIGITS else None
    )
    parts = raw["birth_date"].map(_date_parts)
    out["birth_year"] = parts.map(lambda p: p[0] if p else None).astype("Int64")
    out["birth_month"] = parts.map(lambda p: p[1] if p else None).astype("Int64")
    out["birth_day"] = parts.map(lambda p: p[2] if p else None).astype("Int64")
    out["birth_date"] = parts.map(lambda p: f"{p[0]:04d}{p[1]:02d}{p[2]:02d}" if p else None)
    out["name"] = [
        _name_key(first, last)
        for first, last in zip(out["first_name"], out["last_name"], strict=True)
    ]
    return out


def _name_key(first: str | None, last: str | None) -> str | None:
    """``first last`` without spaces (compared with an email's local part)."""
    if not first and not last:
        return None
    return f"{first or ''}{last or ''}".replace(" ", "")
