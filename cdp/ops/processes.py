"""Run the web server and the Celery worker side by side in the foreground (``manage.py serve``).

If either process exits, the other is stopped and the command exits with that status, so a
supervisor (or the person at the terminal) sees the failure instead of half a service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_STOP_GRACE_SECONDS = 15


@dataclass(frozen=True)
class Process:
    name: str
    argv: Sequence[str]


def web_process(*, base_dir: Path, host: str, port: int, workers: int | None) -> Process:
    argv = [
        str(Path(sys.executable).with_name("gunicorn")),
        "cdp.wsgi:application",
        "--config",
        str(base_dir / "deploy" / "gunicorn.conf.py"),
        "--bind",
        f"{host}:{port}",
    ]
    if workers:
        argv += ["--workers", str(workers)]
    return Process("web", argv)


def worker_process(*, beat: bool, concurrency: int) -> Process:
    argv = [
        str(Path(sys.executable).with_name("celery")),
        "--app",
        "cdp",
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
    ]
    if beat:
        argv.append("--beat")
    return Process("worker", argv)


def run_together(processes: Sequence[Process], *, cwd: Path) -> int:
    """Start every process; return when the first exits (or on SIGINT/SIGTERM), stopping all."""
    running: list[tuple[Process, subprocess.Popen[bytes]]] = [
        (proc, subprocess.Popen(proc.argv, cwd=cwd, env=os.environ.copy()))  # noqa: S603
        for proc in processes
    ]
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        while not stopping:
            for proc, popen in running:
                code = popen.poll()
                if code is not None:
                    print(
                        f"{proc.name} exited with status {code}; stopping the rest.",
                        file=sys.stderr,
                    )
                    status = code or 1
                    stopping = True
                    break
            time.sleep(0.5)
    finally:
        _stop_all([popen for _, popen in running])
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _stop_all(popens: list[subprocess.Popen[bytes]]) -> None:
    for popen in popens:
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for popen in popens:
        try:
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
