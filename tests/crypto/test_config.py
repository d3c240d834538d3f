"""Key configuration: malformed keys are refused clearly, at start-up and at first use."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django import Settings

from cdp.crypto.blind_index import blind_index
from cdp.crypto.config import blind_index_key_parse, master_keys_parse
from cdp.crypto.services import data_key_create
from tests.crypto.conftest import K1, K2
from tests.ops.test_settings import PRODUCTION_ENV, load_settings

SECRET = base64.b64encode(b"\x05" * 32).decode()
SHORT = base64.b64encode(b"\x05" * 16).decode()


def test_well_formed_keys_parse_newest_first() -> None:
    ring = master_keys_parse([K2, f" {K1} "])
    assert ring.key_ids == ("k2", "k1")
    assert ring.newest.key_id == "k2"
    assert ring.get("k1") is not None and ring.get("k3") is None
    assert SECRET not in repr(ring)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "at least one master key"),
        ([SECRET], "entry 1 must be 'key_id:base64"),
        ([K1, f":{SECRET}"], "entry 2 must be 'key_id:base64"),
        ([f"k 1:{SECRET}"], "entry 1 must be 'key_id:base64"),
        ([f"k1:{SHORT}"], "'k1' must be the base64 encoding of exactly 32"),
        (["k1:not base64!"], "'k1' must be the base64 encoding of exactly 32"),
        ([f"k1:{SECRET}x"], "'k1' must be the base64 encoding of exactly 32"),
        ([K1, f"k1:{SECRET}"], "names master key 'k1' twice"),
    ],
)
def test_malformed_master_keys_are_refused(values: list[str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)) as failure:
        master_keys_parse(values)
    assert SECRET not in str(failure.value) and SHORT not in str(failure.value)


@pytest.mark.parametrize("value", ["", "build", SHORT, "not base64!"])
def test_malformed_blind_index_key_is_refused(value: str, settings: Settings) -> None:
    with pytest.raises(ImproperlyConfigured, match="CDP_BLIND_INDEX_KEY must be"):
        blind_index_key_parse(value)
    settings.CDP_BLIND_INDEX_KEY = value
    with pytest.raises(ImproperlyConfigured):
        blind_index("email", "ada@example.com")


@pytest.mark.django_db
def test_malformed_master_key_is_refused_at_first_use(settings: Settings) -> None:
    settings.CDP_MASTER_KEYS = [f"k1:{SHORT}"]
    with pytest.raises(ImproperlyConfigured, match="'k1' must be the base64 encoding"):
        data_key_create()


def test_production_refuses_to_start_with_a_malformed_master_key() -> None:
    result = load_settings({**PRODUCTION_ENV, "CDP_MASTER_KEY": f"k2:{SHORT},{K1}"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "CDP_MASTER_KEY: master key 'k2' must be the base64 encoding" in result.stderr
    assert SHORT not in result.stderr


def test_the_docker_build_time_keys_are_well_formed() -> None:
    """The image's collectstatic step loads production settings with throwaway keys."""
    dockerfile = (Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile").read_text()
    master = re.search(r"CDP_MASTER_KEY=(\S+)", dockerfile)
    blind = re.search(r"CDP_BLIND_INDEX_KEY=(\S+)", dockerfile)
    assert master and blind
    master_keys_parse(master.group(1).split(","))
    blind_index_key_parse(blind.group(1))
