"""Run a snippet in a fresh Python process whose settings come only from the environment given:
the way to test what ``cdp/settings.py`` does with environment variables at start-up."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_with_settings(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``django.setup()`` then ``code``, with valid local secrets, no other ``CDP_`` variable
    than ``env`` names, and a database URL that is never connected to."""
    key = base64.b64encode(b"k" * 32).decode()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    clean |= {
        "DJANGO_SETTINGS_MODULE": "cdp.settings",
        "SECRET_KEY": "s" * 50,
        "CDP_MASTER_KEY": f"k1:{key}",
        "CDP_BLIND_INDEX_KEY": key,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cdp_unused",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
