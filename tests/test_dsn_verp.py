"""DSN (RFC 3461) and VERP on the wire, and the account's bounce address.

A real aiosmtpd server (tests/dsnkit.py) offers DSN, or not, and keeps the MAIL FROM
and RCPT TO lines as they came: the parameters are checked there, for pipelined and
one-command-at-a-time transactions, and the envelope sender against the row's token.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from postroom import Postroom
from postroom.bounces.verp import is_token, token_in
from postroom.db import tables
from postroom.errors import ConfigurationError
from postroom.outbox import OutboxStatus
from postroom.transports.base import DsnRequest
from postroom.transports.dsn import mail_parameters, rcpt_parameters, xtext
from tests.apikit import MINIMAL_RECORDS, http, issue_tokens, mounted, serve
from tests.conftest import TEST_KEY, make_settings
from tests.dsnkit import DsnSink, dsn_smtp_server
from tests.studiokit import ADMIN, PASSWORD, csrf_of, serving
from tests.test_delivery import ALICE, SENDER, account, queue, run_agent
from tests.test_studio import account_form

BOUNCES = "bounces@example.com"
CAROL = "carol+invoices@example.net"  # a "+" of its own: xtext-encoded in ORCPT


def token_of(pr: Postroom, outbox_id: int) -> str:
    with pr.engine.connect() as conn:
        token = conn.execute(
            select(tables.outbox.c.bounce_token).where(tables.outbox.c.id == outbox_id)
        ).scalar_one()
    assert isinstance(token, str)
    assert is_token(token)
    return token


# --- xtext and the parameter strings ----------------------------------------------------


def test_xtext_encodes_plus_equals_space_and_controls() -> None:
    assert xtext("carol+invoices@example.net") == "carol+2Binvoices@example.net"
    assert xtext("a=b c\t") == "a+3Db+20c+09"
    assert xtext("plain.Address_1@x.example") == "plain.Address_1@x.example"
    with pytest.raises(ValueError, match="US-ASCII"):
        xtext("zoë@example.net")


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=60))
def test_xtext_is_printable_and_decodes_back(value: str) -> None:
    encoded = xtext(value)
    assert all("!" <= c <= "~" and c != "=" for c in encoded)
    decoded = re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m[1], 16)), encoded)
    assert decoded == value


def test_parameters_for_a_request_and_for_none() -> None:
    dsn = DsnRequest(envid="abcdefghij234567abcd")
    assert mail_parameters(dsn) == ["RET=HDRS", "ENVID=abcdefghij234567abcd"]
    assert rcpt_parameters(dsn, CAROL) == [
        "NOTIFY=FAILURE,DELAY",
        "ORCPT=rfc822;carol+2Binvoices@example.net",
    ]
    assert mail_parameters(None) == []
    assert rcpt_parameters(None, ALICE) == []


def test_an_internationalised_recipient_gets_notify_but_no_orcpt() -> None:
    # ORCPT's rfc822 type is xtext, ASCII only; RFC 6533's utf-8 type is not used.
    assert rcpt_parameters(DsnRequest(envid="x"), "zoë@example.net") == ["NOTIFY=FAILURE,DELAY"]


# --- On the wire ------------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_dsn_parameters_are_sent_where_the_server_offers_dsn(
    postroom: Postroom, pipelining: bool
) -> None:
    sink = DsnSink(pipelining=pipelining)
    with dsn_smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port, bounce_address=BOUNCES)]})
        outbox_id = queue(postroom, ALICE, CAROL)
        run_agent(postroom)
    assert postroom.outbox_entry(outbox_id).status is OutboxStatus.SENT
    token = token_of(postroom, outbox_id)
    assert sink.pipelined == [pipelining]  # the path under test was the one taken
    assert sink.mail_lines == [f"FROM:<bounces+{token}@example.com> RET=HDRS ENVID={token}"]
    assert sink.rcpt_lines == [
        f"TO:<{ALICE}> NOTIFY=FAILURE,DELAY ORCPT=rfc822;{ALICE}",
        "TO:<carol+invoices@example.net> NOTIFY=FAILURE,DELAY "
        "ORCPT=rfc822;carol+2Binvoices@example.net",
    ]
    assert [r.rcpt_tos for r in sink.received] == [[ALICE, CAROL]]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_no_dsn_parameters_where_the_server_does_not_offer_dsn(
    postroom: Postroom, pipelining: bool
) -> None:
    sink = DsnSink(dsn=False, pipelining=pipelining)
    with dsn_smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port, bounce_address=BOUNCES)]})
        outbox_id = queue(postroom, ALICE, CAROL)
        run_agent(postroom)
    assert postroom.outbox_entry(outbox_id).status is OutboxStatus.SENT
    token = token_of(postroom, outbox_id)
    assert sink.pipelined == [pipelining]
    assert sink.mail_lines == [f"FROM:<bounces+{token}@example.com>"]
    assert sink.rcpt_lines == [f"TO:<{ALICE}>", f"TO:<{CAROL}>"]


def test_each_email_has_its_own_verp_sender_and_the_from_header_stays(
    postroom: Postroom,
) -> None:
    sink = DsnSink()
    with dsn_smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port, bounce_address=BOUNCES)]})
        first = queue(postroom, ALICE, subject="First")
        second = queue(postroom, ALICE, subject="Second")
        run_agent(postroom)
    by_subject = {r.message["Subject"]: r for r in sink.received}
    tokens = {token_of(postroom, first), token_of(postroom, second)}
    assert len(tokens) == 2
    for outbox_id, subject in ((first, "First"), (second, "Second")):
        sent = by_subject[subject]
        token = token_of(postroom, outbox_id)
        assert sent.mail_from == f"bounces+{token}@example.com"
        assert token_in(sent.mail_from, BOUNCES) == token
        assert sent.message["From"].addresses[0].addr_spec == SENDER
        assert token not in str(sent.message["From"]) + str(sent.message["Reply-To"] or "")


def test_without_a_bounce_address_the_account_address_is_the_envelope_sender(
    postroom: Postroom,
) -> None:
    sink = DsnSink()
    with dsn_smtp_server(sink) as srv:
        postroom.apply({"accounts": [account(srv.port)]})
        outbox_id = queue(postroom, ALICE)
        run_agent(postroom)
    token = token_of(postroom, outbox_id)
    assert [r.mail_from for r in sink.received] == [SENDER]
    # The report still names the email, by its ENVID.
    assert sink.mail_lines == [f"FROM:<{SENDER}> RET=HDRS ENVID={token}"]


# --- The account's bounce address: apply, API, Studio, CLI ------------------------------

SMTP = {"name": "Default", "address": SENDER, "host": "smtp.example.com"}
BAD = {
    "bounces+x@example.com": "must not contain '+'",
    "not an address": "bounce_address",
    "b" * 44 + "@example.com": "at most 43 characters",
}


@pytest.mark.parametrize("value", list(BAD))
def test_apply_refuses_a_bad_bounce_address_and_says_where(
    sqlite_postroom: Postroom, value: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        sqlite_postroom.apply({"accounts": [SMTP | {"bounce_address": value}]})
    message = str(refused.value)
    assert "accounts" in message
    assert "bounce_address" in message
    assert BAD[value] in message
    assert "Traceback" not in message


def test_a_graph_account_cannot_have_a_bounce_address(sqlite_postroom: Postroom) -> None:
    graph = {
        "name": "Default",
        "address": SENDER,
        "protocol": "graph",
        "auth_profile": "entra",
        "bounce_address": BOUNCES,
    }
    profile = {"name": "entra", "client_id": "c", "client_secret": "s", "tenant_id": "t.example"}
    with pytest.raises(ConfigurationError, match="bounce_address is for SMTP accounts"):
        sqlite_postroom.apply({"auth_profiles": [profile], "accounts": [graph]})


def test_api_takes_shows_and_refuses_bounce_addresses(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    with serve(mounted(sqlite_postroom)) as base, http(base) as c:
        made = c.post(
            "/api/v1/accounts", json=SMTP | {"bounce_address": BOUNCES}, headers=tokens.admin
        )
        assert made.status_code == 201, made.text
        assert made.json()["bounce_address"] == BOUNCES
        shown = c.get("/api/v1/accounts/Default", headers=tokens.admin).json()
        assert shown["bounce_address"] == BOUNCES

        bad = c.put(
            "/api/v1/accounts/Default",
            json=SMTP | {"bounce_address": "bounces+x@example.com"},
            headers=tokens.admin,
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert "bounce_address" in bad.json()["detail"]
        assert "must not contain '+'" in bad.json()["detail"]

        cleared = c.put("/api/v1/accounts/Default", json=SMTP, headers=tokens.admin)
        assert cleared.status_code == 200, cleared.text
        assert cleared.json()["bounce_address"] is None
    assert sqlite_postroom.account("Default").bounce_address is None


@pytest.fixture
def studio_pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as opened:
        opened.identity.create_admin(username=ADMIN, password=PASSWORD)
        yield opened


def _studio_error(page: str) -> str:
    start = page.find('id="form-error"')
    assert start >= 0, "the page shows no form error"
    return html.unescape(page[start : page.find("</div>", start)])


def test_studio_form_saves_shows_and_refuses_a_bounce_address(
    studio_pr: Postroom, tmp_path: Path
) -> None:
    with serving(studio_pr, tmp_path / "inbox") as base, http(base) as c:
        login = c.get("/login")
        done = c.post(
            "/login",
            data={"csrf_token": csrf_of(login.text), "username": ADMIN, "password": PASSWORD},
        )
        assert done.status_code == 303, done.text
        form = c.get("/accounts/new")
        assert "Bounce address" in form.text
        assert "bounces+&lt;token&gt;" in form.text
        csrf = csrf_of(form.text)

        made = c.post("/accounts", data=account_form(csrf, bounce_address=BOUNCES))
        assert made.status_code == 303, made.text
        assert studio_pr.account("Default").bounce_address == BOUNCES
        shown = c.get("/accounts/Default")
        assert f'name="bounce_address" type="email" value="{BOUNCES}"' in shown.text

        refused = c.post(
            "/accounts/Default", data=account_form(csrf, bounce_address="bounces+x@example.com")
        )
        assert refused.status_code == 422
        assert "must not contain '+'" in _studio_error(refused.text)
        assert studio_pr.account("Default").bounce_address == BOUNCES  # unchanged


def _run(url: str, *args: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    return CliRunner().invoke(app, ["-d", url, *args], env={"POSTROOM_SECRET_KEY": TEST_KEY})


def _rows(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            found[cells[0]] = cells[1]
    return found


def test_accounts_show_prints_the_bounce_address(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(MINIMAL_RECORDS)
        pr.apply({"accounts": [SMTP | {"name": "Desk", "bounce_address": BOUNCES}]})
    shown = _run(url, "accounts", "show", "Desk")
    assert shown.exit_code == 0, shown.output
    rows = _rows(shown.output)
    assert rows["bounce_address"].startswith(BOUNCES)
    assert "bounces+<token>@example.com" in rows["bounce_address"]
    plain = _rows(_run(url, "accounts", "show", "Default").output)
    assert plain["bounce_address"].startswith("(none")
