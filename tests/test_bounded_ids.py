"""Numbers past what the database holds (ids, pages, limits, ports) are refused in one line
by the CLI and as a page by the Studio, never with a traceback or a 500."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from postroom import Postroom
from postroom.cli import main
from postroom.cli.common import MAX_ID
from postroom.web import pages
from postroom.web.pages.bounds import MAX_ID as STUDIO_MAX_ID
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import log_in, studio_client

HUGE = "99999999999999999999"
HUGE_PAGE = "99999999999999999999999"
NOT_FOUND_EXIT = 3

# Every command taking an id, a page-by-id bound, a row count or a port; X is the value.
COMMANDS = [
    ["webhooks", "delivery", "X"],
    ["webhooks", "redeliver", "X"],
    ["webhooks", "deliveries", "--before", "X"],
    ["webhooks", "deliveries", "--limit", "X"],
    ["outbox", "show", "X"],
    ["outbox", "retry", "X"],
    ["outbox", "cancel", "X"],
    ["outbox", "list", "--limit", "X"],
    ["inbound", "show", "X"],
    ["inbound", "dismiss", "X"],
    ["inbound", "attach", "X", "T-1"],
    ["inbound", "create-case", "X", "MyOrg-Work-Thing"],
    ["inbound", "list", "--limit", "X"],
    ["cases", "list", "--limit", "X"],
    ["suppressions", "list", "--limit", "X"],
    ["dev-inbox", "show", "X"],
    ["dev-inbox", "--port", "X"],
    ["demo", "--port", "X"],
    ["serve", "--port", "X"],
    ["serve", "--demo", "--inbox-port", "X"],
]
ID_COMMANDS = [c for c in COMMANDS if c[0] in ("webhooks", "outbox", "inbound") and c[2] == "X"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('ids') / 'ids.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
        with Postroom(make_settings(url)):  # the schema, so a lookup would really run
            pass
    return url


def run(
    database: str,
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """The ``postroom`` entry point as a shell runs it: its exit code and all it printed."""
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)  # the demo and dev inbox folders, were anything to start
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(sys, "argv", ["postroom", "--database-url", database, *args])
    with pytest.raises(SystemExit) as exited:
        main()
    printed = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), printed.out + printed.err


@pytest.mark.parametrize("value", [HUGE, "-1", "0"])
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_cli_refuses_numbers_out_of_range_in_one_line(
    database: str,
    command: list[str],
    value: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [value if a == "X" else a for a in command]
    code, printed = run(database, args, tmp_path, monkeypatch, capsys)
    assert code in (2, NOT_FOUND_EXIT), printed
    assert "Traceback" not in printed
    assert "Overflow" not in printed
    assert printed.startswith("error: "), printed
    assert printed.count("\n") == 1, printed
    if command[:2] == ["dev-inbox", "show"]:
        # A message number of the dev inbox folder, never a database id: not there.
        assert code == NOT_FOUND_EXIT or "-1" in printed
    elif value == HUGE:
        assert code == 2
        bound = "65535" if "port" in command[-2] else "less than or equal to"
        assert bound in printed


@pytest.mark.parametrize("command", ID_COMMANDS, ids=" ".join)
def test_cli_takes_the_largest_id_and_says_it_is_not_there(
    database: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(MAX_ID) if a == "X" else a for a in command]
    code, printed = run(database, args, tmp_path, monkeypatch, capsys)
    assert code == NOT_FOUND_EXIT, printed
    assert str(MAX_ID) in printed
    assert printed.count("\n") == 1, printed


# --- Studio ---------------------------------------------------------------------------------

ID_ROUTES = [
    ("GET", "/outbox/{}"),
    ("GET", "/outbox/{}/body"),
    ("POST", "/outbox/{}/retry"),
    ("POST", "/outbox/{}/cancel"),
    ("GET", "/inbound/{}"),
    ("GET", "/inbound/{}/body"),
    ("GET", "/inbound/{}/raw"),
    ("POST", "/inbound/{}/attach"),
    ("POST", "/inbound/{}/case"),
    ("POST", "/inbound/{}/dismiss"),
    ("GET", "/webhooks/deliveries/{}"),
    ("POST", "/webhooks/deliveries/{}/redeliver"),
    ("GET", "/reviews/{}"),
    ("GET", "/reviews/{}/body"),
    ("POST", "/reviews/{}/approve"),
    ("POST", "/reviews/{}/reject"),
]
BOUNDED_QUERIES = [
    "/outbox?page={}",
    "/inbound?page={}",
    "/suppressions?page={}",
    "/webhooks?before={}",
    "/correspondence/versions?from={}&name=Letter",
    "/correspondence/versions?to={}&name=Letter",
    "/correspondence/versions/show?number={}&name=Letter",
    "/reviews?page={}",
]
# Read by hand and clamped to what exists (the cases page, the dashboard's hours), or
# ignored when out of range (the outbox's version filter).
CLAMPED_QUERIES = ["/cases?page={}", "/?hours={}", "/outbox?version={}&correspondence=Letter"]


@pytest.fixture
def studio(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    with Postroom(make_settings(database_url)) as pr, studio_client(pr) as client:
        pr.apply({"correspondence": [{"name": "Letter", "subject": "S", "html": "<p>x</p>"}]})
        yield client, log_in(client)


def ask(client: TestClient, csrf: str, method: str, path: str) -> tuple[int, str, str]:
    got = (
        client.get(path, follow_redirects=False)
        if method == "GET"
        else client.post(path, data={"csrf_token": csrf}, follow_redirects=False)
    )
    return got.status_code, got.headers.get("content-type", ""), got.text


def test_studio_answers_ids_out_of_range_with_its_not_found_page(
    studio: tuple[TestClient, str],
) -> None:
    client, csrf = studio
    wrong = []
    for method, route in ID_ROUTES:
        for value in (HUGE, "-1", "0", str(MAX_ID + 1)):
            path = route.format(value)
            status, kind, text = ask(client, csrf, method, path)
            if (status, kind.split(";")[0]) != (404, "text/html") or (
                f"There is nothing at {path}" not in text
            ):
                wrong.append((method, path, status, text[:200]))
    assert wrong == []


def test_studio_takes_the_largest_id_and_finds_nothing_there(
    studio: tuple[TestClient, str],
) -> None:
    client, csrf = studio
    wrong = []
    for method, route in ID_ROUTES:
        path = route.format(MAX_ID)
        status, _, text = ask(client, csrf, method, path)
        # Not there: the not-found page, or (an action) back to the record with the reason.
        if status not in (303, 404) or "nothing at" in text:
            wrong.append((method, path, status, text[:200]))
    assert wrong == []


def test_studio_refuses_pages_and_bounds_out_of_range_as_a_page(
    studio: tuple[TestClient, str],
) -> None:
    client, csrf = studio
    wrong = []
    for query in BOUNDED_QUERIES:
        for value in (HUGE_PAGE, HUGE, "-1", "0"):
            path = query.format(value)
            status, kind, text = ask(client, csrf, "GET", path)
            name = query.split("?")[1].split("=")[0]
            if status != 422 or not kind.startswith("text/html") or f"{name}: Input" not in text:
                wrong.append((path, status, text[:200]))
        for value in ("1", str(MAX_ID)):
            path = query.format(value)
            status, _, text = ask(client, csrf, "GET", path)
            if status != 200:
                wrong.append((path, status, text[:200]))
    for query in CLAMPED_QUERIES:
        for value in (HUGE_PAGE, "-1", "0", str(MAX_ID)):
            path = query.format(value)
            status, _, text = ask(client, csrf, "GET", path)
            if status != 200:
                wrong.append((path, status, text[:200]))
    assert wrong == []


def test_every_number_a_studio_address_takes_is_bounded() -> None:
    """A page added later with a bare ``int`` id, page or bound is caught here."""
    assert STUDIO_MAX_ID == MAX_ID == 2**31 - 1
    routes = [
        route
        for info in pkgutil.iter_modules(pages.__path__)
        for route in getattr(
            importlib.import_module(f"{pages.__name__}.{info.name}"), "router", APIRouter()
        ).routes
        if isinstance(route, APIRoute)
    ]
    assert len(routes) > 40
    bare, bounded = [], 0
    for route in routes:
        for param in route.dependant.path_params + route.dependant.query_params:
            if param.field_info.annotation not in (int, int | None):
                continue
            bounds = {type(m).__name__: m for m in param.field_info.metadata}
            le = getattr(bounds.get("Le"), "le", None)
            ge = getattr(bounds.get("Ge"), "ge", None)
            if (ge, le) == (1, MAX_ID):
                bounded += 1
            elif (route.path, param.name) != ("/", "hours"):  # one of a few choices, else 3
                bare.append(f"{route.path} {param.name}")
    assert bare == []
    assert bounded == len(ID_ROUTES) + len(BOUNDED_QUERIES)


def test_a_page_asked_for_with_a_bad_value_is_not_shown_not_unsaved(
    studio: tuple[TestClient, str],
) -> None:
    client, _ = studio
    answer = client.get("/correspondence/versions?name=Letter&from=0")
    assert answer.status_code == 422
    assert "Not shown" in answer.text
    assert "Not saved" not in answer.text
