"""The ceilings Postroom's delivery is measured against, each labelled with what it is.

* ``smtp-source``, a new connection per message, 10 sessions: Postfix's C load generator
  (kept from the first benchmark; what bounds it is measured and said below the table);
* ``smtp-source -d``, 10 persistent sessions: the same messages without a TCP connection
  per message, what one machine's loopback SMTP can take: the ceiling of the ratios;
* a bare ``smtplib`` loop: one pre-built message sent over one persistent connection, as
  fast as Python's standard library speaks SMTP with no outbox behind it.

Each run also records the CPU seconds that ``smtp-source`` (user and system) and
``smtp-sink`` used, which is what the paragraph on the per-connection row is written from.
"""

from __future__ import annotations

import os
import resource
import smtplib
import subprocess
import time
from dataclasses import dataclass

import harness
from harness import Phase
from tools import Postfix

SESSIONS = 10
MESSAGE_BYTES = 2048
PER_CONNECTION = f"smtp-source, a new connection per message ({SESSIONS} sessions)"
PERSISTENT = f"smtp-source -d, {SESSIONS} persistent sessions: the ceiling"
SMTPLIB = "bare smtplib loop: pre-built bytes over one persistent connection"
# Measured on the 2-core bench machine (idle apart from the benchmark's own processes
# except where said), 10,000-20,000 messages per run; kept as text because they are
# experiments, not rows: see ``bound_paragraph``.
EXPERIMENTS = (
    "Varied one at a time (10,000-20,000 messages per run, same machine): the number of "
    "sessions (1: ~4 s for 10,000; 2: 1.9-2.5 s; 4: 1.3 s; 10: 0.9 s; 20 and 50 sessions "
    "no faster than 10), the message size (100 bytes to 20 KB: within the run-to-run "
    "noise, ±20%), smtp-sink's listen backlog (1,024: no effect; 64: about twice as "
    "slow; 5: 52 s, SYNs dropped and retried after a second), TIME_WAIT (fewer than 150 "
    "sockets in it after 20,000 connections: no shortage of ports, "
    "`net.ipv4.ip_local_port_range` has 28,232), and a busy-looping process beside it "
    "(3.7 → 4.6 s for 20,000). `strace -c` of smtp-source: 13 system calls per message "
    "besides the SMTP reads and writes (socket, connect, close, epoll, fcntl, sockopts)."
)


@dataclass(frozen=True, slots=True)
class Cpu:
    """CPU seconds smtp-source (user, system) and smtp-sink used during one run."""

    source_user: float
    source_system: float
    sink: float

    @property
    def total(self) -> float:
        return self.source_user + self.source_system + self.sink


@dataclass(frozen=True, slots=True)
class Run:
    """One smtp-source run: its phase and the CPU both ends used."""

    phase: Phase
    cpu: Cpu


def source(
    tools: Postfix, sink: harness.SmtpSink, count: int, *, persistent: bool, timeout: float
) -> Run:
    """``smtp-source`` into ``sink``: ``count`` messages over ``SESSIONS`` sessions."""
    before = sink.count()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sink_cpu = sink.cpu_seconds()
    start = time.perf_counter()
    subprocess.run(
        [str(tools.source), *(["-d"] if persistent else []), "-s", str(SESSIONS),
         "-m", str(count), "-l", str(MESSAGE_BYTES), "-c", f"127.0.0.1:{sink.port}"],
        env=tools.env, check=True, capture_output=True, timeout=timeout,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    what = "smtp-source -d" if persistent else "smtp-source"
    expect(sink, before, count, what)
    cpu = Cpu(
        source_user=after.ru_utime - children.ru_utime,
        source_system=after.ru_stime - children.ru_stime,
        sink=sink.cpu_seconds() - sink_cpu,
    )
    return Run(Phase(PERSISTENT if persistent else PER_CONNECTION, count, seconds), cpu)


def smtplib_loop(sink: harness.SmtpSink, count: int, *, message: bytes) -> Phase:
    """``message`` sent ``count`` times over one connection with ``smtplib``."""
    before = sink.count()
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as client:
        for _ in range(count):
            client.sendmail("bench@example.org", ["to@example.org"], message)
    seconds = time.perf_counter() - start
    expect(sink, before, count, "the smtplib loop")
    return Phase(SMTPLIB, count, seconds)


def prebuilt_message(size: int) -> bytes:
    """A plain message of about ``size`` bytes, CRLF line ends (as it goes on the wire)."""
    head = (
        "From: bench@example.org\r\nTo: to@example.org\r\nSubject: ceiling\r\n"
        "Message-ID: <ceiling@example.org>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


def expect(sink: harness.SmtpSink, before: int, count: int, what: str) -> None:
    seen = sink.wait_for(before + count) - before
    if seen != count:
        raise harness.BenchFailure(f"{what}: smtp-sink counted {seen} messages, not {count}")


def bound_paragraph(per_connection: Run, persistent: Run) -> str:
    """What bounds the per-connection row, from this run's CPU figures (markdown)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n, p = per_connection, persistent

    def micro(seconds: float, run: Run) -> float:
        return seconds / run.phase.count * 1e6

    floor = n.cpu.total / (cores or 1)
    return (
        "### What bounds the per-connection row\n\n"
        f"CPU, most of it the kernel's work to open and close a TCP connection. In this "
        f"run, per message: smtp-source used {micro(n.cpu.source_user, n):.0f} µs user and "
        f"{micro(n.cpu.source_system, n):.0f} µs system time and smtp-sink "
        f"{micro(n.cpu.sink, n):.0f} µs with a new connection each, against "
        f"{micro(p.cpu.source_user, p):.0f}, {micro(p.cpu.source_system, p):.0f} and "
        f"{micro(p.cpu.sink, p):.0f} µs over persistent sessions "
        f"({n.cpu.total / max(p.cpu.total, 1e-9) * p.phase.count / n.phase.count:.1f} times "
        f"the CPU). Both ends together used {n.cpu.total:.2f} CPU seconds for "
        f"{n.phase.count:,} messages: spread over this machine's {cores} cores that is "
        f"{floor:.2f} s at best, and the row took {n.phase.seconds:.2f} s. So the row is as "
        "fast as the CPU left to it: it moves with whatever else runs on the machine (its "
        "history in this file: 1.96 to 5.42 s for 20,000, on a machine shared with other "
        "work), not with the network or the sink's settings. "
        f"{EXPERIMENTS} The persistent row (`-d`) does the same SMTP work without the "
        "connections and is the ceiling the ratios use.\n\n"
    )
