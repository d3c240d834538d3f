"""The matcher's settings (``settings.CDP_MATCHING``), checked once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from identity.matching.clustering import Thresholds

DEFAULTS: dict[str, Any] = {
    "UPPER": 0.9,
    "LOWER": 0.3,
    "BRIDGE_SCORE": 0.99,
    "MAX_BLOCK": 500,
    "MIN_LABELS": 200,
    "INCREMENTAL_BATCH": 2000,
    "LINK_BATCH": 2000,
    "PERIOD_SECONDS": 60,
}


@dataclass(frozen=True)
class MatchingConfig:
    thresholds: Thresholds
    max_block: int
    min_labels: int
    incremental_batch: int
    link_batch: int


def matching_config() -> MatchingConfig:
    raw = {**DEFAULTS, **getattr(settings, "CDP_MATCHING", {})}
    upper, lower, bridge = float(raw["UPPER"]), float(raw["LOWER"]), float(raw["BRIDGE_SCORE"])
    if not 0.0 <= lower <= upper <= 1.0:
        raise ImproperlyConfigured("CDP_MATCHING: need 0 <= LOWER <= UPPER <= 1")
    if not upper <= bridge <= 1.0:
        raise ImproperlyConfigured("CDP_MATCHING: need UPPER <= BRIDGE_SCORE <= 1")
    return MatchingConfig(
        thresholds=Thresholds(upper=upper, lower=lower, bridge_score=bridge),
        max_block=int(raw["MAX_BLOCK"]),
        min_labels=int(raw["MIN_LABELS"]),
        incremental_batch=int(raw["INCREMENTAL_BATCH"]),
        link_batch=int(raw["LINK_BATCH"]),
    )
