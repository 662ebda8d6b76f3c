"""Limits at the door, over a real socket: request body size, login and API-token throttling."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from postroom import Postroom
from postroom.security.devices import DEVICE_LIFETIME, DeviceCookies
from postroom.security.throttle import Limits, Throttle
from postroom.server import create_app
from tests.apikit import Tokens, http, issue_tokens, serve
from tests.conftest import make_settings
from tests.studiokit import ADMIN, PASSWORD, csrf_of

LIMIT = 64 * 1024
WINDOW = 5.0  # seconds: short enough to wait out, long enough to fail inside it
PER_ADDRESS = 4
PER_USER = 6
WRONG = "not-the-password-at-all"


@dataclass
class Door:
    """A running service with small limits, its base URL and tokens."""

    base: str
    port: int
    tokens: Tokens


@contextmanager
def running(database_url: str, *, window: float) -> Iterator[Door]:
    settings = make_settings(
        database_url,
        max_request_bytes=LIMIT,
        auth_window_seconds=window,
        auth_address_failures=PER_ADDRESS,
        auth_user_failures=PER_USER,
    )
    with Postroom(settings) as pr:
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        tokens = issue_tokens(pr)
        with serve(create_app(pr, run_agent=False)) as base:
            yield Door(base, int(base.rsplit(":", 1)[1]), tokens)


@pytest.fixture
def door(database_url: str) -> Iterator[Door]:
    """The service with a window short enough for a test to wait out."""
    with running(database_url, window=WINDOW) as service:
        yield service


@pytest.fixture
def slow_door(database_url: str) -> Iterator[Door]:
    """The service with a window no test outlasts, for tests that must stay inside it."""
    with running(database_url, window=600) as service:
        yield service


def client_from(base: str, address: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from ``address`` (any 127/8 address is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base, timeout=30.0, trust_env=False, transport=transport)


def exchange(
    port: int, head: bytes, chunks: Sequence[bytes] = ()
) -> tuple[int, dict[str, str], bytes]:
    """Send a request head and some body bytes, never the rest; read the answer until closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)
        received = b""
        while data := sock.recv(65536):  # a timeout here: the server waited for the body
            received += data
    head_part, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head_part.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    if "chunked" in headers.get("transfer-encoding", ""):
        body = unchunked(body)
    return int(status_line.split()[1]), headers, body


def request_head(path: str, fields: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def unchunked(body: bytes) -> bytes:
    """A chunked response body, decoded (uvicorn streams Jinja pages in chunks)."""
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    return out


def wait_for(condition: Callable[[], bool], *, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def metric(service: Door, name: str, **labels: str) -> float:
    # From an address no test throttles: the API's own token check counts addresses.
    with client_from(service.base, "127.0.0.99") as web:
        text = web.get("/api/v1/metrics", headers=service.tokens.admin).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name} {labels} is not in /metrics")


# Bodies over the limit


def test_a_declared_length_over_the_limit_gets_413_before_the_body_is_sent(door: Door) -> None:
    head = request_head(
        "/api/v1/emails",
        {
            "Content-Type": "application/json",
            "Content-Length": str(10**9),
            "Authorization": door.tokens.admin["Authorization"],
        },
    )
    # 1 GB announced, nothing sent: an answer at all proves the server did not wait for it.
    # (Bytes it never read would make its close a TCP reset, which may discard the answer.)
    status, headers, body = exchange(door.port, head)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == 413
    assert str(LIMIT) in problem["detail"]
    assert "max_request_bytes" in problem["detail"]
    assert metric(door, "postroom_requests_too_large_total", door="api") == 1


def test_a_chunked_api_body_is_refused_once_it_passes_the_limit(door: Door) -> None:
    head = request_head(
        "/api/v1/emails",
        {
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            "Authorization": door.tokens.admin["Authorization"],
        },
    )
    piece = b"[" + b" " * (16 * 1024 - 1)
    # One chunk past the limit and no final chunk: the body never ends.
    status, headers, body = exchange(door.port, head, [chunk(piece)] * (LIMIT // len(piece) + 1))
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 413


def test_a_chunked_body_under_the_limit_is_read(door: Door) -> None:
    with http(door.base) as web:
        answer = web.post(
            "/api/v1/emails",
            content=iter([b'{"to": ["a@example.net"],', b' "subject": 5}']),
            headers={**door.tokens.admin, "Content-Type": "application/json"},
        )
    assert answer.status_code == 422, answer.text  # parsed and validated, not refused


def test_studio_forms_over_the_limit_get_a_413_page(door: Door) -> None:
    head = request_head(
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(10**9)},
    )
    # The head alone: a server that waited for the body would time out the read. Bytes
    # it never read would make its close a TCP reset, which may discard the answer.
    status, headers, body = exchange(door.port, head)
    assert status == 413
    assert headers["content-type"].startswith("text/html")
    assert "Content-Security-Policy" in {k.title(): v for k, v in headers.items()}
    assert b"Too large" in body
    assert str(LIMIT).encode() in body

    boundary = "b0undary"
    head = request_head(
        "/login",
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Transfer-Encoding": "chunked",
        },
    )
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    pieces = [chunk(part)] + [chunk(b"x" * 16 * 1024)] * (LIMIT // (16 * 1024) + 1)
    status, headers, body = exchange(door.port, head, pieces)
    assert status == 413
    assert headers["content-type"].startswith("text/html")
    assert b"Too large" in body
    assert metric(door, "postroom_requests_too_large_total", door="studio") == 2


# Studio logins


def log_in(web: httpx.Client, password: str, *, username: str = ADMIN) -> httpx.Response:
    form = web.get("/login")
    assert form.status_code == 200
    fields = {"csrf_token": csrf_of(form.text), "username": username, "password": password}
    return web.post("/login", data=fields, follow_redirects=False)


def test_failed_logins_are_delayed_then_refused_until_the_window_passes(
    door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postroom")
    with client_from(door.base, "127.0.0.2") as attacker:
        for _ in range(PER_ADDRESS):
            assert log_in(attacker, WRONG).status_code == 401
        refused = log_in(attacker, WRONG)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("text/html")
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= WINDOW
        assert f"Try again in {wait} seconds" in refused.text
        # The right password does not help from a refused address...
        assert log_in(attacker, PASSWORD).status_code == 429
        # ...while the user, elsewhere, is not locked out by one address's guesses.
        with client_from(door.base, "127.0.0.3") as user:
            assert log_in(user, PASSWORD).status_code == 303
        # Refused attempts are not counted: once the window passes, the right password works.
        wait_for(lambda: log_in(attacker, PASSWORD).status_code == 303, limit=WINDOW + 15)

    assert metric(door, "postroom_auth_failures_total", door="studio") == PER_ADDRESS
    # The third and fourth guesses, and the user's own login (the user had 4 of 6 failures).
    assert metric(door, "postroom_auth_throttled_total", door="studio", action="delayed") == 3
    assert metric(door, "postroom_auth_throttled_total", door="studio", action="refused") >= 2
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("postroom")]
    assert sum("Studio login failed" in line for line in lines) == PER_ADDRESS
    assert any("Studio login refused" in line for line in lines)
    assert not [line for line in lines if WRONG in line or PASSWORD in line]


def test_a_success_forgets_that_address_and_a_user_is_limited_from_all_addresses(
    slow_door: Door,
) -> None:
    door = slow_door
    below = PER_ADDRESS - 1
    with client_from(door.base, "127.0.0.2") as first:
        for _ in range(below):
            assert log_in(first, WRONG).status_code == 401
        assert log_in(first, PASSWORD).status_code == 303
        # Without the known-device cookie of that login, as a stranger at that address.
        first.cookies.delete("postroom_device", path="/login")
        # The success took this address's failures for the user back: as many again pass.
        for _ in range(below):
            assert log_in(first, WRONG).status_code == 401
    with client_from(door.base, "127.0.0.3") as second:
        for _ in range(PER_USER - below):
            assert log_in(second, WRONG).status_code == 401
    # The user has had PER_USER failures from two addresses: refused for everyone now.
    with client_from(door.base, "127.0.0.4") as third:
        assert log_in(third, PASSWORD).status_code == 429
        assert log_in(third, WRONG, username="someone-else").status_code == 401


def test_parallel_guesses_cannot_slip_under_the_limit(slow_door: Door) -> None:
    door = slow_door

    def guess(_: int) -> int:
        with client_from(door.base, "127.0.0.5") as web:
            return log_in(web, WRONG).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(guess, range(8)))
    assert answers.count(401) == PER_ADDRESS
    assert answers.count(429) == 8 - PER_ADDRESS


# API tokens


def test_failed_api_tokens_are_throttled_per_address_not_for_the_tokens_holder(
    door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="postroom")
    value = door.tokens.admin["Authorization"].removeprefix("Bearer ")
    token_id, _, secret = value.removeprefix("prt_").partition("_")
    wrong = {"Authorization": f"Bearer prt_{token_id}_{'x' * len(secret)}"}
    with client_from(door.base, "127.0.0.2") as attacker:
        answers = [attacker.get("/api/v1/agents", headers=wrong) for _ in range(PER_ADDRESS)]
        assert [a.status_code for a in answers] == [401] * (PER_ADDRESS - 1) + [429]
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= WINDOW
        assert refused.json()["status"] == 429
        # The address is refused even with a live token...
        assert attacker.get("/api/v1/agents", headers=door.tokens.admin).status_code == 429
        # ...but the token's holder, elsewhere, is not locked out by its misused id.
        with client_from(door.base, "127.0.0.3") as holder:
            assert holder.get("/api/v1/agents", headers=door.tokens.admin).status_code == 200
        wait_for(
            lambda: attacker.get("/api/v1/agents", headers=door.tokens.admin).status_code == 200,
            limit=WINDOW + 15,
        )

    assert metric(door, "postroom_auth_failures_total", door="api") == PER_ADDRESS
    assert metric(door, "postroom_auth_throttled_total", door="api", action="delayed") == 2
    assert metric(door, "postroom_auth_throttled_total", door="api", action="refused") >= 2
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("postroom")]
    assert sum("API token rejected" in line for line in lines) == PER_ADDRESS
    assert not [line for line in lines if secret in line or "x" * len(secret) in line]


# The throttle's table


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_holds_a_bounded_table_and_forgets_expired_failures() -> None:
    clock = Clock()
    throttle = Throttle(Limits(window=60, per_address=3, per_subject=5, capacity=100), clock=clock)
    for n in range(10_000):
        throttle.failed(subject=f"user{n}", address=f"10.0.{n // 256}.{n % 256}")
    assert throttle.size() <= 300
    for _ in range(3):
        throttle.failed(subject="admin", address="192.0.2.1")
    assert throttle.admit(subject="admin", address="192.0.2.1").refused
    clock.now += 61
    assert not throttle.admit(subject="admin", address="192.0.2.1").refused


# Known devices: strangers' failures cannot lock the user out of a browser used before


def from_address(door: Door, address: str) -> httpx.Client:
    """A client seen as ``address``: uvicorn trusts X-Forwarded-For from 127.0.0.1."""
    web = client_from(door.base)
    web.headers["X-Forwarded-For"] = address
    return web


def test_a_known_browser_logs_in_while_strangers_have_locked_the_user(slow_door: Door) -> None:
    door = slow_door
    with from_address(door, "198.51.100.1") as known:
        assert log_in(known, PASSWORD).status_code == 303
        cookie = known.cookies.get("postroom_device", path="/login")
    assert cookie
    # A distributed guesser: each wrong password from another address, none of them refused.
    for n in range(PER_USER):
        with from_address(door, f"203.0.113.{n + 1}") as stranger:
            assert log_in(stranger, WRONG).status_code == 401
    # The user is locked for browsers that never logged in, the real user's new one too...
    with from_address(door, "198.51.100.2") as new_browser:
        refused = log_in(new_browser, PASSWORD)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 1
        assert "has logged in as this user before" in refused.text
    # ...but the browser that logged in before gets in, from yet another address.
    with from_address(door, "198.51.100.3") as known:
        known.cookies.set("postroom_device", cookie, path="/login")
        assert log_in(known, PASSWORD).status_code == 303
    # A device cookie proves nothing once changed.
    with from_address(door, "198.51.100.4") as forged:
        forged.cookies.set("postroom_device", cookie[:-2] + "AA", path="/login")
        assert log_in(forged, PASSWORD).status_code == 429


def test_a_device_cookie_binds_one_user_under_one_key_for_a_lifetime() -> None:
    clock = Clock()
    clock.now = 1_000_000.0
    devices = DeviceCookies(b"k" * 32, clock=clock)
    value = devices.issue("admin")
    device = devices.device_of(value, username="admin")
    assert device
    assert devices.device_of(value, username="admin2") is None
    assert DeviceCookies(b"x" * 32, clock=clock).device_of(value, username="admin") is None
    payload, _, mac = value.rpartition(".")
    assert devices.device_of(payload.replace("d1.", "d2.") + "." + mac, username="admin") is None
    clock.now += DEVICE_LIFETIME + 1
    assert devices.device_of(value, username="admin") is None


def test_a_known_browser_is_limited_per_device_and_its_failures_spare_the_user(
    slow_door: Door,
) -> None:
    door = slow_door
    with from_address(door, "198.51.100.1") as known:
        assert log_in(known, PASSWORD).status_code == 303
        cookie = known.cookies.get("postroom_device", path="/login")
    assert cookie
    # The device's own guesses, spread over addresses, stop at the per-address limit.
    for n in range(PER_ADDRESS):
        with from_address(door, f"203.0.113.{n + 1}") as thief:
            thief.cookies.set("postroom_device", cookie, path="/login")
            assert log_in(thief, WRONG).status_code == 401
    with from_address(door, "203.0.113.99") as thief:
        thief.cookies.set("postroom_device", cookie, path="/login")
        assert log_in(thief, PASSWORD).status_code == 429
    # They were the device's, not the user's: a new browser of the user still gets in.
    with from_address(door, "198.51.100.2") as new_browser:
        assert log_in(new_browser, PASSWORD).status_code == 303
