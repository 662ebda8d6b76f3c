"""A timestamping SMTP sink for the latency benchmark; run it as its own process.

The SMTP side is the counting sink's (``bench/sink.py``). Each accepted message whose
Subject carries ``probe N`` is stamped with ``time.monotonic()`` (CLOCK_MONOTONIC, one
clock for every process on Linux) as its ``250`` is written. It talks to its parent over
stdio, one JSON object per line:

* on start it prints ``{"port": N}``;
* ``count`` is answered with the messages, stamps, duplicates and unnumbered messages;
* ``stamps`` is answered with ``{"stamps": {"N": seconds, ...}}`` (the first arrival of each);
* end of stdin (or ``--max-seconds``) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from dataclasses import dataclass, field

from sink import SinkStats, SmtpSession, report, stdin_lines

_FOLD = re.compile(rb"\r\n[ \t]+")
_PROBE = re.compile(rb"^subject:[^\r\n]*?\bprobe (\d+)\b", re.IGNORECASE | re.MULTILINE)


@dataclass
class Stamps:
    """When each numbered message's 250 was written, and what did not fit."""

    at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    unnumbered: int = 0

    def counts(self, stats: SinkStats) -> dict[str, int]:
        return {
            "messages": stats.messages,
            "stamped": len(self.at),
            "duplicates": self.duplicates,
            "unnumbered": self.unnumbered,
        }


def probe_number(message: bytes) -> int | None:
    """The N of ``probe N`` in the Subject header, or ``None``."""
    end = message.find(b"\r\n\r\n")
    headers = _FOLD.sub(b" ", message if end < 0 else message[: end + 2])
    match = _PROBE.search(headers)
    return int(match.group(1)) if match else None


class StampSession(SmtpSession):
    """The counting sink's session, stamping each numbered message as it is accepted."""

    def __init__(self, stats: SinkStats, stamps: Stamps) -> None:
        super().__init__(stats)
        self._stamps = stamps

    def _accept(self, message: bytes) -> None:
        super()._accept(message)  # writes the 250 (no --data-delay here)
        at = time.monotonic()
        number = probe_number(message)
        if number is None:
            self._stamps.unnumbered += 1
        elif number in self._stamps.at:
            self._stamps.duplicates += 1
        else:
            self._stamps.at[number] = at


async def answer_parent(stats: SinkStats, stamps: Stamps) -> None:
    """Answer ``count`` and ``stamps`` requests until the parent closes our stdin."""
    reader = await stdin_lines()
    while line := await reader.readline():
        request = line.strip()
        if request == b"count":
            report(stamps.counts(stats))
        elif request == b"stamps":
            report({"stamps": {str(n): at for n, at in stamps.at.items()}})


async def serve(port: int, max_seconds: float) -> None:
    stats, stamps = SinkStats(), Stamps()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: StampSession(stats, stamps), host="127.0.0.1", port=port, backlog=512
    )
    report({"port": server.sockets[0].getsockname()[1]})
    async with server:
        try:
            await asyncio.wait_for(answer_parent(stats, stamps), max_seconds)
        except TimeoutError:
            print(f"stamp sink: stopping after {max_seconds:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
