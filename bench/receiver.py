"""A webhook receiver for the benchmark; run it as its own process.

It listens on 127.0.0.1 (a free port), speaks HTTP/1.1 with keep-alive as an
application's web server would, checks every request's signature with the
``standardwebhooks`` package and keeps the event ids it got. Its own process, so that
checking signatures does not compete with the dispatcher being measured for the GIL.
The secret comes from the ``BENCH_WEBHOOK_SECRET`` environment variable (never argv,
where other users could read it). It talks to its parent over stdio, one JSON object
per line:

* on start it prints ``{"port": N}``;
* each ``stats`` line read from stdin is answered with the counts so far;
* end of stdin (or ``--max-seconds``) stops it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

SECRET_VARIABLE = "BENCH_WEBHOOK_SECRET"
MAX_BODY = 1024 * 1024


@dataclass
class Received:
    """What the receiver has got so far."""

    requests: int = 0
    verified: int = 0
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event_id: str, *, verified: bool) -> None:
        with self.lock:
            self.requests += 1
            self.verified += verified
            self.ids.append(event_id)

    def as_json(self) -> dict[str, Any]:
        with self.lock:
            distinct = set(self.ids)
            return {
                "requests": self.requests,
                "verified": self.verified,
                "distinct_ids": len(distinct),
                "ids_digest": ids_digest(distinct),
            }


def ids_digest(ids: set[str]) -> str:
    """One hash of a set of event ids, to compare with the database's without sending them."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def handler(webhook: Webhook, received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection per dispatcher slot

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(min(length, MAX_BODY))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                webhook.verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            received.add(headers.get("webhook-id", ""), verified=verified)
            self.send_response(204 if verified else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would cost more than the request

    return Handler


def report(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    args = parser.parse_args()
    secret = os.environ.get(SECRET_VARIABLE)
    if not secret:
        sys.exit(f"receiver: set {SECRET_VARIABLE}")
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(Webhook(secret), received))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    report({"port": server.server_address[1]})

    def give_up() -> None:
        print(f"receiver: stopping after {args.max_seconds:.0f} s", file=sys.stderr)
        os._exit(2)  # the parent's stdin may never close: leave without waiting for it

    timer = threading.Timer(args.max_seconds, give_up)
    timer.daemon = True
    timer.start()
    for line in sys.stdin:
        if line.strip() == "stats":
            report(received.as_json())
    timer.cancel()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
