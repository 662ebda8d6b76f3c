"""What the command line shows of inbound mail: an account's inbound settings, mailboxes
no account reads any more, received text as written, a case's conversation in --json,
and header defects said once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.inbound import mailboxes
from postroom.inbound.models import MailboxRef
from postroom.inbound.parse import parse_mail
from tests.apikit import MINIMAL_RECORDS
from tests.conftest import TEST_KEY, make_settings
from tests.test_api_inbound import mail, receive

SECRET = "imap-Secret-Never-Printed"


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(MINIMAL_RECORDS)
        pr.apply(
            {
                "accounts": [
                    {
                        "name": "Desk",
                        "address": "desk@example.com",
                        "host": "smtp.example.com",
                        "reply_to_plus_addressing": True,
                        "inbound": {
                            "host": "imap.example.com",
                            "security": "starttls",
                            "user_id": "desk-reader",
                            "password": SECRET,
                            "folder": "Replies",
                            "after": "move",
                            "move_to": "Done",
                            "poll_seconds": 45,
                            "max_message_bytes": 1048576,
                        },
                    }
                ]
            }
        )
    return url


def run(url: str, *args: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    return CliRunner().invoke(app, ["-d", url, *args], env={"POSTROOM_SECRET_KEY": TEST_KEY})


def _rows(output: str) -> dict[str, str]:
    """A two-column table's rows, by their first cell."""
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0]:
            found[cells[0]] = cells[1]
    return found


def test_accounts_show_has_the_inbound_settings_but_never_the_password(url: str) -> None:
    shown = run(url, "accounts", "show", "Desk")
    assert shown.exit_code == 0, shown.output
    rows = _rows(shown.output)
    assert rows["inbound"] == "imap imap.example.com:143 starttls"
    assert rows["inbound user_id"] == "desk-reader"
    assert rows["inbound password"] == "•••••• (set)"
    assert rows["inbound folder"] == "Replies"
    assert rows["inbound after"] == "move to Done"
    assert rows["inbound poll_seconds"] == "45"
    assert rows["inbound max_message_bytes"] == "1,048,576"
    assert rows["reply_to_plus_addressing"] == "yes"
    assert SECRET not in shown.output
    plain = _rows(run(url, "accounts", "show", "Default").output)
    assert plain["inbound"].startswith("(none")
    assert plain["reply_to_plus_addressing"] == "no"


def test_accounts_list_says_which_accounts_read_mail(url: str) -> None:
    listed = run(url, "accounts", "list")
    assert listed.exit_code == 0, listed.output
    header = next(line for line in listed.output.splitlines() if "name" in line)
    assert "inbound" in header
    desk = next(line for line in listed.output.splitlines() if "Desk" in line)
    default = next(line for line in listed.output.splitlines() if "Default" in line)
    assert "imap" in desk
    assert "imap" not in default
    assert SECRET not in listed.output


def test_accounts_test_help_mentions_the_inbound_steps(url: str) -> None:
    helped = run(url, "accounts", "test", "--help")
    assert helped.exit_code == 0
    assert "inbound" in helped.output
    assert "IMAP" in helped.output


def test_mailboxes_no_account_reads_say_so_instead_of_their_old_error(url: str) -> None:
    with Postroom(make_settings(url)) as pr, pr.engine.begin() as conn:
        for ref in (MailboxRef("Desk", "Replies"), MailboxRef("Desk", "INBOX"),
                    MailboxRef("Gone", "INBOX"), MailboxRef("Default", "INBOX")):  # fmt: skip
            mailboxes.ensure(conn, ref)
            mailboxes.note_poll(conn, ref.key, error="login refused long ago")
    listed = json.loads(run(url, "inbound", "mailboxes", "--json").output)
    errors = {row["mailbox"]: row["last_error"] for row in listed}
    assert errors == {
        "Desk/Replies": "login refused long ago",  # still read: its error is news
        "Desk/INBOX": "not read any more: account Desk reads folder Replies now",
        "Gone/INBOX": "not read any more: account Gone no longer exists",
        "Default/INBOX": "not read any more: account Default has no inbound settings now",
    }
    table = run(url, "inbound", "mailboxes")
    assert table.exit_code == 0, table.output
    assert "not read any more" in table.output


def test_received_text_is_printed_as_written(url: str) -> None:
    body = "Thanks :smile: [bold]not bold[/bold] :thumbs_up:\n"
    with Postroom(make_settings(url)) as pr:
        got = receive(pr, mail(subject="Hi :wave:", text=body))
    shown = run(url, "inbound", "show", str(got))
    assert shown.exit_code == 0, shown.output
    assert ":smile:" in shown.output
    assert ":wave:" in shown.output
    assert "[bold]not bold[/bold]" in shown.output
    assert "😄" not in shown.output
    assert "👋" not in shown.output


def test_cases_show_json_has_the_conversation(url: str) -> None:
    hostile = '<p onclick="x()">Hello<script>alert(1)</script></p>'
    with Postroom(make_settings(url)) as pr:
        case = pr.cases.create("A-B-C", data={})
        got = receive(pr, mail(subject="About it", html=hostile))
        pr.attach_received(got, case.id)
    shown = run(url, "cases", "show", case.id, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["id"] == case.id
    [item] = data["conversation"]
    assert (item["kind"], item["id"], item["subject"]) == ("received", got, "About it")
    assert "<script" not in item["html"]
    assert "onclick" not in item["html"]


def test_a_too_long_header_is_one_defect_not_two() -> None:
    ids = " ".join(f"<id{i}@x.example>" for i in range(12_000))  # past every bound
    raw = (
        f"From: a@b.example\r\nTo: c@d.example\r\nSubject: {'S' * 120_000}\r\n"
        f"References: {ids}\r\nMessage-ID: <m@x.example>\r\n\r\nbody\r\n"
    ).encode()
    defects = parse_mail(raw).defects
    for name in ("subject", "references"):
        said = [d for d in defects if d.lower().startswith(f"header '{name}' is too long")]
        assert len(said) == 1, defects
    shorter = (
        f"From: a@b.example\r\nSubject: {'S' * 20_000}\r\nReferences: {ids[:80_000]}\r\n\r\nb\r\n"
    ).encode()
    defects = parse_mail(shorter).defects
    assert "header 'subject' is too long: its end was cut" in defects
    assert "header 'references' is too long: kept its end" in defects
