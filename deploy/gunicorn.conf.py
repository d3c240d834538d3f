"""Gunicorn configuration, used in production and by ``benchmarks/ingest.py``.

Everything comes from the environment so one file serves every deployment:

* ``GUNICORN_BIND`` (default ``0.0.0.0:8000``), ``GUNICORN_WORKERS`` (default: see below),
  ``GUNICORN_THREADS`` (default 2), ``GUNICORN_KEEPALIVE`` seconds (default 5),
  ``GUNICORN_TIMEOUT`` seconds (default 30), ``GUNICORN_ACCESS_LOG=1`` to log every request.

Worker model: ``gthread``. The sync worker closes the connection after every response, and SDKs
and load balancers reuse connections, so keep-alive needs a threaded (or async) worker. A request
spends part of its time waiting on PostgreSQL's commit, so two threads per process keep the CPU
busy; 2 or 4 processes and 1 to 4 threads measured the same within the noise (BENCHMARKS.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def _available_cores() -> int:
    """Cores this process may use: its cgroup's CPU quota in a container (a pod limited to one
    CPU on a 32-core node must not start 33 workers), else the CPUs it may run on."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return len(os.sched_getaffinity(0))


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000").split(",")
# One process per core plus one, so a core is never idle while a process waits on the database.
workers = _env_int("GUNICORN_WORKERS", _available_cores() + 1)
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 2)
keepalive = _env_int("GUNICORN_KEEPALIVE", 5)
timeout = _env_int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 20
# Import the app once in the master: workers fork with Django loaded (less memory, fast start).
preload_app = True
# Recycle workers now and then so a slow leak can never take a node down.
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 100_000)
max_requests_jitter = max_requests // 10
# Access logs cost throughput on the ingest path; the load balancer usually has them already.
_access_log = os.environ.get("GUNICORN_ACCESS_LOG", "").lower() in {"1", "true", "yes"}
accesslog = "-" if _access_log else None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Behind a proxy that terminates TLS; trust X-Forwarded-* only from the addresses given.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Heartbeat files: a tmpfs (e.g. /dev/shm in containers) avoids stalls on a slow disk.
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or None


def pre_fork(server: object, worker: object) -> None:
    """Never let workers inherit a database connection the master opened while preloading."""
    from django.db import connections
    from django.urls import get_resolver

    for conn in connections.all(initialized_only=True):
        conn.close()
    # Import the URLconf (and so every view module) once here rather than in each worker's
    # first request.
    _patterns = get_resolver().url_patterns
