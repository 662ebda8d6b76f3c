"""Helpers for the Admin Studio tests: a logged-in client, CSRF tokens, the reference records."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from postroom import Postroom
from postroom.config.apply import parse_yaml
from postroom.web import create_studio

ADMIN = "admin"
PASSWORD = "correct-horse-battery"
EXAMPLES = Path(__file__).parent.parent / "examples"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def mortgage_records() -> dict[str, Any]:
    """The reference scenario without its accounts (the tests create those)."""
    records: dict[str, Any] = parse_yaml((EXAMPLES / "mortgage.yaml").read_text())
    records.pop("accounts")
    return records


def log_in(client: TestClient, *, username: str = ADMIN, password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; returns the session's CSRF token."""
    form = client.get("/login")
    assert form.status_code == 200
    done = client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "username": username, "password": password},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    return csrf_of(client.get("/").text)


def studio_client(
    pr: Postroom, *, inbox_dir: Path | None = None, https: bool = False
) -> TestClient:
    """A client of the studio app (not logged in); an admin user exists."""
    if not any(u.username == ADMIN for u in pr.identity.admins()):
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
    base = "https://testserver" if https else "http://testserver"
    return TestClient(create_studio(pr, inbox_dir=inbox_dir), base_url=base)
