"""The dev inbox: a local SMTP sink that keeps what it receives, for trying Postroom out.

It listens on loopback only, offers STARTTLS with a certificate from its own CA,
and, when given a user and password, accepts AUTH (over TLS only).
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import json
import os
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from postroom.devinbox.certs import ensure_certificates
from postroom.errors import ConfigurationError

DEFAULT_DIRECTORY = Path("postroom-inbox")


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One received message with its envelope."""

    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._counter = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._counter += 1
        stem = f"{time.time_ns()}-{self._counter:06d}"
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        _atomic_write(self._directory / f"{stem}.json", json.dumps(meta).encode())
        _atomic_write(self._directory / f"{stem}.eml", envelope.original_content)
        return "250 2.0.0 OK: kept in the dev inbox"


def _atomic_write(path: Path, content: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


class DevInbox:
    """A running (or stopped) dev inbox on ``host:port`` keeping mail in ``directory``."""

    def __init__(
        self,
        directory: Path = DEFAULT_DIRECTORY,
        *,
        host: str = "127.0.0.1",
        port: int = 1025,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if (user is None) != (password is None):
            raise ConfigurationError("the dev inbox needs both a user and a password, or neither")
        if not ipaddress.ip_address(host).is_loopback:
            raise ConfigurationError("the dev inbox listens on loopback addresses only")
        self.directory = directory
        self.host = host
        self.port = port
        self._user = user
        self._password = password
        self._controller: Controller | None = None
        self.ca_file, cert, key = ensure_certificates(directory / "tls")
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self._user
            and auth_data.password.decode() == self._password
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        # aiosmtpd reports a port in use only after its ready timeout (10 s): probe first.
        _check_free(self.host, self.port)
        self.directory.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {}
        if self._user is not None:
            kwargs.update(
                authenticator=self._authenticate, auth_require_tls=True, auth_required=True
            )
        self._controller = Controller(
            _Handler(self.directory),
            hostname=self.host,
            port=self.port,
            tls_context=self._tls,
            server_hostname="localhost",
            ready_timeout=10,
            **kwargs,
        )
        try:
            self._controller.start()
        except (OSError, RuntimeError) as exc:
            self._controller = None
            raise ConfigurationError(
                f"the dev inbox cannot listen on {self.host}:{self.port} ({exc})"
            ) from None

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> DevInbox:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def messages(self) -> list[InboxMessage]:
        return read_inbox(self.directory)


def _check_free(host: str, port: int) -> None:
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio binds
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigurationError(
            f"the dev inbox cannot listen on {host}:{port} ({exc.strerror or exc})"
        ) from None


def read_inbox(directory: Path) -> list[InboxMessage]:
    """Every message kept in ``directory``, oldest first."""
    found = []
    for eml in sorted(directory.glob("*.eml")):
        meta_path = eml.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {"mail_from": "", "rcpt_tos": []}
        found.append(
            InboxMessage(
                path=eml,
                mail_from=meta.get("mail_from", ""),
                rcpt_tos=tuple(meta.get("rcpt_tos", [])),
                received_at=int(eml.stem.split("-", 1)[0]) / 1e9,
                raw=eml.read_bytes(),
            )
        )
    return found
