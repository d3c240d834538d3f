"""``manage.py serve`` (what ``make demo`` ends in): gunicorn and a Celery worker, started and
stopped together, serving the real API against the test database."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import pytest
from django.conf import settings

from cdp.ingestion.models import Event
from cdp.ingestion.services import source_create
from tests.conftest import basic_auth
from tests.live.processes import process_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

START_SECONDS = 60.0
STOP_SECONDS = 40.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {**process_env(), "GUNICORN_WORKERS": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--no-beat"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Served(process=process, port=port, log_path=log_path)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print(f"--- serve log ---\n{log_path.read_text(errors='replace')}")


def _wait_until_healthy(server: Served) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"serve exited with {server.process.returncode} before it was healthy")
        try:
            if server.request("GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"serve was not healthy within {START_SECONDS} s")


def test_serve_ingests_and_stops_cleanly_with_its_children(served: Served) -> None:
    write_key = source_create(name="serve-test").write_key
    body = orjson.dumps({"userId": "u-serve", "event": "Served", "messageId": "serve-1"})
    status, payload = served.request(
        "POST",
        "/v1/track",
        body,
        {"Content-Type": "application/json", "Authorization": basic_auth(write_key)},
    )
    assert status == 200, payload
    assert Event.objects.filter(message_id="serve-1", user_id="u-serve").count() == 1
    assert served.request("GET", "/readyz")[0] == 200
    assert served.request("GET", "/admin/login/")[0] == 200

    children = psutil.Process(served.process.pid).children(recursive=True)
    names = " ".join(" ".join(child.cmdline()) for child in children)
    assert "gunicorn" in names and "celery" in names, names

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=STOP_SECONDS) == 0
    _gone, alive = psutil.wait_procs(children, timeout=STOP_SECONDS)
    assert alive == [], f"still running after serve stopped: {alive}"


def test_serve_stops_when_a_child_dies(served: Served) -> None:
    children = psutil.Process(served.process.pid).children()
    worker = next(child for child in children if "celery" in " ".join(child.cmdline()))
    worker.kill()
    assert served.process.wait(timeout=STOP_SECONDS) != 0
    assert "stopping the rest" in served.log_path.read_text()
    assert not any(
        child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children
    )
