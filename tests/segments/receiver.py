"""A real HTTP server on 127.0.0.1 in a thread, answering webhook POSTs with scripted status
codes and keeping what it received (headers, body)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    statuses: list[int]  # answered in order; the last one repeats
    delay_seconds: float = 0.0
    # > 0: the answer's headers trickle, one every drip_seconds for delay_seconds (each read
    # of the sender's within its timeout, the whole answer not).
    drip_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0  # the most requests being answered at once
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/cdp?x=1"

    def next_status(self) -> int:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]


@contextmanager
def receiver(
    *statuses: int, delay_seconds: float = 0.0, drip_seconds: float = 0.0
) -> Iterator[Receiver]:
    state = Receiver(
        statuses=list(statuses), delay_seconds=delay_seconds, drip_seconds=drip_seconds
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(
                    Received(path=self.path, headers=dict(self.headers.items()), body=body)
                )
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                status = state.next_status()
            if state.drip_seconds:
                self._drip(status)
                return
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            with state.lock:
                state.in_flight -= 1
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def _drip(self, status: int) -> None:
            try:
                self.wfile.write(f"HTTP/1.1 {status} OK\r\n".encode())
                ends = time.monotonic() + state.delay_seconds
                while time.monotonic() < ends:
                    self.wfile.write(b"X-Drip: 1\r\n")
                    self.wfile.flush()
                    time.sleep(state.drip_seconds)
                self.wfile.write(b"Content-Length: 2\r\n\r\nok")
            except OSError:
                pass  # the sender hung up
            finally:
                with state.lock:
                    state.in_flight -= 1

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64  # concurrent senders must not overflow the listen backlog

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
