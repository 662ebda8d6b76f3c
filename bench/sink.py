"""A counting SMTP sink for the throughput benchmark; run it as its own process.

It listens on 127.0.0.1 (a free port unless ``--port`` is given), accepts every
message and keeps only counts and the distinct Message-IDs. It talks to its parent
over stdio, one JSON object per line:

* on start it prints ``{"port": N}``;
* each ``stats`` line read from stdin is answered with the current counts;
* end of stdin (or ``--max-seconds``) stops it.

Enough SMTP for a client that pipelines: EHLO/HELO, MAIL, RCPT, DATA with
dot-unstuffing, RSET, NOOP and QUIT.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 4096
MAX_MESSAGE = 50 * 1024 * 1024
EHLO_REPLY = b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n"
_FOLD = re.compile(rb"\r\n[ \t]+")
_MESSAGE_ID = re.compile(
    rb"^message-id:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


@dataclass
class SinkStats:
    """What the sink has received so far."""

    connections: int = 0
    messages: int = 0
    recipients: int = 0
    octets: int = 0
    without_message_id: int = 0
    message_ids: set[bytes] = field(default_factory=set)

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "messages": self.messages,
            "recipients": self.recipients,
            "octets": self.octets,
            "without_message_id": self.without_message_id,
            "distinct_message_ids": len(self.message_ids),
            "ids_digest": hashlib.sha256(b"\n".join(sorted(self.message_ids))).hexdigest(),
        }


def unstuff(content: bytes) -> bytes:
    """Undo SMTP dot-stuffing (RFC 5321 4.5.2): drop the first dot of each dotted line."""
    if content.startswith(b".."):
        content = content[1:]
    return content.replace(b"\r\n..", b"\r\n.")


def message_id(message: bytes) -> bytes | None:
    """The Message-ID header value of a message, unfolded, or ``None``."""
    end = message.find(b"\r\n\r\n")
    headers = _FOLD.sub(b" ", message if end < 0 else message[: end + 2])
    match = _MESSAGE_ID.search(headers)
    return match.group(1) if match else None


class SmtpSession(asyncio.Protocol):
    """One client connection: parses pipelined commands and DATA out of a byte buffer."""

    def __init__(self, stats: SinkStats, data_delay: float = 0.0) -> None:
        self._stats = stats
        self._data_delay = data_delay
        # Replies wait in order: one held back (a slow DATA) holds back those after it.
        self._pending: deque[tuple[float, bytes]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._in_data = False
        self._scan_from = 0
        self._mail_from: bytes | None = None
        self._recipients = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.connections += 1
        self._reply(b"220 bench-sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._transport is not None and not self._transport.is_closing():
            progressed = self._take_message() if self._in_data else self._take_command()
            if not progressed:
                break

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def _reply(self, reply: bytes, delay: float = 0.0) -> None:
        if self._transport is None:
            return
        if not delay and not self._pending:
            self._transport.write(reply)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        if self._pending:
            at = max(at, self._pending[-1][0])
        self._pending.append((at, reply))
        if self._timer is None:
            self._timer = loop.call_at(self._pending[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending and self._pending[0][0] <= loop.time():
            _, reply = self._pending.popleft()
            if self._transport is not None:
                self._transport.write(reply)
        if self._pending:
            self._timer = loop.call_at(self._pending[0][0], self._flush)

    def _take_command(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                self._reply(b"500 line too long\r\n")
                self._close()
            return False
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        self._command(line)
        return True

    def _take_message(self) -> bool:
        if self._buffer.startswith(b".\r\n"):
            content, consumed = b"", 3
        else:
            end = self._buffer.find(b"\r\n.\r\n", self._scan_from)
            if end < 0:
                if len(self._buffer) > MAX_MESSAGE:
                    self._reply(b"552 message too large\r\n")
                    self._close()
                self._scan_from = max(0, len(self._buffer) - 4)
                return False
            content, consumed = bytes(self._buffer[: end + 2]), end + 5
        del self._buffer[:consumed]
        self._in_data = False
        self._scan_from = 0
        self._accept(unstuff(content))
        return True

    def _accept(self, message: bytes) -> None:
        stats = self._stats
        stats.messages += 1
        stats.recipients += self._recipients
        stats.octets += len(message)
        found = message_id(message)
        if found is None:
            stats.without_message_id += 1
        else:
            stats.message_ids.add(found)
        self._reset()
        # A real server takes a while to accept a message (spam checks, disk): --data-delay.
        self._reply(f"250 2.0.0 queued as {stats.messages}\r\n".encode(), self._data_delay)

    def _command(self, line: bytes) -> None:
        verb, _, argument = line.partition(b" ")
        verb = verb.upper()
        if verb in (b"EHLO", b"HELO"):
            self._reset()
            self._reply(EHLO_REPLY if verb == b"EHLO" else b"250 bench-sink\r\n")
        elif verb == b"MAIL" and argument.upper().startswith(b"FROM:"):
            if self._mail_from is not None:
                self._reply(b"503 5.5.1 nested MAIL command\r\n")
                return
            self._mail_from = argument[5:]
            self._reply(b"250 2.1.0 OK\r\n")
        elif verb == b"RCPT" and argument.upper().startswith(b"TO:"):
            if self._mail_from is None:
                self._reply(b"503 5.5.1 MAIL first\r\n")
                return
            self._recipients += 1
            self._reply(b"250 2.1.5 OK\r\n")
        elif verb == b"DATA":
            if not self._recipients:
                self._reply(b"503 5.5.1 RCPT first\r\n")
                return
            self._in_data = True
            self._reply(b"354 end data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"RSET":
            self._reset()
            self._reply(b"250 2.0.0 OK\r\n")
        elif verb == b"NOOP":
            self._reply(b"250 2.0.0 OK\r\n")
        elif verb == b"QUIT":
            self._reply(b"221 2.0.0 bye\r\n")
            self._close()
        else:
            self._reply(b"502 5.5.2 command not implemented\r\n")

    def _reset(self) -> None:
        self._mail_from = None
        self._recipients = 0

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def report(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def answer_parent(stats: SinkStats) -> None:
    """Answer ``stats`` requests until the parent closes our stdin."""
    reader = await stdin_lines()
    while line := await reader.readline():
        if line.strip() == b"stats":
            report(stats.as_json())


async def serve(port: int, max_seconds: float, data_delay: float = 0.0) -> None:
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SmtpSession(stats, data_delay), host="127.0.0.1", port=port, backlog=512
    )
    report({"port": server.sockets[0].getsockname()[1]})
    async with server:
        try:
            await asyncio.wait_for(answer_parent(stats), max_seconds)
        except TimeoutError:
            print(f"sink: stopping after {max_seconds:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    parser.add_argument(
        "--data-delay", type=float, default=0.0, help="seconds before accepting each message"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_seconds, args.data_delay))


if __name__ == "__main__":
    main()
