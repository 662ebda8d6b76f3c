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
from dataclasses import dataclass

import aiosmtplib

# An address that needs no quoting and cannot break a command line: what Postroom's own
# validation produces. Anything else goes through aiosmtplib's checks, one at a time.
_PLAIN_ADDRESS = re.compile(rb"[!-;=?-~]+@[!-;=?-~]+")
_LONE_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_LEADING_PERIOD = re.compile(rb"(?m)^\.")
_MAX_REPLY = 64 * 1024  # a server that keeps talking without ending a reply is broken


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: its code and its text (lines joined by newlines)."""

    code: int
    message: str


class PipelineLost(ConnectionError):
    """The connection ended (or a reply timed out) during a pipelined transaction."""

    def __init__(self, text: str, *, replies: int) -> None:
        super().__init__(text)
        self.replies = replies  # how many replies had arrived: none means nothing was sent


def pipelinable(mail_from: str, recipients: list[str]) -> bool:
    """Whether every address can go on the wire as it is (plain ASCII, no quoting)."""
    return all(
        a.isascii() and _PLAIN_ADDRESS.fullmatch(a.encode()) for a in (mail_from, *recipients)
    )


def data_lines(message: bytes) -> bytes:
    """The message as DATA content: CRLF line ends, leading periods doubled, then ``.``."""
    # Counting is a C loop over the bytes; the regular expressions run only when needed
    # (Postroom's own messages are CRLF throughout).
    pairs = message.count(b"\r\n")
    if message.count(b"\r") != pairs or message.count(b"\n") != pairs:
        message = _LONE_LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_PERIOD.sub(b"..", message)
    return message + b".\r\n"


class ReplyReader(asyncio.Protocol):
    """Reads replies from a borrowed transport; hands connection loss on to its owner."""

    def __init__(self, owner: asyncio.BaseProtocol) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._lost: str | None = None
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        while (reply := self._take_reply()) is not None:
            self._replies.append(reply)
        if len(self._buffer) > _MAX_REPLY:
            self._lose("the server sent an over-long reply")
        self._wake()

    def eof_received(self) -> bool:
        self._lose("the server closed the connection")
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose("the server closed the connection")
        self._owner.connection_lost(exc)

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _take_reply(self) -> Reply | None:
        lines: list[bytes] = []
        offset = 0
        while (end := self._buffer.find(b"\n", offset)) != -1:
            line = bytes(self._buffer[offset : end + 1])
            offset = end + 1
            lines.append(line)
            if line[3:4] != b"-":
                del self._buffer[:offset]
                try:
                    code = int(lines[0][:3])
                except ValueError:
                    code = 0  # not a reply: the caller treats it as a broken server
                text = "\n".join(x[4:].strip(b" \t\r\n").decode("utf-8", "replace") for x in lines)
                return Reply(code, text)
        return None

    async def reply(self, timeout: float) -> Reply:
        """The next reply in order; :class:`PipelineLost` if none comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._replies:
            if self._lost is not None:
                raise PipelineLost(self._lost, replies=self.received)
            left = deadline - loop.time()
            if left <= 0:
                raise PipelineLost("no reply from the server in time", replies=self.received)
            self._wakeup = loop.create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._wakeup), left)
            except TimeoutError:
                pass
            finally:
                self._wakeup = None
        self.received += 1
        return self._replies.popleft()


@dataclass(frozen=True, slots=True)
class Transaction:
    """The replies of one pipelined transaction; ``data`` is None when DATA was refused."""

    mail: Reply
    rcpt: list[Reply]
    data_start: Reply
    data: Reply | None


async def pipelined_transaction(
    smtp: aiosmtplib.SMTP,
    *,
    mail_from: str,
    recipients: list[str],
    message: bytes,
    timeout: float,
) -> Transaction:
    """Send one email over ``smtp`` with pipelining; the caller checks :func:`pipelinable`.

    When the server refuses DATA (no recipient accepted, or MAIL refused) nothing more
    is written and ``data`` is None; the caller resets the transaction.
    """
    transport = smtp.transport
    owner = smtp.protocol
    if transport is None or owner is None or not isinstance(transport, asyncio.Transport):
        raise PipelineLost("the connection is closed", replies=0)
    reader = ReplyReader(owner)
    transport.set_protocol(reader)
    try:
        commands = [b"MAIL FROM:<" + mail_from.encode("ascii") + b">\r\n"]
        commands.extend(b"RCPT TO:<" + r.encode("ascii") + b">\r\n" for r in recipients)
        commands.append(b"DATA\r\n")
        transport.write(b"".join(commands))
        mail = await reader.reply(timeout)
        rcpt = [await reader.reply(timeout) for _ in recipients]
        data_start = await reader.reply(timeout)
        if data_start.code != 354:
            return Transaction(mail, rcpt, data_start, None)
        if not any(r.code in (250, 251) for r in rcpt) or mail.code != 250:
            # A server that opens DATA with no accepted recipient: an empty message
            # ends it, and it can deliver nothing.
            transport.write(b".\r\n")
            await reader.reply(timeout)
            return Transaction(mail, rcpt, data_start, None)
        transport.write(data_lines(message))
        return Transaction(mail, rcpt, data_start, await reader.reply(timeout))
    finally:
        if not transport.is_closing():
            transport.set_protocol(owner)
