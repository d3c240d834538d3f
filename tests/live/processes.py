"""Environment for the processes live tests start (workers, servers): same database, same broker."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import connection


def database_url(settings_dict: dict[str, Any]) -> str:
    """A ``DATABASE_URL`` for the database Django is connected to (the test database).

    The host is percent-encoded, so the embedded server's Unix socket directory survives the URL.
    """
    user = quote(settings_dict.get("USER") or "", safe="")
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    host = quote(settings_dict.get("HOST") or "", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    name = quote(settings_dict["NAME"], safe="")
    options = settings_dict.get("OPTIONS") or {}
    simple = {key: value for key, value in options.items() if isinstance(value, (str, int))}
    query = f"?{urlencode(simple)}" if simple else ""
    return f"postgres://{credentials}@{host}{port}/{name}{query}"


def process_env() -> dict[str, str]:
    """The current environment, pointed at the test database and this process's broker."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cdp.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "PYTHONUNBUFFERED": "1",
    }
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # No broker URL: the worker must read the directory this process writes to.
        env.pop("CELERY_BROKER_URL", None)
        env["CDP_BROKER_DIR"] = settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"]
    else:
        env["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    return env
