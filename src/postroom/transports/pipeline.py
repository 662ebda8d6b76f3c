"""One SMTP mail transaction with command pipelining (RFC 2920).

MAIL FROM, every RCPT TO and DATA go out in one write and their replies are read in
order; then the message. Two round trips per email instead of three plus one per
recipient. aiosmtplib reads one reply per command it sends, so for the transaction
its connection's transport is handed to :class:`ReplyReader` and then given back.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import aiosmtplib

# An address that needs no quoting and cannot break a command line: what Postroom's own
# validation produces. Anything else goes through aiosmtplib's checks, one at a time.
_PLAIN_ADDRESS = re.compile(rb"[!-;=?-~]+@[!-;=?-~]+")
_LONE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_REPLY_LINE = re.compile(rb"([2-5][0-9][0-9])([ -]|\r?\n)")
_MAX_LINE = 2048  # RFC 5321 allows 512 per reply line; a longer one is a broken server
# An ESMTP parameter (keyword=value, RFC 5321 §4.1.2): no space, no line end, ASCII only.
_PARAMETER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*(=[!-<>-~]+)?")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and its text (lines joined by newlines)."""

    code: int
    message: str


class PipelineError(ConnectionError):
    """The connection ended, broke the protocol or went quiet during a transaction.

    The connection cannot be used again. ``stage`` is the command whose reply did not
    come right; ``after_data`` says the message had been sent, so the outcome is unknown;
    ``closed_early`` says the server closed before answering anything (a kept-alive
    connection it had dropped: nothing was sent).
    """

    def __init__(self, text: str, *, stage: str, after_data: bool, closed_early: bool) -> None:
        super().__init__(text)
        self.stage = stage
        self.after_data = after_data
        self.closed_early = closed_early


def pipelinable(mail_from: str, recipients: list[str]) -> bool:
    """Whether every address can go on the wire as it is (plain ASCII, no quoting)."""
    return all(
        a.isascii() and _PLAIN_ADDRESS.fullmatch(a.encode()) for a in (mail_from, *recipients)
    )


def data_lines(message: bytes) -> bytes:
    """The message as DATA content: CRLF line ends, leading periods doubled, then ``.``."""
    # Counting and replacing are C loops over the bytes; the regular expression runs
    # only for a message with a bare CR or LF (Postroom's own are CRLF throughout).
    pairs = message.count(b"\r\n")
    if message.count(b"\r") != pairs or message.count(b"\n") != pairs:
        message = _LONE_LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    # Every line now starts after an LF: doubling the period after each LF (and at the
    # very start) is RFC 5321's dot-stuffing, without a regular expression's per-match cost.
    if message.startswith(b"."):
        message = b"." + message
    return message.replace(b"\n.", b"\n..") + b".\r\n"


class ReplyReader(asyncio.Protocol):
    """Reads replies from a borrowed transport; hands connection loss on to its owner."""

    def __init__(self, owner: asyncio.BaseProtocol) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._broken: str | None = None
        self._closed = False
        self.received = 0

    def data_received(self, data: bytes) -> None:
        if self._broken is not None:
            return
        self._buffer.extend(data)
        try:
            while (reply := self._take_reply()) is not None:
                self._replies.append(reply)
        except ValueError as exc:
            self._broken = str(exc)
        self._wake()

    def eof_received(self) -> bool:
        self._lose()
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose()
        self._owner.connection_lost(exc)

    def _lose(self) -> None:
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        """The server has ended the connection (what is written now is dropped)."""
        return self._closed

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _take_reply(self) -> Reply | None:
        """The first complete reply in the buffer; ValueError for what is not a reply."""
        lines: list[bytes] = []
        offset = 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset : end + 1])
            offset = end + 1
            match = _REPLY_LINE.match(line)
            if match is None or len(line) > _MAX_LINE:
                shown = line[:80].decode("ascii", "replace").strip()
                raise ValueError(f"the server sent something that is not an SMTP reply: {shown!r}")
            if lines and match[1] != lines[0][:3]:
                raise ValueError("the server changed the reply code within one reply")
            lines.append(line)
            if match[2] != b"-":
                del self._buffer[:offset]
                text = "\n".join(x[4:].strip(b" \t\r\n").decode("utf-8", "replace") for x in lines)
                return Reply(int(match[1]), text)
        if len(self._buffer) - offset > _MAX_LINE:
            raise ValueError("the server sent an over-long reply line")
        return None

    async def reply(self, timeout: float, *, stage: str, after_data: bool = False) -> Reply:
        """The next reply in order; :class:`PipelineError` if none comes right."""
        if self._replies:
            self.received += 1
            return self._replies.popleft()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._replies:
            if self._broken is not None or self._closed or loop.time() >= deadline:
                closed = self._closed and self._broken is None
                why = self._broken or (
                    "the server closed the connection" if closed else "no reply in time"
                )
                raise PipelineError(
                    why,
                    stage=stage,
                    after_data=after_data,
                    closed_early=closed and self.received == 0,
                )
            # One future, woken by data, loss or the deadline: asyncio.wait_for with a
            # shield costs several times more per reply, and replies are the hot path.
            waiter = self._wakeup = loop.create_future()
            timer = loop.call_at(deadline, _wake_up, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._wakeup = None
        self.received += 1
        return self._replies.popleft()


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class Transaction:
    """The replies of one pipelined transaction; ``data`` is None when no message went."""

    mail: Reply
    rcpt: list[Reply]
    data_start: Reply
    data: Reply | None
    usable: bool = True  # False: the connection was dropped in the middle of DATA


def _expect(reply: Reply, allowed: tuple[int, ...], *, stage: str, after_data: bool) -> Reply:
    """``reply`` if its code is one ``stage`` can have; else the stream is out of step."""
    if reply.code in allowed or reply.code // 100 in (4, 5):
        return reply
    raise PipelineError(
        f"the server answered {stage} with {reply.code} {reply.message!r}, out of step",
        stage=stage,
        after_data=after_data,
        closed_early=False,
    )


async def pipelined_transaction(
    smtp: aiosmtplib.SMTP,
    *,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    timeout: float,
    mail_options: Sequence[str] = (),
    rcpt_options: Sequence[Sequence[str]] | None = None,
) -> Transaction:
    """Send one email over ``smtp`` with pipelining; the caller checks :func:`pipelinable`.

    ``mail_options`` are MAIL FROM's ESMTP parameters; ``rcpt_options`` holds each
    recipient's, in the order of ``recipients`` (e.g. the DSN ones, :mod:`.dsn`).

    Raises :class:`PipelineError` when the connection cannot be trusted any more (the
    caller closes it). When the server refused DATA, or opened it though MAIL or every
    recipient was refused, no message is written and ``data`` is None.
    """
    per_rcpt = rcpt_options if rcpt_options is not None else [()] * len(recipients)
    if len(per_rcpt) != len(recipients):
        raise ValueError("rcpt_options must give one list of parameters per recipient")
    # Built before the transport is borrowed: a bad parameter raises with nothing sent.
    commands = [_command(b"MAIL FROM:<", mail_from, mail_options)]
    commands.extend(
        _command(b"RCPT TO:<", r, options) for r, options in zip(recipients, per_rcpt, strict=True)
    )
    commands.append(b"DATA\r\n")
    transport, owner, reader = _borrow(smtp, stage="MAIL FROM")
    ok = (250, 251)

    async def next_reply(
        stage: str, allowed: tuple[int, ...], *, after_data: bool = False
    ) -> Reply:
        reply = await reader.reply(timeout, stage=stage, after_data=after_data)
        return _expect(reply, allowed, stage=stage, after_data=after_data)

    try:
        transport.write(b"".join(commands))
        mail = await next_reply("MAIL FROM", ok)
        rcpt = [await next_reply("RCPT TO", ok) for _ in recipients]
        start = await next_reply("DATA", (354,))
        if start.code != 354:
            return Transaction(mail, rcpt, start, None)
        if mail.code != 250 or not any(r.code in ok for r in rcpt):
            # DATA opened with nothing to deliver to: not even an empty message goes.
            # The connection is dropped instead, and the refusals stand.
            transport.close()
            return Transaction(mail, rcpt, start, None, usable=False)
        _check_open(transport, reader)
        transport.write(data_lines(message))
        final = await next_reply("the message", ok, after_data=True)
        return Transaction(mail, rcpt, start, final)
    finally:
        if not transport.is_closing():
            transport.set_protocol(owner)


def _command(verb: bytes, address: str, options: Sequence[str]) -> bytes:
    """``MAIL FROM:<a> P=V ...`` or ``RCPT TO:<a> ...`` as one CRLF-ended line."""
    for option in options:
        if not _PARAMETER.fullmatch(option):
            # Built by Postroom itself (xtext): a slip here must not put a line on the wire.
            raise ValueError(f"not an ESMTP parameter: {option!r}")
    parts = [verb + address.encode("ascii") + b">", *(o.encode("ascii") for o in options)]
    return b" ".join(parts) + b"\r\n"


async def message_reply(smtp: aiosmtplib.SMTP, *, message: bytes, timeout: float) -> Reply:
    """After DATA's 354, without pipelining: write the message and read the reply to it.

    A failure once the message is written is :class:`PipelineError` with ``after_data``:
    the server may have taken it.
    """
    transport, owner, reader = _borrow(smtp, stage="the message")
    try:
        _check_open(transport, reader)
        transport.write(data_lines(message))
        reply = await reader.reply(timeout, stage="the message", after_data=True)
        return _expect(reply, (250, 251), stage="the message", after_data=True)
    finally:
        if not transport.is_closing():
            transport.set_protocol(owner)


def _borrow(
    smtp: aiosmtplib.SMTP, *, stage: str
) -> tuple[asyncio.Transport, asyncio.BaseProtocol, ReplyReader]:
    """The connection's transport, now read by a :class:`ReplyReader`; give it back after."""
    transport = smtp.transport
    owner = smtp.protocol
    if transport is None or owner is None or not isinstance(transport, asyncio.Transport):
        # Nothing was written on it: whatever came before, no message went.
        raise PipelineError(
            "the connection is closed", stage=stage, after_data=False, closed_early=True
        )
    reader = ReplyReader(owner)
    transport.set_protocol(reader)
    return transport, owner, reader


def _check_open(transport: asyncio.Transport, reader: ReplyReader) -> None:
    """Before the message: a connection the server already closed would drop it unsent."""
    if transport.is_closing() or reader.closed:
        raise PipelineError(
            "the server closed the connection instead of taking the message",
            stage="DATA",
            after_data=False,
            closed_early=False,
        )
