"""Production mode fails fast and clearly without its secrets; local mode needs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "CDP_ENV": "production",
    "SECRET_KEY": "s" * 50,
    "CDP_MASTER_KEY": "k1:" + "A" * 43 + "=",
    "CDP_BLIND_INDEX_KEY": "b" * 44,
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cdp",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "CACHE_URL": "redis://127.0.0.1:6379/1",
    "ALLOWED_HOSTS": "cdp.example",
}


def load_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    for name in PRODUCTION_ENV:
        inherited.pop(name, None)
    clean = {**inherited, **env}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('loaded')"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "cdp.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_settings_load_with_every_secret() -> None:
    result = load_settings(PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


@pytest.mark.parametrize(
    "missing",
    [
        "SECRET_KEY",
        "CDP_MASTER_KEY",
        "CDP_BLIND_INDEX_KEY",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CACHE_URL",
        "ALLOWED_HOSTS",
    ],
)
def test_production_refuses_to_start_without(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = load_settings(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert missing in result.stderr


def test_unknown_environment_name_is_refused() -> None:
    result = load_settings({**PRODUCTION_ENV, "CDP_ENV": "prod"})
    assert result.returncode != 0
    assert "CDP_ENV must be" in result.stderr


def test_production_secrets_never_fall_back_to_generated_ones(tmp_path: Path) -> None:
    """A production process must not read or create .cdp/secrets.json."""
    state = tmp_path / "state"
    result = load_settings({**PRODUCTION_ENV, "CDP_STATE_DIR": str(state)})
    assert result.returncode == 0, result.stderr
    assert not (state / "secrets.json").exists()
