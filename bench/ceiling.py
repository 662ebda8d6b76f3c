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
# Experiments on the 2-core bench machine, 10,000-20,000 messages per run, kept as text
# (they are not rows): see ``bound_paragraph``. The machine was shared while they ran,
# so elapsed times varied 2-3x between identical runs; CPU per message did not.
EXPERIMENTS = (
    "Varied one at a time (10,000 messages per run, three to five runs each, on a "
    "machine shared with other work, so elapsed times varied 2-3 times between identical "
    "runs while CPU per message moved much less): the number of sessions (CPU of both "
    "ends together per message: 10 or 20 sessions 135-160 µs, 4 sessions 120-185 µs, 1 "
    "or 2 sessions up to 340 µs, every step waiting for the other process to be "
    "scheduled; persistent sessions 37-45 µs), the message size (100 bytes 140-170 µs, "
    "2 KB 135-160 µs, 20 KB 170-180 µs), smtp-sink's listen backlog (1,024 as here: no "
    "effect; 5: 52 s for 10,000, SYNs dropped and retried a second later), TIME_WAIT "
    "(fewer than 200 sockets in it after 20,000 connections: no shortage of ports), a "
    "busy-looping process beside it (3.7 → 4.6 s for 20,000: it takes CPU from the two "
    "ends). `strace -c` of smtp-source: 13 system calls per message for the "
    "connection alone (socket, connect, close, epoll_ctl, fcntl, get/setsockopt) besides "
    "the SMTP reads and writes; the kernel's TCP handshake and teardown on loopback run "
    "in those calls, which is why most of the CPU is system time. `perf record` of "
    "smtp-source (10,000 messages): 24% of its samples in the kernel's context switch "
    "(finish_task_switch: it waits on every reply), 18% in a memset in smtp-source itself "
    "that is gone with `-d` (per connection), and the loopback TCP path, whose receiving "
    "side runs inside the sender's write as a softirq."
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

    source_n = n.cpu.source_user + n.cpu.source_system
    source_p = p.cpu.source_user + p.cpu.source_system
    # Each end is one single-threaded process: it cannot finish before its own CPU time
    # has run, nor can both before their sum has run on the cores there are.
    floor = max(source_n, n.cpu.sink, n.cpu.total / (cores or 1))
    return (
        "### What bounds the per-connection row\n\n"
        "CPU, most of it the kernel's work to open and close a TCP connection per message. "
        "smtp-source and smtp-sink are one single-threaded process each. In this run, per "
        f"message, smtp-source used {micro(source_n, n):.0f} µs of CPU "
        f"({micro(n.cpu.source_system, n):.0f} µs of it system time) and smtp-sink "
        f"{micro(n.cpu.sink, n):.0f} µs with a new connection each, against "
        f"{micro(source_p, p):.0f} and {micro(p.cpu.sink, p):.0f} µs over persistent "
        f"sessions ({micro(n.cpu.total, n) / max(micro(p.cpu.total, p), 1e-9):.1f} times the "
        f"CPU). For {n.phase.count:,} messages that is {source_n:.2f} and {n.cpu.sink:.2f} "
        f"CPU seconds: with one core each (this machine has {cores}) the row cannot take "
        f"less than {floor:.2f} s, and it took {n.phase.seconds:.2f} s. So it runs as fast "
        "as the CPU left to it and moves with whatever else runs on the machine (its history "
        "in this file: 1.96 to 5.42 s for 20,000, on a machine shared with other work; 1.55 s "
        "when quiet, with 1.45 s of CPU in smtp-source), not with the network or the "
        f"sink's settings. {EXPERIMENTS} The persistent row (`-d`) does the same SMTP "
        "work without a connection per message: it is the ceiling the ratios use.\n\n"
    )
