"""A real aiosmtpd server that offers DSN (RFC 3461) and keeps the raw MAIL and RCPT lines.

aiosmtpd refuses MAIL and RCPT parameters it does not know (555); this server's SMTP
class also takes the four DSN ones, so that a transaction with them completes, and
records each MAIL FROM and RCPT TO argument as it came, case and all (aiosmtpd's own
handler hooks see the parameters upper-cased).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.fakes import ServerInfo, SmtpSink, free_port

DSN_PARAMETERS = frozenset({"RET", "ENVID", "NOTIFY", "ORCPT"})


@dataclass
class DsnSink(SmtpSink):
    """An :class:`SmtpSink` that may offer DSN; ``mail_lines`` and ``rcpt_lines`` as sent.

    ``pipelined`` says, for each MAIL FROM, whether its RCPT TO had already arrived
    before the server answered it (the client pipelined its commands).
    """

    dsn: bool = True
    mail_lines: list[str] = field(default_factory=list)
    rcpt_lines: list[str] = field(default_factory=list)
    pipelined: list[bool] = field(default_factory=list)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if self.dsn:
            responses.insert(1, "250-DSN")
        return responses


class DsnSmtp(SMTP):
    """aiosmtpd's SMTP, taking DSN parameters and recording the raw command arguments."""

    def _getparams(self, params: Sequence[str]) -> dict[str, str | bool] | None:
        found = super()._getparams(params)
        if found is None:
            return None
        # Taken and otherwise ignored: a real DSN server would keep them for its reports.
        return {k: v for k, v in found.items() if k not in DSN_PARAMETERS}

    async def smtp_MAIL(self, arg: str | None) -> None:
        sink = self.event_handler
        assert isinstance(sink, DsnSink)
        with sink.lock:
            sink.mail_lines.append(arg or "")
            # Commands the client wrote without waiting for this reply are buffered already.
            waiting = bytes(self._reader._buffer).upper()  # type: ignore[attr-defined]
            sink.pipelined.append(b"RCPT TO" in waiting)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        sink = self.event_handler
        assert isinstance(sink, DsnSink)
        with sink.lock:
            sink.rcpt_lines.append(arg or "")
        await super().smtp_RCPT(arg)


class _DsnController(Controller):
    def factory(self) -> SMTP:
        return DsnSmtp(self.handler, **self.SMTP_kwargs)


@contextmanager
def dsn_smtp_server(sink: DsnSink) -> Iterator[ServerInfo]:
    """Run the recording server on 127.0.0.1 (a free port) for the duration of the block."""
    controller = _DsnController(
        sink, hostname="127.0.0.1", port=free_port(), server_hostname="localhost", ready_timeout=10
    )
    controller.start()
    try:
        yield ServerInfo("127.0.0.1", controller.port, sink, controller)
    finally:
        controller.stop()
