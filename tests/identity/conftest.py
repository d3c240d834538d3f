"""Configurations for the pure identity modules, built without touching the settings."""

from __future__ import annotations

import pytest

from identity.blocklist import Blocklist
from identity.kinds import KindRegistry
from identity.normalization import IdentityConfig


def make_config(
    *,
    region: str | None = "US",
    gmail: bool = False,
    plus_tags: bool = False,
    custom: tuple[str, ...] = (),
) -> IdentityConfig:
    kinds = KindRegistry.build(custom=custom)
    return IdentityConfig(
        kinds=kinds,
        blocklist=Blocklist.build(kinds=kinds.kinds),
        default_phone_region=region,
        gmail_normalization=gmail,
        strip_email_plus_tags=plus_tags,
    )


@pytest.fixture
def config() -> IdentityConfig:
    return make_config()
