"""The service as one process: API, Admin Studio and agent together; ``postroom serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from postroom import Postroom
from postroom.outbox import OutboxStatus
from postroom.server import create_app
from tests.apikit import issue_tokens
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_delivery import account

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], *, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """uvicorn with the application's lifespan (which runs the agent) in a thread."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), limit=10)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=40)
        assert not thread.is_alive(), "the service did not stop in time"


def test_one_process_serves_the_api_the_studio_and_runs_the_agent(tmp_path: Path) -> None:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        tokens = issue_tokens(pr)
        with running(create_app(pr)) as base, httpx.Client(base_url=base, timeout=30) as web:
            assert web.get("/api/v1/openapi.json").status_code == 200
            assert web.get("/api/v1/healthz").status_code == 200
            login = web.get("/", follow_redirects=False)
            assert login.status_code in (302, 303, 307)
            assert login.headers["location"].endswith("/login")
            created = web.post(
                "/api/v1/emails",
                json={"to": ["a@example.net"], "subject": "Hi", "body": "<p>b</p>"},
                headers=tokens.send,
            )
            assert created.status_code == 201, created.text
            email_id = created.json()["ids"][0]

            def sent() -> bool:
                got = web.get(f"/api/v1/emails/{email_id}", headers=tokens.send)
                return bool(got.json()["status"] == OutboxStatus.SENT)

            wait_for(sent)  # the agent in the same process delivered it
            [agent] = web.get("/api/v1/agents", headers=tokens.admin).json()
            assert agent["state"] == "running"
        assert len(srv.sink.received) == 1
        assert [a.state for a in pr.agents()] == ["stopped"]  # stopped with the server


def test_no_agent_leaves_the_outbox_to_agents_elsewhere(tmp_path: Path) -> None:
    with smtp_server() as srv, Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [account(srv.port)]})
        with running(create_app(pr, run_agent=False)):
            outbox_id = pr.send(to=["a@example.net"], subject="s", body="b", class_name="Default")
            time.sleep(0.5)  # ten poll intervals
            assert pr.outbox_entry(outbox_id).status is OutboxStatus.QUEUED
        assert pr.agents() == []
        assert srv.sink.received == []


def test_serve_demo_prints_the_url_and_a_login_once(tmp_path: Path) -> None:
    port, inbox_port = free_port(), free_port()
    env = {
        **os.environ,
        "POSTROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
        "POSTROOM_SECRET_KEY": "s" * 32,
    }
    env.pop("POSTROOM_DEMO_SMTP_PASSWORD", None)
    command = [
        sys.executable, "-m", "postroom", "serve", "--demo", "--port", str(port),
        "--inbox-port", str(inbox_port), "--inbox-dir", str(tmp_path / "inbox"),
        "--config", str(ROOT / "examples" / "mortgage.yaml"),
    ]  # fmt: skip

    def run_once() -> str:
        process = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            wait_for(
                lambda: _answers(f"http://127.0.0.1:{port}/login") or process.poll() is not None
            )
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        finally:
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=40)
        assert process.returncode == 0, output.decode()
        return output.decode()

    first = run_once()
    assert f"Admin Studio: http://127.0.0.1:{port}/" in first
    assert "Log in as:    admin  password: " in first
    second = run_once()
    assert "log in as 'admin' with the password printed when it was created" in second
    password = first.split("password: ", 1)[1].split()[0]
    assert password not in second


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(POSTROOM_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}", POSTROOM_SECRET_KEY="s" * 32)
    env.update(extra)
    return env


def test_serve_on_a_port_in_use_says_so_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "postroom", "serve", "--port", str(port)],
            env=serve_env(tmp_path),
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2
    assert done.stdout == b""  # no URL, no "agent: running" for a service that never ran
    err = done.stderr.decode()
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address already in use)")
    assert len(err.strip().splitlines()) == 1


def test_serve_follows_the_log_level_setting(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "postroom", "serve", "--port", str(port)],
        env=serve_env(tmp_path, POSTROOM_LOG_LEVEL="DEBUG"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api/v1/healthz"), limit=30)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=40)
    assert process.returncode == 0, output.decode()
    assert " DEBUG " in output.decode()  # INFO was all serve would show before
