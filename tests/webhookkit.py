"""A real webhook receiver on 127.0.0.1 that verifies every request as an application would.

It runs Python's HTTP server in a thread, checks each request's signature with the
``standardwebhooks`` package, and keeps what it got. It can be stopped and started again
on the same port (an endpoint that is down for a while), answer with any status and body,
and hold requests open (a slow endpoint) until released. It speaks HTTP/1.1 with
keep-alive, as applications' servers do, and counts the connections it was given.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes import free_port


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET = new_secret()


@dataclass(frozen=True)
class Request:
    """One request as received: its headers, body and whether its signature held."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    """How the receiver answers: a status, or a status per try of each event id."""

    status: int = 204
    first_tries: list[int] = field(default_factory=list)  # answers to an id's 1st, 2nd... try
    hold_first: bool = False  # keep each id's first request open until released
    answer_bytes: int = 0  # the length of the body of each answer


class Receiver:
    """The endpoint: ``url`` to register, ``requests`` received (verified or not)."""

    def __init__(self, secret: str = SECRET, *, port: int | None = None) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.behaviour = Behaviour()
        self.requests: list[Request] = []
        self.holding = 0  # requests held open right now
        self.connections = 0  # TCP connections accepted since it was made
        self.answers_cut = 0  # answers whose body the client did not take in full
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._tries: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/postroom"

    # --- what it got -----------------------------------------------------------------

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event_id for r in self.requests]

    def answered_ok(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.answered < 300]

    # --- running ---------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``port`` (the same one after a stop)."""
        self._release.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port and the connections kept open: refused until :meth:`start`."""
        self.release()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            kept = list(self._open)
        for connection in kept:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def release(self) -> None:
        """Answer every request held open."""
        self._release.set()

    def _answer(self, event_id: str) -> tuple[int, bool]:
        """The status for this try of ``event_id``, and whether to hold it first."""
        with self._lock:
            tries = self._tries[event_id] = self._tries.get(event_id, 0) + 1
            b = self.behaviour
            status = b.first_tries[tries - 1] if tries <= len(b.first_tries) else b.status
            return status, b.hold_first and tries == 1

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._open.discard(connection)

    def _cut(self) -> None:
        with self._lock:
            self.answers_cut += 1


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as an application's server answers

        def setup(self) -> None:
            super().setup()
            receiver._opened(self.connection)

        def finish(self) -> None:
            receiver._closed(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                Webhook(receiver.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            status, hold = receiver._answer(headers.get("webhook-id", ""))
            if hold:
                with receiver._lock:
                    receiver.holding += 1
                # Bounded: a test that forgets to release still ends.
                receiver._release.wait(60)
                with receiver._lock:
                    receiver.holding -= 1
            receiver._record(Request(self.path, headers, body, verified, status))
            answer = b"x" * receiver.behaviour.answer_bytes
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                self.wfile.flush()
            except OSError:  # the client gave up waiting, or stopped reading the body
                self.close_connection = True
                if answer:
                    receiver._cut()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet in test output

    return Handler


@contextmanager
def receiver(secret: str = SECRET) -> Iterator[Receiver]:
    """A started :class:`Receiver`, stopped at the end of the block."""
    r = Receiver(secret)
    r.start()
    try:
        yield r
    finally:
        r.stop()
