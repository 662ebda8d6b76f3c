"""A planted account password never shows up where it should not: files, logs, output, errors."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sqlite3
import ssl
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from postroom import Postroom, Settings
from postroom.cli import app as cli_app
from postroom.errors import SecretError
from postroom.outbox import OutboxStatus
from postroom.security import SecretBox
from tests.conftest import TEST_KEY, make_settings
from tests.fake_microsoft import microsoft_server
from tests.fakes import smtp_server
from tests.graphkit import graph_records

LOGIN = "mailer@example.com"
CASE_TYPE = "MyOrg-Sec-Work-Notice"
OTHER_KEY = "another-secret-key-fedcba9876543210"


@dataclass(frozen=True)
class Planted:
    """A distinctive password and every form in which it could leak."""

    password: str

    @property
    def forms(self) -> list[str]:
        pw = self.password.encode()
        plain_auth = b"\0" + LOGIN.encode() + b"\0" + pw
        forms = {
            self.password,
            base64.b64encode(pw).decode(),
            base64.b64encode(plain_auth).decode(),
            base64.urlsafe_b64encode(pw).decode(),
            pw.hex(),
        }
        # Inside a longer base64 text the password can start at any of three alignments;
        # these are the characters that depend on the password alone.
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + pw).decode()
            first = (shift + 2) // 3 * 4
            last = (shift + len(pw)) // 3 * 4
            forms.add(encoded[first:last])
        # A quoted excerpt counts too (PyYAML, for one, shortens long lines it quotes).
        forms.update(self.password[i : i + 16] for i in range(len(self.password) - 15))
        return sorted(forms)

    def assert_absent(self, where: str, content: str | bytes) -> None:
        if isinstance(content, bytes):
            haystacks = [content, content.replace(b"\r\n", b"").replace(b"\n", b"")]
            for form in self.forms:
                for hay in haystacks:
                    assert form.encode() not in hay, f"{where} contains the secret ({form!r})"
        else:
            squeezed = "".join(content.split())
            for form in self.forms:
                assert form not in content, f"{where} contains the secret ({form!r})"
                assert form not in squeezed, f"{where} contains the secret ({form!r})"


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Planted:
    secret = Planted(f"PLANTED-s3cr3t-{uuid.uuid4()}")
    monkeypatch.setenv("MAIL_PASSWORD", secret.password)
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("POSTROOM_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("COLUMNS", "250")  # no wrapping of Rich tables
    monkeypatch.delenv("POSTROOM_KEY_FILE", raising=False)
    return secret


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("postroom", "aiosmtplib", "sqlalchemy", "alembic", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def postroom_logs(caplog: pytest.LogCaptureFixture) -> str:
    # ``mail.*`` is the in-process test server (aiosmtpd), which receives the password.
    records = [r for r in caplog.records if not r.name.startswith("mail.")]
    lines = []
    for r in records:
        lines.append(f"{r.name} {r.getMessage()} {r.exc_text or ''}")
        lines.extend(repr(a) for a in (r.args if isinstance(r.args, tuple) else ()))
    return "\n".join(lines)


def config_yaml(port: int, *, security: str = "starttls") -> str:
    return f"""
accounts:
  - name: Default
    address: {LOGIN}
    display_name: Secret Keeper
    password: ${{MAIL_PASSWORD}}
    host: 127.0.0.1
    port: {port}
    security: {security}
    truststore_file: ca.pem
correspondence:
  - name: Notice
    subject: "Notice {{{{ case.id }}}}"
    html: "<p>Hello {{{{ case.data.who }}}}</p>"
case_types:
  - class: {CASE_TYPE}
    class_group: MyOrg-Sec-Work
    id_prefix: S-
    steps:
      - on: created
        to: [{{address: client@example.com}}]
        correspondence: Notice
"""


@dataclass
class Cli:
    runner: CliRunner
    url: str

    def __call__(self, *args: str) -> tuple[int, str]:
        result = self.runner.invoke(cli_app, ["--database-url", self.url, *args])
        output = result.output
        stderr = getattr(result, "stderr", "")
        if isinstance(stderr, str) and stderr not in output:
            output += stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            output += f"\n{type(result.exception).__name__}: {result.exception}"
        return result.exit_code, output


@pytest.fixture
def workspace(tmp_path: Path, ca_pem: str) -> tuple[Path, Path]:
    """A data folder (the database, scanned byte by byte) and a config folder."""
    data = tmp_path / "data"
    conf = tmp_path / "conf"
    data.mkdir()
    conf.mkdir()
    (conf / "ca.pem").write_text(ca_pem)
    return data, conf


@pytest.fixture
def keep_wal(workspace: tuple[Path, Path]) -> Iterator[None]:
    """Hold a connection open so that SQLite keeps its -wal and -shm files to be read."""
    data, _ = workspace
    keeper = sqlite3.connect(data / "postroom.db")
    keeper.execute("PRAGMA journal_mode=WAL")
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    try:
        yield
    finally:
        keeper.close()


def scan_files(planted: Planted, folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            planted.assert_absent(str(path), path.read_bytes())
            names.append(path.name)
    return names


def stored_password(postroom: Postroom) -> str:
    with postroom.engine.connect() as conn:
        value: str = conn.execute(
            text("SELECT password FROM accounts WHERE name = 'Default'")
        ).scalar_one()
    return value


# --- the whole flow on SQLite: CLI, agent, files, logs ----------------------------------


def test_secret_never_leaves_its_encrypted_column(
    planted: Planted,
    workspace: tuple[Path, Path],
    keep_wal: None,
    all_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    server_tls: ssl.SSLContext,
) -> None:
    data, conf = workspace
    url = f"sqlite:///{data / 'postroom.db'}"
    cli = Cli(CliRunner(), url)
    outputs: dict[str, str] = {}

    with smtp_server(starttls=server_tls, credentials=(LOGIN, planted.password)) as srv:
        (conf / "records.yaml").write_text(config_yaml(srv.port))
        code, outputs["apply"] = cli("apply", str(conf / "records.yaml"))
        assert code == 0, outputs["apply"]
        assert "3 created" in outputs["apply"]
        assert "password is written in the file" not in outputs["apply"]

        with Postroom(make_settings(url)) as postroom:
            case = postroom.cases.create(CASE_TYPE, data={"who": "Dana"})
            stats = asyncio.run(postroom.agent().run(until_idle=True))
            assert stats.sent == 1, postroom.outbox()
            [entry] = postroom.outbox()
            # The round trip: what was stored decrypts to the password the server accepted.
            password = postroom.account("Default").password
            assert password is not None
            assert password.get_secret_value() == planted.password
            stored = stored_password(postroom)
        assert len(srv.sink.received) == 1

        for args in (
            ("accounts", "list"),
            ("accounts", "show", "Default"),
            ("accounts", "test", "Default"),
            ("outbox", "list"),
            ("outbox", "show", str(entry.id)),
            ("cases", "show", case.id),
            ("cases", "list"),
        ):
            code, outputs[" ".join(args)] = cli(*args)
            assert code == 0, (args, outputs[" ".join(args)])
        code, outputs["apply again"] = cli("apply", str(conf / "records.yaml"))
        assert code == 0, outputs["apply again"]
        assert "0 created, 0 updated, 3 unchanged" in outputs["apply again"]

    for command, output in outputs.items():
        planted.assert_absent(f"output of `postroom {command}`", output)
    assert "•••••• (set)" in outputs["accounts show Default"]
    assert "•••••• (set)" in outputs["accounts list"]
    assert stored.startswith("enc:v1:")
    planted.assert_absent("the stored password", stored)
    assert SecretBox(TEST_KEY.encode()).decrypt(stored) == planted.password

    files = scan_files(planted, data)
    assert {"postroom.db", "postroom.db-wal", "postroom.db-shm"} <= set(files)
    assert (data / "postroom.db-wal").stat().st_size > 0
    planted.assert_absent("the config file", (conf / "records.yaml").read_bytes())
    planted.assert_absent("the logs", postroom_logs(all_logs))
    assert any(r.name.startswith("sqlalchemy") for r in all_logs.records)
    captured = capfd.readouterr()
    planted.assert_absent("stdout", captured.out)
    planted.assert_absent("stderr", captured.err)


# --- error paths ------------------------------------------------------------------------


def test_refused_password_is_not_repeated_in_errors(
    planted: Planted,
    workspace: tuple[Path, Path],
    all_logs: pytest.LogCaptureFixture,
    server_tls: ssl.SSLContext,
) -> None:
    data, conf = workspace
    url = f"sqlite:///{data / 'postroom.db'}"
    cli = Cli(CliRunner(), url)
    with smtp_server(starttls=server_tls, credentials=(LOGIN, "the-server-wants-this")) as srv:
        (conf / "records.yaml").write_text(config_yaml(srv.port))
        assert cli("apply", str(conf / "records.yaml"))[0] == 0
        with Postroom(make_settings(url, max_attempts=2)) as postroom:
            case = postroom.cases.create(CASE_TYPE, data={"who": "Dana"})
            asyncio.run(postroom.agent().run(until_idle=True))
            [entry] = postroom.outbox()
        code, test_output = cli("accounts", "test", "Default")
        outputs = [
            test_output,
            cli("outbox", "show", str(entry.id))[1],
            cli("outbox", "list")[1],
            cli("cases", "show", case.id)[1],
        ]
    assert srv.sink.received == []
    assert code != 0
    assert entry.status in (OutboxStatus.RETRY, OutboxStatus.FAILED)
    assert entry.last_code == 535
    assert entry.last_error
    assert "AUTH" in entry.last_error
    planted.assert_absent("last_error", entry.last_error)
    for output in outputs:
        planted.assert_absent("CLI output", output)
    planted.assert_absent("the logs", postroom_logs(all_logs))
    scan_files(planted, data)


def test_wrong_secret_key_fails_without_showing_the_secret(
    planted: Planted,
    workspace: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    all_logs: pytest.LogCaptureFixture,
    server_tls: ssl.SSLContext,
) -> None:
    data, conf = workspace
    url = f"sqlite:///{data / 'postroom.db'}"
    with smtp_server(starttls=server_tls, credentials=(LOGIN, planted.password)) as srv:
        (conf / "records.yaml").write_text(config_yaml(srv.port))
        with Postroom(make_settings(url)) as postroom:
            postroom.apply(conf / "records.yaml")
            postroom.cases.create(CASE_TYPE, data={"who": "Dana"})

        with Postroom(make_settings(url, secret_key=OTHER_KEY, max_attempts=1)) as wrong:
            with pytest.raises(SecretError) as info:
                wrong.account("Default")
            asyncio.run(wrong.agent().run(until_idle=True))
            [entry] = wrong.outbox()

        monkeypatch.setenv("POSTROOM_SECRET_KEY", OTHER_KEY)
        code, output = Cli(CliRunner(), url)("accounts", "show", "Default")
    assert srv.sink.received == []

    message = str(info.value)
    assert "cannot be decrypted" in message
    assert "POSTROOM_SECRET_KEY" in message
    assert code == 1
    assert "cannot be decrypted" in output
    assert entry.last_error is not None
    assert "cannot be decrypted" in entry.last_error
    for where, content in (("the error", message), ("CLI", output), ("outbox", entry.last_error)):
        planted.assert_absent(where, content)
        assert TEST_KEY not in content
        assert OTHER_KEY not in content
    planted.assert_absent("the logs", postroom_logs(all_logs))


def test_rejected_account_record_does_not_echo_the_password(
    planted: Planted, workspace: tuple[Path, Path]
) -> None:
    data, conf = workspace
    cli = Cli(CliRunner(), f"sqlite:///{data / 'postroom.db'}")
    (conf / "plain.yaml").write_text(config_yaml(25, security="none"))
    (conf / "badport.yaml").write_text(config_yaml(25).replace("port: 25", "port: 99999"))
    # Written in the file (discouraged, but allowed) on a line that is not valid YAML.
    inline = config_yaml(25).replace("${MAIL_PASSWORD}", f"{planted.password}: oops")
    (conf / "inline.yaml").write_text(inline)
    unterminated = config_yaml(25).replace("${MAIL_PASSWORD}", f'"{planted.password}')
    (conf / "unterminated.yaml").write_text(unterminated)
    for name in ("plain.yaml", "badport.yaml", "inline.yaml", "unterminated.yaml"):
        code, output = cli("apply", str(conf / name))
        assert code == 2, output
        assert "error:" in output
        planted.assert_absent(f"apply {name}", output)
    scan_files(planted, data)


# --- the key file -----------------------------------------------------------------------


def test_generated_key_file_is_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: Planted
) -> None:
    monkeypatch.delenv("POSTROOM_SECRET_KEY")
    url = f"sqlite:///{tmp_path / 'db' / 'postroom.db'}"
    key_file = tmp_path / "db" / "postroom.key"
    account = {
        "accounts": [
            {"name": "Default", "address": LOGIN, "password": planted.password, "host": "h"}
        ]
    }
    old_umask = os.umask(0)  # the file must be private whatever the umask
    try:
        with Postroom(Settings(database_url=url, secret_key=None)) as first:
            first.apply(account)
    finally:
        os.umask(old_umask)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    assert len(key.strip()) >= 32

    with Postroom(Settings(database_url=url, secret_key=None)) as second:
        password = second.account("Default").password
        assert password is not None
        assert password.get_secret_value() == planted.password
        assert second.apply(account).changes == [("account", "Default", "unchanged")]
        stored = stored_password(second)
    assert key_file.read_bytes() == key
    assert stored.startswith("enc:v1:")
    planted.assert_absent("the stored password", stored)
    for path in (tmp_path / "db").iterdir():
        if path.name != "postroom.key":
            planted.assert_absent(str(path), path.read_bytes())


# --- PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgresql_stores_only_ciphertext(
    planted: Planted,
    postgres_url: str,
    server_tls: ssl.SSLContext,
    workspace: tuple[Path, Path],
    all_logs: pytest.LogCaptureFixture,
) -> None:
    _, conf = workspace
    with smtp_server(starttls=server_tls, credentials=(LOGIN, planted.password)) as srv:
        (conf / "records.yaml").write_text(config_yaml(srv.port))
        with Postroom(make_settings(postgres_url)) as postroom:
            assert postroom.apply(conf / "records.yaml").count("created") == 3
            postroom.cases.create(CASE_TYPE, data={"who": "Dana"})
            stats = asyncio.run(postroom.agent().run(until_idle=True))
            assert stats.sent == 1
            assert postroom.apply(conf / "records.yaml").count("unchanged") == 3
        assert len(srv.sink.received) == 1

    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        [(password,)] = conn.execute("SELECT password FROM accounts").fetchall()
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        ]
        dumps = {
            table: "\n".join(
                str(row[0]) for row in conn.execute(f'SELECT t::text FROM "{table}" AS t')
            )
            for table in tables
        }
    assert password.startswith("enc:v1:")
    planted.assert_absent("accounts.password", password)
    assert SecretBox(TEST_KEY.encode()).decrypt(password) == planted.password
    assert {"accounts", "outbox", "cases"} <= set(dumps)
    for table, dump in dumps.items():
        planted.assert_absent(f"table {table}", dump)
    planted.assert_absent("the logs", postroom_logs(all_logs))


# --- client secrets of authentication profiles, and the tokens they obtain ----------------


def test_client_secret_and_tokens_never_leave_their_places(
    planted: Planted,
    workspace: tuple[Path, Path],
    keep_wal: None,
    all_logs: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    data, conf = workspace
    url = f"sqlite:///{data / 'postroom.db'}"
    cli = Cli(CliRunner(), url)
    outputs: dict[str, str] = {}
    with microsoft_server() as ms, pytest.MonkeyPatch.context() as env:
        env.setenv("POSTROOM_ALLOWED_ENDPOINT_HOSTS", "127.0.0.1")
        for name in ("httpx2", "httpcore2", "authlib", "postroom.graph", "postroom.auth"):
            all_logs.set_level(logging.DEBUG, logger=name)
        ms.apps["app-1"].secret = planted.password
        records = graph_records(ms, secret="${MAIL_PASSWORD}")
        (conf / "graph.yaml").write_text(yaml.safe_dump(records))
        code, outputs["apply"] = cli("apply", str(conf / "graph.yaml"))
        assert code == 0, outputs["apply"]
        with Postroom(make_settings(url, allowed_endpoint_hosts="127.0.0.1")) as postroom:
            postroom.send(to=["a@example.org"], subject="s", body="<p>b</p>")
            stats = asyncio.run(postroom.agent().run(until_idle=True))
            assert stats.sent == 1
        for args in (
            ("profiles", "list"),
            ("profiles", "show", "O365"),
            ("profiles", "test", "O365"),
            ("accounts", "show", "Default"),
            ("accounts", "test", "Default"),
            ("outbox", "list"),
        ):
            code, outputs[" ".join(args)] = cli(*args)
            assert code == 0, (args, outputs[" ".join(args)])
        tokens = [Planted(token) for token in ms.issued]
    assert len(tokens) == 3  # the agent's, then one per test command
    assert "•••••• (set)" in outputs["profiles show O365"]
    captured = capfd.readouterr()
    for secret in (planted, *tokens):
        for command, output in outputs.items():
            secret.assert_absent(f"output of `postroom {command}`", output)
        secret.assert_absent("the logs", postroom_logs(all_logs))
        secret.assert_absent("stdout", captured.out)
        secret.assert_absent("stderr", captured.err)
        scan_files(secret, data)
    assert any(r.name.startswith("httpx2") for r in all_logs.records)
