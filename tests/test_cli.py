"""The command line, end to end through Typer's runner on a real SQLite database."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom.cli import app
from postroom.devinbox import DevInbox
from postroom.errors import ConfigurationError
from tests.conftest import TEST_KEY
from tests.fakes import free_port, smtp_server

RECORDS = """
operators:
  - {id: carol, name: Carol, email: carol@example.com}
  - {id: alice, name: Alice, email: alice@example.com, reports_to: carol}
accounts:
  - name: Default
    address: noreply@example.com
    host: 127.0.0.1
    port: PORT
    security: none
correspondence:
  - {name: Created, subject: "Case {{ case.id }}", html: "<p>{{ case.data.note }}</p>"}
case_types:
  - class: MyOrg-Work-Thing
    class_group: MyOrg-Work
    id_prefix: T-
    parties: {Manager: creator.reports_to}
    steps:
      - {on: created, to: [{party: Manager}], correspondence: Created}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, list[str]]:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("POSTROOM_POLL_INTERVAL", "0.05")
    return CliRunner(), ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]


def test_apply_create_deliver_show(cli: tuple[CliRunner, list[str]], tmp_path: Path) -> None:
    runner, db = cli
    with smtp_server() as srv:
        (tmp_path / "r.yaml").write_text(RECORDS.replace("PORT", str(srv.port)))
        result = runner.invoke(app, [*db, "apply", str(tmp_path / "r.yaml")])
        assert result.exit_code == 0, result.output
        assert "5 created, 0 updated, 0 unchanged" in result.output

        result = runner.invoke(
            app,
            [
                *db,
                "cases",
                "create",
                "MyOrg-Work-Thing",
                "--operator",
                "alice",
                "--data",
                "note=hello",
                "--data",
                "amount=12",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "T-1" in result.output
        assert "email-queued" in result.output

        result = runner.invoke(app, [*db, "outbox", "list", "--status", "queued"])
        assert "Case T-1" in result.output

        result = runner.invoke(app, [*db, "agent", "run", "--until-idle"])
        assert result.exit_code == 0, result.output
        assert "1 sent" in result.output
    assert srv.sink.received[0].rcpt_tos == ["carol@example.com"]

    result = runner.invoke(app, [*db, "agent", "list"])
    assert result.exit_code == 0
    assert "stopped" in result.output
    result = runner.invoke(app, [*db, "cases", "show", "T-1"])
    assert "email-1.eml" in result.output
    assert "email-sent" in result.output
    result = runner.invoke(app, [*db, "outbox", "show", "1"])
    assert "sent" in result.output
    assert "carol@example.com [accepted]" in result.output


def test_errors_are_messages_with_exit_codes(
    cli: tuple[CliRunner, list[str]], tmp_path: Path
) -> None:
    runner, db = cli
    assert runner.invoke(app, [*db, "db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, [*db, "cases", "show", "X-1"])
    assert result.exit_code == 3
    assert "no case with id 'X-1'" in result.output
    assert "Traceback" not in result.output

    result = runner.invoke(app, [*db, "outbox", "list", "--status", "lost"])
    assert result.exit_code == 2
    assert "known: queued, sending, sent" in result.output

    (tmp_path / "bad.yaml").write_text("accounts: [{name: Default, address: nope, host: h}]")
    result = runner.invoke(app, [*db, "apply", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert "not a valid email address" in result.output

    result = runner.invoke(app, [*db, "cases", "create", "X", "--data", "novalue"])
    assert result.exit_code == 2
    assert "case data takes name=value" in result.output


def test_retry_and_cancel(cli: tuple[CliRunner, list[str]], tmp_path: Path) -> None:
    runner, db = cli
    (tmp_path / "r.yaml").write_text(RECORDS.replace("PORT", str(free_port())))
    runner.invoke(app, [*db, "apply", str(tmp_path / "r.yaml")])
    runner.invoke(
        app, [*db, "cases", "create", "MyOrg-Work-Thing", "--operator", "alice", "--data", "note=x"]
    )
    result = runner.invoke(app, [*db, "outbox", "cancel", "1"])
    assert result.exit_code == 0
    assert "cancelled" in result.output
    result = runner.invoke(app, [*db, "outbox", "cancel", "1"])
    assert result.exit_code == 4  # a status the table does not allow
    result = runner.invoke(app, [*db, "outbox", "retry", "1"])
    assert result.exit_code == 0
    assert "queued" in result.output


def test_send_and_accounts(cli: tuple[CliRunner, list[str]], tmp_path: Path) -> None:
    runner, db = cli
    (tmp_path / "r.yaml").write_text(RECORDS.replace("PORT", "2525"))
    runner.invoke(app, [*db, "apply", str(tmp_path / "r.yaml")])
    result = runner.invoke(
        app,
        [
            *db,
            "send",
            "--to",
            "x@example.com",
            "--subject",
            "Hi",
            "--body",
            "<p>b</p>",
            "--class",
            "MyOrg-Work-Thing",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "account Default" in result.output
    result = runner.invoke(app, [*db, "send", "--to", "x@example.com"])
    assert result.exit_code == 2
    result = runner.invoke(app, [*db, "accounts", "list"])
    assert "Default" in result.output
    assert "127.0.0.1:2525" in result.output
    result = runner.invoke(app, [*db, "accounts", "resolve", "MyOrg-Work-Thing"])
    assert "Default" in result.output
    assert "fell back" in result.output


def test_dev_inbox_list_reads_the_folder(tmp_path: Path) -> None:
    port = free_port()
    with DevInbox(tmp_path / "inbox", port=port):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail(
                "a@example.com", ["b@example.com"], b"Subject: hello inbox\r\n\r\nbody\r\n"
            )
    result = CliRunner().invoke(app, ["dev-inbox", "list", "--dir", str(tmp_path / "inbox")])
    assert result.exit_code == 0
    assert "hello inbox" in result.output
    assert "b@example.com" in result.output
    result = CliRunner().invoke(app, ["dev-inbox", "show", "1", "--dir", str(tmp_path / "inbox")])
    assert "body" in result.output


def test_database_trouble_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("this is not a database\n" * 100)
    result = CliRunner().invoke(
        app, ["-d", f"sqlite:///{not_a_db}", "cases", "list"], env={"POSTROOM_SECRET_KEY": TEST_KEY}
    )
    assert result.exit_code == 1
    assert "error: database" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(
        app,
        ["-d", f"postgresql://u:hunter2@127.0.0.1:{free_port()}/db", "cases", "list"],
        env={"POSTROOM_SECRET_KEY": TEST_KEY},
    )
    assert result.exit_code == 1
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_dev_inbox_requires_auth_when_given_a_user(tmp_path: Path) -> None:
    port = free_port()
    with DevInbox(tmp_path / "inbox", port=port, user="u@example.com", password="pw-1234"):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            code, _ = client.mail("a@example.com")
            assert code == 530  # authentication required
    with pytest.raises(ConfigurationError, match="both a user and a password"):
        DevInbox(tmp_path / "inbox", port=port, user="u@example.com")


def test_db_upgrade_for_deployments_without_auto_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deploy.db'}"
    env = {"POSTROOM_SECRET_KEY": TEST_KEY, "POSTROOM_AUTO_MIGRATE": "false"}
    result = CliRunner().invoke(app, ["-d", url, "cases", "list"], env=env)
    assert result.exit_code == 2  # refused before anything is opened: no file is made
    assert "postroom db upgrade" in result.output
    assert CliRunner().invoke(app, ["-d", url, "db", "upgrade"], env=env).exit_code == 0
    assert CliRunner().invoke(app, ["-d", url, "cases", "list"], env=env).exit_code == 0


def test_dev_inbox_dir_may_come_before_the_subcommand(tmp_path: Path) -> None:
    port = free_port()
    with DevInbox(tmp_path / "box", port=port), smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
        c.sendmail("a@example.com", ["b@example.com"], b"Subject: placed\r\n\r\nx\r\n")
    result = CliRunner().invoke(app, ["dev-inbox", "--dir", str(tmp_path / "box"), "list"])
    assert "placed" in result.output
