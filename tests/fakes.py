"""Real test implementations: an in-process SMTP server with scriptable replies."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpSink:
    """An aiosmtpd handler that keeps messages and replies as the test scripts it.

    - ``rcpt_replies[address]``: a reply for RCPT TO of that address (e.g. "550 5.1.1 no").
    - ``data_replies``: replies for the next DATA commands, in order ("451 4.3.0 later").
    - ``disconnect_on_data``: how many next DATA commands drop the connection instead.
    - ``mail_replies``: replies for the next MAIL FROM commands.
    - ``pipelining``: whether EHLO offers PIPELINING (RFC 2920).
    - ``data_delay``: seconds each DATA takes (as a slow server's); ``max_in_data`` is the
      most DATA commands that were in progress at once, i.e. concurrent deliveries.
    """

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: deque[str] = field(default_factory=deque)
    mail_replies: deque[str] = field(default_factory=deque)
    disconnect_on_data: int = 0
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_data: Callable[[], None] | None = None
    data_delay: float = 0.0
    pipelining: bool = True  # offer PIPELINING, as Postfix and Exchange do
    in_data: int = 0
    max_in_data: int = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if self.mail_replies:
                return self.mail_replies.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            with self.lock:
                self.in_data += 1
                self.max_in_data = max(self.max_in_data, self.in_data)
            await asyncio.sleep(self.data_delay)
            with self.lock:
                self.in_data -= 1
        with self.lock:
            self.data_commands += 1
            if self.on_data is not None:
                self.on_data()
            if self.disconnect_on_data > 0:
                self.disconnect_on_data -= 1
                server.transport.close()
                return "421 4.4.2 connection dropped"
            if self.data_replies:
                return self.data_replies.popleft()
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 OK queued"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        if self.pipelining:
            # aiosmtpd reads commands in order from its stream, so it serves a pipelined
            # group correctly; it just does not say so.
            responses.insert(1, "250-PIPELINING")
        return responses


def _never(user: str, token: str) -> bool:
    return False


@dataclass
class OAuthSmtpSink(SmtpSink):
    """An :class:`SmtpSink` that takes AUTH XOAUTH2 and asks ``check_token(user, token)``."""

    check_token: Callable[[str, str], bool] = _never
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        # base64("user=" user "\x01auth=Bearer " token "\x01\x01"), as Office 365 takes it.
        raw = args[1] if len(args) > 1 else ""
        try:
            fields = base64.b64decode(raw, validate=True).decode().split("\x01")
            user = fields[0].removeprefix("user=")
            token = fields[1].removeprefix("auth=Bearer ")
        except (ValueError, IndexError):
            return AuthResult(success=False, handled=False, message="501 5.5.2 bad XOAUTH2")
        ok = self.check_token(user, token)
        with self.lock:
            self.auth_attempts.append((user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )


@dataclass(repr=False)
class ServerInfo:
    """Where a test SMTP server listens."""

    host: str
    port: int
    sink: SmtpSink
    controller: Controller

    def __repr__(self) -> str:  # short, for Hypothesis' failure reports
        return f"<SMTP server on {self.host}:{self.port}>"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def smtp_server(
    sink: SmtpSink | None = None,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    require_starttls: bool = False,
    credentials: tuple[str, str] | None = None,
    auth_require_tls: bool = True,
    auth_required: bool = False,
) -> Iterator[ServerInfo]:
    """Run an aiosmtpd server on 127.0.0.1 (a free port) for the duration of the block."""
    sink = sink or SmtpSink()
    kwargs: dict[str, Any] = {}
    if auth_required:
        kwargs.update(auth_required=True, auth_require_tls=auth_require_tls)
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=require_starttls)
    if credentials is not None:
        user, password = credentials

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode(),
                data.password.decode(),
            ) == (user, password)
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticator, auth_require_tls=auth_require_tls, auth_required=True
        )
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        ssl_context=implicit_tls,
        server_hostname="localhost",
        ready_timeout=10,
        **kwargs,
    )
    controller.start()
    try:
        yield ServerInfo("127.0.0.1", controller.port, sink, controller)
    finally:
        controller.stop()
