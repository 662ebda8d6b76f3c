"""A real IMAP server for the tests: Debian's Dovecot with a configuration of its own.

One server per test process (started on first use, stopped at exit), a fresh user and
mailbox per test. Mail arrives by IMAP APPEND through the test's own client (imapclient on
the plain loopback port), never through the code under test.

Usage in a test module::

    dovecot = dovecot_fixture()            # the server (IDLE offered)
    mailbox = mailbox_fixture()            # a fresh user on it, for each test

    def test_reads(mailbox: Mailbox) -> None:
        uid = mailbox.append(b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        account = mailbox.account()        # an EmailAccount with an inbound: section
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme
from imapclient import IMAPClient  # type: ignore[import-untyped]

from postroom.accounts.models import EmailAccount
from tests.conftest import IN_CI

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
MAIL_USER = "postroom-mail"
PASSWORD = "imap-secret-9"  # every test user's password
START_TIMEOUT = 30.0
# What Dovecot 2.3 offers after login; a server may be started without some of it (IDLE
# for the poll path; MOVE and UIDPLUS for the COPY and EXPUNGE fallbacks).
CAPABILITY = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY"
)


def dovecot_missing() -> str | None:
    """``None`` when Dovecot can run here, else why not."""
    if not DOVECOT.exists():
        return f"{DOVECOT} is absent: install dovecot-imapd to run the IMAP tests"
    return None


def require_dovecot() -> None:
    """Skip the test when Dovecot is absent; under CI, fail it instead."""
    reason = dovecot_missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"{reason}; under CI the Dovecot tests must run")
        pytest.skip(reason)


def _mail_owner() -> tuple[str, int, int]:
    """The unprivileged user mail is kept as: Dovecot refuses to touch mail as root."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    try:
        entry = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAIL_USER],
            check=True,
            capture_output=True,
            timeout=30,
        )
        entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # A test run killed with SIGKILL must not leave a Dovecot behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Dovecot:
    """One running Dovecot: ``port`` (plain + STARTTLS) and ``tls_port`` (implicit TLS)."""

    def __init__(
        self,
        ca: trustme.CA,
        *,
        idle: bool = True,
        without: Iterable[str] = (),
        introspection_url: str | None = None,
    ) -> None:
        require_dovecot()
        self.ca = ca
        self.idle = idle
        self.without = {*without, *(() if idle else ("IDLE",))}
        # XOAUTH2: Dovecot's oauth2 passdb asks this URL (POST token=...) about each token.
        self.introspection_url = introspection_url
        self.ca_pem = ca.cert_pem.bytes().decode()
        self.dir = Path(tempfile.mkdtemp(prefix="postroom-dovecot-"))
        self.conf = self.dir / "dovecot.conf"
        # One passwd-file per user: Dovecot re-reads a changed file at most once a second,
        # but opens a new one at once, so a user added now can log in now.
        self.users = self.dir / "users"
        self.mail = self.dir / "mail"
        self.port = _free_port()
        self.tls_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Dovecot:
        owner, uid, gid = _mail_owner()
        # The mail processes run as ``owner``: they must reach the configuration's files.
        self.dir.chmod(0o755)
        self.mail.mkdir()
        os.chown(self.mail, uid, gid)
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        (self.dir / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key = self.dir / "key.pem"
        key.write_bytes(cert.private_key_pem.bytes())
        key.chmod(0o600)
        self.users.mkdir()
        self.conf.write_text(self._config(owner))
        self.process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads exist in the child yet
        )
        self._wait_ready()
        return self

    def _config(self, owner: str) -> str:
        d = self.dir
        own_users = ""
        if os.geteuid() != 0:
            own_users = f"default_internal_user = {owner}\ndefault_login_user = {owner}\n"
        capability = ""
        if self.without:
            offered = " ".join(c for c in CAPABILITY.split() if c not in self.without)
            capability = f"imap_capability = {offered}\n"
        mechanisms, oauth2 = "plain login", ""
        if self.introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            oauth2 = f"passdb {{\n  driver = oauth2\n  args = {d}/oauth2.conf.ext\n}}\n"
            (d / "oauth2.conf.ext").write_text(
                f"introspection_mode = post\nintrospection_url = {self.introspection_url}\n"
                "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
            )
        return f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
instance_name = postroom-test-{d.name}
protocols = imap
listen = 127.0.0.1
{own_users}mail_uid = {owner}
mail_gid = {owner}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{d}/mail/%u
mail_privileged_group =
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_cache_size = 0
auth_failure_delay = 0
auth_verbose = yes
login_trusted_networks =
mailbox_idle_check_interval = 1 secs
{capability}\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users}/%u
}}
{oauth2}\
userdb {{
  driver = static
  args = uid={owner} gid={owner} home={d}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
# No growing delay after the tests' wrong passwords (Dovecot's auth penalty).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
  chroot =
}}
"""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"Dovecot exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(200).startswith(b"* OK"):
                        with socket.create_connection(("127.0.0.1", self.tls_port), timeout=2):
                            return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not listen in {START_TIMEOUT:g} s")
            time.sleep(0.05)  # a bounded poll for the listener, not a wait for an outcome

    def log_tail(self, lines: int = 20) -> str:
        path = self.dir / "dovecot.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self.process is not None and self.process.stderr and self.process.poll() is not None:
            text += self.process.stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if process is not None and process.stderr:
            process.stderr.close()
        # Dovecot's last children may still write their logs as the master exits.
        for _ in range(40):
            shutil.rmtree(self.dir, ignore_errors=True)
            if not self.dir.exists():
                break
            time.sleep(0.05)

    # --- users and their mailboxes -------------------------------------------------------

    def add_user(self, name: str | None = None, *, password: str = PASSWORD) -> Mailbox:
        name = name or f"u{uuid.uuid4().hex[:12]}"
        assert name.isalnum(), "a user name is also a file name here"
        path = self.users / name
        path.write_text(f"{name}:{password}::::::\n")
        path.chmod(0o644)
        return Mailbox(self, name, password)

    def doveadm(self, *args: str) -> str:
        done = subprocess.run(
            [str(DOVEADM), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass
class Mailbox:
    """One test user's mailbox on a :class:`Dovecot`, with the test's own IMAP client."""

    server: Dovecot
    user: str
    password: str

    @contextlib.contextmanager
    def client(self, folder: str | None = "INBOX") -> Iterator[IMAPClient]:
        """A logged-in imapclient on the plain port (loopback), ``folder`` selected."""
        client = IMAPClient("127.0.0.1", port=self.server.port, ssl=False, timeout=60)
        try:
            client.login(self.user, self.password)
            if folder is not None:
                client.select_folder(folder)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """APPEND one message; returns its UID."""
        with self.client(None) as c:
            reply = c.append(folder, raw)
        return _appended_uid(reply)

    def append_many(self, raws: Iterable[bytes], folder: str = "INBOX", *, chunk: int = 200) -> int:
        """APPEND many messages over one connection (MULTIAPPEND); returns how many."""
        count = 0
        pending: list[bytes] = []
        with self.client(None) as c:
            for raw in raws:
                pending.append(raw)
                if len(pending) >= chunk:
                    c.multiappend(folder, pending)
                    count += len(pending)
                    pending = []
            if pending:
                c.multiappend(folder, pending)
                count += len(pending)
        return count

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client(folder) as c:
            return sorted(int(u) for u in c.search("ALL"))

    def flags(self, uid: int, folder: str = "INBOX") -> set[str]:
        """The message's flags (as text, e.g. ``\\Seen``); empty set when it is gone."""
        with self.client(folder) as c:
            found = c.get_flags([uid])
        return {_text(f) for f in found.get(uid, ())}

    def folder_messages(self, folder: str = "INBOX") -> dict[int, bytes]:
        """Every message in ``folder`` by UID, without marking anything seen."""
        with self.client(folder) as c:
            found = c.search("ALL")
            fetched = c.fetch(found, ["BODY.PEEK[]"]) if found else {}
        return {int(uid): data[b"BODY[]"] for uid, data in fetched.items()}

    def create_folder(self, folder: str) -> None:
        with self.client(None) as c:
            c.create_folder(folder)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client(None) as c:
            return int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def change_uidvalidity(self, folder: str = "INBOX") -> int:
        """Give ``folder`` a new UIDVALIDITY (as a restored server would); returns it."""
        new = self.uidvalidity(folder) + 1000
        self.server.doveadm(
            "mailbox", "update", "-u", self.user, "--uid-validity", str(new), folder
        )
        return new

    def inbound(self, **overrides: Any) -> dict[str, Any]:
        """The ``inbound:`` section for this mailbox (implicit TLS, CA in the truststore)."""
        section: dict[str, Any] = {
            "protocol": "imap",
            "host": "127.0.0.1",
            "port": self.server.tls_port,
            "security": "tls",
            "user_id": self.user,
            "password": self.password,
            "truststore": self.server.ca_pem,
        }
        if overrides.get("security") in ("starttls", "none") and "port" not in overrides:
            section["port"] = self.server.port
        section.update(overrides)
        return section

    def account_yaml(self, name: str = "Mail", **inbound: Any) -> dict[str, Any]:
        """An account record (as in records YAML) with an ``inbound:`` section for this mailbox."""
        return {
            "name": name,
            "address": f"{self.user}@example.com",
            "host": "127.0.0.1",
            "port": 25,
            "security": "none",
            "inbound": self.inbound(**inbound),
        }

    def account(self, name: str = "Mail", **inbound: Any) -> EmailAccount:
        return EmailAccount.model_validate(self.account_yaml(name, **inbound))


def _appended_uid(reply: bytes) -> int:
    # "[APPENDUID <validity> <uid>] Append completed." (UIDPLUS)
    words = reply.decode().split("]")[0].split()
    return int(words[2])


def _text(flag: Any) -> str:
    return flag.decode() if isinstance(flag, bytes) else str(flag)


def message(subject: str = "Hello", *, body: str = "Hi there.", **headers: str) -> bytes:
    """A small well-formed message."""
    lines = [
        "From: Customer <customer@example.org>",
        "To: desk@example.com",
        f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@example.org>",
        "Date: Sat, 05 Dec 2026 10:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()


# --- one server per process, shared by every module that asks --------------------------

_SERVERS: dict[tuple[bool, frozenset[str]], Dovecot] = {}
_SERVERS_LOCK = threading.Lock()


def shared_server(ca: trustme.CA, *, idle: bool = True, without: Iterable[str] = ()) -> Dovecot:
    """The process's Dovecot of this kind (with or without IDLE...), started on first use."""
    require_dovecot()
    kind = (idle, frozenset(without))
    with _SERVERS_LOCK:
        server = _SERVERS.get(kind)
        if server is None:
            server = _SERVERS[kind] = Dovecot(ca, idle=idle, without=without).start()
            atexit.register(server.stop)
        return server


def dovecot_fixture(*, idle: bool = True, without: Iterable[str] = ()) -> Any:
    """A fixture giving a shared :class:`Dovecot` (``idle=False``: one without IDLE;
    ``without``: capabilities it does not offer, e.g. MOVE)."""
    left_out = tuple(without)

    @pytest.fixture
    def fixture(ca: trustme.CA) -> Dovecot:
        return shared_server(ca, idle=idle, without=left_out)

    return fixture


def mailbox_fixture(*, server: str = "dovecot") -> Any:
    """A fixture giving a fresh :class:`Mailbox` on the server fixture named ``server``."""

    @pytest.fixture
    def fixture(request: pytest.FixtureRequest) -> Mailbox:
        dovecot: Dovecot = request.getfixturevalue(server)
        return dovecot.add_user()

    return fixture


@contextlib.contextmanager
def introspection_server(user_of: Callable[[str], str | None]) -> Iterator[str]:
    """An OAuth 2.0 token introspection endpoint (RFC 7662) for Dovecot's oauth2 passdb.

    ``user_of(token)`` names the user a token is valid for, or None. Yields the URL.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            user = user_of(form.get("token", [""])[0])
            body = json.dumps({"active": True, "username": user} if user else {"active": False})
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/introspect"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def wait_until(check: Callable[[], bool], *, limit: float = 20.0, what: str = "") -> None:
    """Wait for ``check`` to hold, up to ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g} s: {what or check}")
        time.sleep(0.05)


def raws(count: int, *, size: int = 0, prefix: str = "Message") -> Sequence[bytes]:
    """``count`` distinct messages, each padded to about ``size`` bytes of body."""
    return [message(f"{prefix} {i}", body="x" * size or f"Body {i}.") for i in range(count)]
