"""``postroom inbound list/show/attach/create-case/dismiss``: received mail from the CLI.

The messages are read from a real Dovecot by ``inbound poll``; nothing routes them (no
case type takes mail), so they wait in the triage list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.inbound import mailboxes
from postroom.inbound.models import MailboxRef
from tests.chaoskit import agent_forever, fleet, healthz, process_env, serve_command, wait_until
from tests.conftest import TEST_KEY, make_settings
from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture, message
from tests.fakes import free_port

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(300)]

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()

CLASS = "Org-Desk-Work-Request"


def run(url: str, *args: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    return CliRunner().invoke(app, ["-d", url, *args], env={"POSTROOM_SECRET_KEY": TEST_KEY})


@pytest.fixture
def triaged(mailbox: Mailbox, tmp_path: Path) -> tuple[str, list[int]]:
    """A database with two unmatched messages (one with an odd subject) and a case type."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(
            {
                "accounts": [mailbox.account_yaml("Desk")],
                "case_types": [
                    {
                        "class": CLASS,
                        "class_group": "Desk",
                        "id_prefix": "D-",
                        "parties": {"Customer": "data.customer"},
                        "fields": [{"name": "customer", "type": "email"}],
                    }
                ],
            }
        )
        mailbox.append(message("Where is my order?", body="It did not come."))
        mailbox.append(message("[not a case] <b>bold</b>", body="Second."))
        assert pr.poll_inbound("Desk").unmatched == 2
        ids = sorted(m.id for m in pr.received(unmatched=True))
    return url, ids


def test_list_and_show_as_text_and_json(triaged: tuple[str, list[int]]) -> None:
    url, (first, second) = triaged
    listed = run(url, "inbound", "list", "--unmatched")
    assert listed.exit_code == 0, listed.output
    assert "Where is my order?" in listed.output
    assert "[not a case] <b>bold</b>" in listed.output  # data, printed as is
    as_json = json.loads(run(url, "inbound", "list", "--json").output)
    assert sorted(m["id"] for m in as_json) == [first, second]
    assert {m["status"] for m in as_json} == {"unmatched"}
    assert "raw" not in as_json[0]
    shown = run(url, "inbound", "show", str(first))
    assert shown.exit_code == 0, shown.output
    for words in ("Where is my order?", "customer@example.org", "It did not come.", "routing"):
        assert words in shown.output
    one = json.loads(run(url, "inbound", "show", str(first), "--json").output)
    assert one["id"] == first
    assert one["subject"] == "Where is my order?"
    only = json.loads(run(url, "inbound", "list", "--status", "unmatched", "--limit", "1",
                          "--json").output)  # fmt: skip
    assert len(only) == 1


def test_triage_attach_create_case_dismiss(triaged: tuple[str, list[int]]) -> None:
    url, (first, second) = triaged
    with Postroom(make_settings(url)) as pr:
        case = pr.cases.create(CLASS, data={"customer": "customer@example.org"})
    attached = run(url, "inbound", "attach", str(first), case.id)
    assert attached.exit_code == 0, attached.output
    assert f"attached to case {case.id}" in attached.output
    on_case = json.loads(run(url, "inbound", "list", "--case", case.id, "--json").output)
    assert [m["id"] for m in on_case] == [first]
    again = run(url, "inbound", "attach", str(first), case.id)
    assert again.exit_code == 4, again.output  # matched already: a state error
    dismissed = run(url, "inbound", "dismiss", str(second))
    assert dismissed.exit_code == 0, dismissed.output
    created = run(url, "inbound", "create-case", str(second), CLASS)
    assert created.exit_code == 0, created.output
    assert f"from received #{second}" in created.output
    assert json.loads(run(url, "inbound", "list", "--unmatched", "--json").output) == []


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["show", "999999"], 3, "999999"),
        (["attach", "999999", "D-1"], 3, "999999"),
        (["dismiss", "999999"], 3, "999999"),
        (["create-case", "FIRST", "No-Such-Class"], 3, "No-Such-Class"),
        (["attach", "FIRST", "D-404"], 3, "D-404"),
        (["list", "--status", "lost"], 2, "unknown status 'lost'"),
        (["poll", "Nobody"], 3, "Nobody"),
    ],
)
def test_bad_input_is_one_line(
    triaged: tuple[str, list[int]], args: list[str], code: int, words: str
) -> None:
    url, (first, _) = triaged
    result = run(url, "inbound", *[str(first) if a == "FIRST" else a for a in args])
    assert result.exit_code == code, result.output
    assert words in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output


def test_a_missing_database_is_refused_like_other_reads(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path / 'none.db'}", "inbound", "list")
    assert result.exit_code != 0
    assert not (tmp_path / "none.db").exists()


# --- the listeners in `postroom agent run` and `postroom serve` --------------------------


def _lease_owner(url: str) -> str | None:
    with Postroom(make_settings(url)) as pr:
        rows = pr.inbound_mailboxes()
    return rows[0].lease_owner if rows else None


@pytest.mark.slow
@pytest.mark.parametrize("off", [None, "--no-inbound", "POSTROOM_INBOUND=false"])
def test_agent_run_listens_unless_told_not_to(
    mailbox: Mailbox, tmp_path: Path, off: str | None
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply({"accounts": [mailbox.account_yaml("Desk")]})
    uid = mailbox.append(message("hello"))
    env = process_env(url, **({"inbound": "false"} if off and off.startswith("POSTROOM") else {}))
    command = agent_forever() + (["--no-inbound"] if off == "--no-inbound" else [])
    with fleet(command, env, tmp_path) as agents:
        agents.start(0)
        wait_until(lambda: "inbound: " in agents.tail(0), limit=60, what="the agent's start")
        if off is None:
            assert "inbound: listening" in agents.tail(0)
            wait_until(lambda: "\\Seen" in mailbox.flags(uid), limit=60, what="the message read")
            assert _lease_owner(url) is not None
        else:
            assert "inbound: not in this process" in agents.tail(0)
        assert agents.stop() == {0: 0}
    agents.assert_no_traceback()
    # A clean stop gives the mailbox back: another agent takes it at once.
    assert _lease_owner(url) is None
    if off is not None:
        assert "\\Seen" not in mailbox.flags(uid)


@pytest.mark.slow
@pytest.mark.parametrize("flag", [[], ["--no-inbound"]])
def test_serve_shows_its_listeners_in_the_health_check(
    mailbox: Mailbox, tmp_path: Path, flag: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply({"accounts": [mailbox.account_yaml("Desk")]})
    port = free_port()
    with fleet([*serve_command(port), *flag], process_env(url), tmp_path) as services:
        services.start(0)
        wait_until(lambda: healthz(port) is not None, limit=60, what="the service answering")
        answer = healthz(port)
        assert answer is not None
        names = {t["name"]: t["state"] for t in answer[1].get("tasks", [])}
        if flag:
            assert "inbound" not in names
        else:
            assert names.get("inbound") == "running", answer
            uid = mailbox.append(message("to the service"))
            wait_until(lambda: "\\Seen" in mailbox.flags(uid), limit=60, what="read by serve")
        assert services.stop() == {0: 0}


def test_poll_refuses_a_mailbox_another_agent_reads(triaged: tuple[str, list[int]]) -> None:
    url, _ = triaged
    with Postroom(make_settings(url)) as pr, pr.engine.begin() as conn:
        assert mailboxes.acquire(conn, MailboxRef("Desk", "INBOX"), owner="host:42:abc", lease=60)
    result = run(url, "inbound", "poll", "Desk")
    assert result.exit_code == 4, result.output
    assert "being read by host:42:abc" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_mailboxes_show_how_far_each_was_read(triaged: tuple[str, list[int]]) -> None:
    url, _ = triaged
    shown = run(url, "inbound", "mailboxes")
    assert shown.exit_code == 0, shown.output
    assert "Desk/INBOX" in shown.output
    assert "UID 2 (UIDVALIDITY" in shown.output
    [row] = json.loads(run(url, "inbound", "mailboxes", "--json").output)
    assert (row["account"], row["folder"], row["position"]) == ("Desk", "INBOX", "2")
    assert row["lease_owner"] is None  # the poll gave it back
    assert row["last_poll_at"] is not None
    assert row["last_error"] is None
