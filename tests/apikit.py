"""Helpers for the REST API tests: the API mounted as the server mounts it, tokens, a server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.api import create_api
from postroom.identity import Scope

PREFIX = "/api/v1"
# A Default account nobody listens on and one case type: enough to queue emails and cases.
MINIMAL_RECORDS: dict[str, Any] = {
    "accounts": [
        {"name": "Default", "address": "a@example.com", "host": "127.0.0.1",
         "port": 2525, "security": "none"}
    ],
    "case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"}],
}  # fmt: skip
PUBLIC = {("GET", "/healthz"), ("GET", "/"), ("GET", "/docs"), ("GET", "/docs/{name}")}
# The routes a send token may use, from the issue: create cases and emails, and read or
# advance what it created. Every other route is admin-only.
SEND_ROUTES = {
    ("POST", "/cases"),
    ("GET", "/cases/{case_id}"),
    ("POST", "/cases/{case_id}/status"),
    ("POST", "/cases/{case_id}/attachments"),
    ("GET", "/cases/{case_id}/attachments/{name}"),
    ("GET", "/cases/{case_id}/messages"),
    ("POST", "/emails"),
    ("POST", "/emails/batch"),
    ("GET", "/emails/{email_id}"),
}
SAMPLE_PARAMS = {
    "name": "Default",
    "case_id": "M-1",
    "email_id": "1",
    "message_id": "1",
    "agent_id": "a1",
    "operator_id": "alice",
    "class_name": "A-B-C",
    "address": "jane@example.net",
    "delivery_id": "1",
    "review_id": "1",
    "number": "1",
}


def mounted(postroom: Postroom) -> FastAPI:
    """A bare application with the API at /api/v1, as ``postroom.server`` mounts it."""
    root = FastAPI()
    root.mount(PREFIX, create_api(postroom))
    return root


@dataclass(frozen=True)
class Tokens:
    """Bearer headers of an admin and a send token."""

    admin: dict[str, str]
    send: dict[str, str]


def issue_tokens(postroom: Postroom) -> Tokens:
    admin = postroom.identity.create_token(name="admin", scopes={Scope.ADMIN}).value
    send = postroom.identity.create_token(name="app", scopes={Scope.SEND}).value
    return Tokens({"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {send}"})


def client(postroom: Postroom) -> TestClient:
    return TestClient(mounted(postroom), raise_server_exceptions=False)


def _walk(routes: list[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI keeps included routers as branches (no prefixes are used in the API).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _walk(included.routes)


def api_routes(postroom: Postroom) -> list[tuple[str, str]]:
    """(method, path) of every route of the API, as the application declares them."""
    return [
        (method, route.path)
        for route in _walk(create_api(postroom).routes)
        for method in sorted(route.methods or ())
    ]


def concrete(path: str) -> str:
    return PREFIX + path.format(**SAMPLE_PARAMS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(app: FastAPI, *, start_timeout: float = 10.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("uvicorn did not start in time")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop in time"


def http(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=30.0, trust_env=False)
