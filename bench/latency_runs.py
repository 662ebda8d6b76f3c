"""The latency benchmark's runs: each drives one system at a steady rate into its own
timestamping sink (``bench/stamp_sink.py``) and returns when each email was enqueued and
accepted. ``bench/latency.py`` says what is measured and prints it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
import scale
import workload
from harness import BenchFailure, BenchTimeout, Deadline, StdioProcess
from peer_dpo import HTML
from peer_dpo_latency import OVERRUN, Sample, paced, subject
from rich.console import Console
from tools import ToolError, peer_python

from postroom import Postroom, Settings
from postroom.identity.tokens import Scope

HERE = Path(__file__).parent
STAMP_SINK = HERE / "stamp_sink.py"
PEER_SCRIPT = HERE / "peer_dpo_latency.py"
# By default; also "postgres-1" (--workers 1), "postgres-polling" (wake-up off) and
# "serve-2" (serve --workers 2: the agent in two processes beside the API's).
RUNS = ("postgres", "serve", "serve-postgres", "peer")
LANES = 8
TARGET_P50, TARGET_P99 = 20.0, 100.0  # milliseconds
WARM_UP = 10  # unnumbered emails delivered before the clock starts: connections open
SETTLE = 30.0  # seconds after the last enqueue for the last email to reach the sink
START_LIMIT = 60.0  # seconds for a process to come up


@dataclass(frozen=True, slots=True)
class Options:
    rate: float
    seconds: float
    database_url: str
    peer_interval: float
    workers: int | None
    runs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """One run: what was enqueued when, and when the sink accepted each email."""

    name: str
    samples: list[Sample]
    stamps: dict[int, float]
    duplicates: int = 0
    problem: str | None = None  # why the run did not count (not run, failed)
    targeted: bool = True  # the targets are Postroom's; the peer is shown beside them
    from_call: bool = False  # the clock starts as the call starts, not as it returns
    load: float | None = None  # the machine's 1-minute load average as the run ended
    cpu: Cpu | None = None

    @property
    def starts(self) -> dict[int, float]:
        return {n: before if self.from_call else after for n, before, after in self.samples}

    @property
    def early(self) -> int:
        """Emails whose 250 came before their clock started (the call had not returned)."""
        starts = self.starts
        return sum(1 for n, at in self.stamps.items() if n in starts and at < starts[n])

    @property
    def rate(self) -> float:
        """Emails enqueued a second, as the driver managed to call them."""
        if len(self.samples) < 2:
            return 0.0
        span = max(a for _, _, a in self.samples) - min(b for _, b, _ in self.samples)
        return len(self.samples) / span if span > 0 else 0.0

    @property
    def latencies(self) -> list[float]:
        """Milliseconds from each email's start to its 250, sorted."""
        starts = self.starts
        return sorted((at - starts[n]) * 1000 for n, at in self.stamps.items() if n in starts)

    @property
    def timeline(self) -> list[tuple[float, float]]:
        """(seconds into the run, milliseconds to its 250) per email, in enqueue order."""
        starts = self.starts
        if not starts:
            return []
        first = min(starts.values())
        return sorted(
            (starts[n] - first, (at - starts[n]) * 1000)
            for n, at in self.stamps.items()
            if n in starts
        )

    def percentile(self, q: float) -> float:
        return nearest_rank(self.latencies, q)

    @property
    def call_p50(self) -> float:
        """Milliseconds the median enqueue call took."""
        return nearest_rank(sorted((a - b) * 1000 for _, b, a in self.samples), 50)

    @property
    def failed(self) -> bool:
        """An error, or an email lost or delivered twice (not: not run, target missed)."""
        if self.problem is not None:
            return not self.problem.startswith("not run")
        return len(self.stamps) != len(self.samples) or self.duplicates > 0

    @property
    def verdict(self) -> str:
        if self.problem is not None:
            return self.problem
        lost = len(self.samples) - len(self.stamps)
        if lost or self.duplicates:
            return f"failed: {lost} lost, {self.duplicates} delivered twice"
        if not self.targeted:
            return "all delivered once"
        p50, p99 = self.percentile(50), self.percentile(99)
        missed = [
            f"{name} {value:.1f} > {target:.0f}"
            for name, value, target in (("p50", p50, TARGET_P50), ("p99", p99, TARGET_P99))
            if value > target
        ]
        return "missed: " + ", ".join(missed) if missed else "met"

    def summary(self) -> str:
        """The run in one line."""
        if not self.stamps:
            return self.verdict
        p = [self.percentile(q) for q in (50, 90, 99, 100)]
        return (
            f"p50 {p[0]:.1f} ms, p90 {p[1]:.1f}, p99 {p[2]:.1f}, max {p[3]:.1f}; "
            f"{len(self.stamps)}/{len(self.samples)} delivered at {self.rate:.0f}/s; "
            f"{self.verdict}"
            + (f"; {self.early} accepted before the call returned" if self.early else "")
        )


@dataclass(frozen=True, slots=True)
class Cpu:
    """CPU seconds a run took: the caller that enqueued, and the processes that delivered
    (the agent and its workers, ``postroom serve``, django-post-office's sender)."""

    caller: float
    delivery: float


class CpuClock:
    """CPU time of this process and of a process tree since the clock was made (Linux)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._start = Cpu(time.process_time(), tree_cpu(pid))

    def read(self) -> Cpu:
        return Cpu(
            time.process_time() - self._start.caller, tree_cpu(self._pid) - self._start.delivery
        )


def tree_cpu(pid: int) -> float:
    """User and system seconds of ``pid`` and its living descendants, from /proc."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            # After the command: state, ppid, …; utime and stime are fields 14 and 15.
            parents[int(stat.parent.name)] = int(fields[1])
            ticks[int(stat.parent.name)] = int(fields[11]) + int(fields[12])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def nearest_rank(values: list[float], q: float) -> float:
    """The smallest of the sorted ``values`` with at least ``q`` percent at or below it."""
    rank = -(-len(values) * q // 100)  # ceiling
    return values[int(max(1, min(len(values), rank))) - 1] if values else float("nan")


class StampSink(StdioProcess):
    """The timestamping sink in its own process, spoken to over its stdio."""

    def __init__(self, max_seconds: float) -> None:
        args = [str(STAMP_SINK), "--max-seconds", f"{max_seconds:.0f}"]
        super().__init__(args, what="stamp sink")

    def ask(self, request: str) -> dict[str, Any]:
        stdin = self._pipes()[0]
        stdin.write(request + "\n")
        stdin.flush()
        return self._read()

    def wait_for(self, field: str, count: int, deadline: Deadline, what: str) -> None:
        while self.ask("count")[field] < count:
            deadline.check(what)
            time.sleep(0.05)

    def run(
        self,
        name: str,
        samples: list[Sample],
        deadline: Deadline,
        *,
        targeted: bool = True,
        from_call: bool = False,
    ) -> Run:
        """The run once every email has arrived, or once ``SETTLE`` has passed."""
        settle = Deadline(min(deadline.at, time.monotonic() + SETTLE))
        with contextlib.suppress(BenchTimeout):
            self.wait_for("stamped", len(samples), settle, "the last emails")
        time.sleep(0.2)  # a duplicate, were there one, would arrive by now
        stamps = {int(n): at for n, at in self.ask("stamps")["stamps"].items()}
        duplicates = self.ask("count")["duplicates"]
        return Run(
            name, samples, stamps, duplicates=duplicates, targeted=targeted, from_call=from_call
        )


@contextlib.contextmanager
def stamp_sink(max_seconds: float) -> Iterator[StampSink]:
    sink = StampSink(max_seconds)
    try:
        yield sink
    finally:
        sink.close()


def wait_until(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    """Until ``check()`` holds, failing with the log's last line if the process exits."""
    deadline = Deadline(time.monotonic() + START_LIMIT)
    while not check():
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise BenchFailure(f"{what}: exited with {proc.returncode}: {tail[0]}")
        deadline.check(what)
        time.sleep(0.1)


def warm_up(sink: StampSink, send: Callable[[int], object], deadline: Deadline) -> None:
    """Deliver ``WARM_UP`` unnumbered emails first: connections open, code paths warm."""
    before = sink.ask("count")["unnumbered"]
    for n in range(WARM_UP):
        send(n)
    sink.wait_for("unnumbered", before + WARM_UP, deadline, "the warm-up emails")


# --- the runs ---------------------------------------------------------------------------


def postgres_run(opts: Options, work: Path, *, workers: int | None, wakeup: bool = True) -> Run:
    """An agent process (``--workers`` as given, else its default: one per core); with
    ``wakeup=False`` it only polls (every second), for comparison."""
    count = workers or len(os.sched_getaffinity(0))
    name = f"Postroom on PostgreSQL, `postroom agent run`, {count} worker" + "s" * (count > 1)
    name += "" if wakeup else ", polling only (wakeup off)"
    try:
        scale.require_server(opts.database_url)
    except BenchFailure as exc:
        return Run(name, [], {}, problem=f"not run: {exc}")
    deadline = Deadline(time.monotonic() + OVERRUN * opts.seconds + SETTLE + 3 * START_LIMIT)
    key = secrets.token_urlsafe(32)
    log = work / "latency-agent.log"
    flags = ["--workers", str(workers)] if workers else []
    with (
        stamp_sink(deadline.remaining("setup")) as sink,
        harness.scratch_postgres(opts.database_url) as url,
        Postroom(Settings(database_url=url, secret_key=key)) as postroom,
    ):
        postroom.apply(workload.records(sink.port))
        env = harness.agent_env(
            {"database_url": url, "secret_key": key, "log_level": "WARNING", "wakeup": wakeup}
        )
        with harness.running([*harness.AGENT_COMMAND, *flags], env, log) as agent:
            wait_until(lambda: len(postroom.agents()) >= count, agent, log, "the agents")

            def send(n: int, title: str | None = None) -> int:
                to = [workload.recipient(n)]
                body = HTML.format(n=n)
                return postroom.send(
                    to=to, subject=title or subject(n), body=body, class_name=workload.CLASS_NAME
                )

            warm_up(sink, lambda n: send(n, "Latency warm-up"), deadline)
            clock = CpuClock(agent.pid)
            samples = paced(send, rate=opts.rate, seconds=opts.seconds, lanes=LANES)
            run = sink.run(name, samples, deadline)
            return dataclasses.replace(run, cpu=clock.read())


def serve_run(
    opts: Options, work: Path, *, workers: int | None = None, postgres: bool = False
) -> Run:
    """``postroom serve``: its agent in the same process, or ``--workers N`` processes;
    on SQLite (the embedded default) or, with ``postgres``, a scratch PostgreSQL database."""
    name = f"Postroom `serve` on {'PostgreSQL' if postgres else 'SQLite'}, POST /api/v1/emails"
    name += f", --workers {workers}" if workers else ""
    if postgres:
        try:
            scale.require_server(opts.database_url)
        except BenchFailure as exc:
            return Run(name, [], {}, problem=f"not run: {exc}")
    with contextlib.ExitStack() as stack:
        if postgres:
            url = stack.enter_context(harness.scratch_postgres(opts.database_url))
        else:
            url = f"sqlite:///{work / f'serve-{time.monotonic_ns()}.db'}"
        return _serve(opts, work, url=url, name=name, workers=workers)


def _serve(opts: Options, work: Path, *, url: str, name: str, workers: int | None) -> Run:
    flags = ["--workers", str(workers)] if workers else []
    deadline = Deadline(time.monotonic() + OVERRUN * opts.seconds + SETTLE + 3 * START_LIMIT)
    key = secrets.token_urlsafe(32)
    log = work / "latency-serve.log"
    with stamp_sink(deadline.remaining("setup")) as sink:
        with Postroom(Settings(database_url=url, secret_key=key)) as postroom:
            postroom.apply(workload.records(sink.port))
            token = postroom.identity.create_token(name="latency", scopes={Scope.SEND}).value
        port = free_port()
        command = [str(Path(sys.executable).with_name("postroom")), "serve", "--host",
                   "127.0.0.1", "--port", str(port), "--no-inbound", "--no-webhooks",
                   *flags]  # fmt: skip
        env = harness.agent_env({"database_url": url, "secret_key": key, "log_level": "WARNING"})
        headers = {"Authorization": f"Bearer {token}"}
        limits = httpx.Limits(max_connections=LANES, max_keepalive_connections=LANES)
        with (
            harness.running(command, env, log) as server,
            httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, limits=limits, timeout=30
            ) as client,
        ):
            wait_until(lambda: _healthy(client), server, log, "postroom serve")

            def send(n: int, title: str | None = None) -> None:
                answer = client.post(
                    "/api/v1/emails",
                    json={"to": [workload.recipient(n)], "subject": title or subject(n),
                          "body": HTML.format(n=n), "class_name": workload.CLASS_NAME},
                )  # fmt: skip
                if answer.status_code != 201:
                    raise BenchFailure(f"POST /api/v1/emails answered {answer.status_code}")

            warm_up(sink, lambda n: send(n, "Latency warm-up"), deadline)
            clock = CpuClock(server.pid)
            samples = paced(send, rate=opts.rate, seconds=opts.seconds, lanes=LANES)
            run = sink.run(name, samples, deadline, from_call=True)
            return dataclasses.replace(run, cpu=clock.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/api/v1/healthz").status_code == 200
    except httpx.TransportError:
        return False


def peer_run(opts: Options, work: Path) -> Run:
    name = f"django-post-office, send_queued_mail every {opts.peer_interval:g} s"
    limit = OVERRUN * opts.seconds + 2 * opts.peer_interval + SETTLE + START_LIMIT
    deadline = Deadline(time.monotonic() + limit + START_LIMIT)
    database = work / f"dpo-latency-{time.monotonic_ns()}.db"
    with stamp_sink(deadline.remaining("setup")) as sink:
        try:
            result = subprocess.run(
                [str(peer_python()), str(PEER_SCRIPT), "--port", str(sink.port),
                 "--database", str(database), "--rate", str(opts.rate),
                 "--seconds", str(opts.seconds), "--interval", str(opts.peer_interval),
                 "--lanes", str(LANES), "--settle", str(SETTLE)],
                check=True, capture_output=True, timeout=limit,
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            tail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            why = f"django-post-office: exit code {exc.returncode}: {tail[0]}"
            raise BenchFailure(why) from None
        except subprocess.TimeoutExpired:
            raise BenchTimeout(f"django-post-office took more than {limit:.0f} s") from None
        report = json.loads(result.stdout.decode().strip().splitlines()[-1])
        samples = [(int(n), float(b), float(a)) for n, b, a in report["enqueued"]]
        cpu = Cpu(report["cpu"]["application"], report["cpu"]["sender"])
        return dataclasses.replace(sink.run(name, samples, deadline, targeted=False), cpu=cpu)


MEASURED: dict[str, Callable[[Options, Path], Run]] = {
    "postgres": lambda opts, work: postgres_run(opts, work, workers=opts.workers),
    "postgres-1": lambda opts, work: postgres_run(opts, work, workers=1),
    "postgres-polling": lambda opts, work: postgres_run(opts, work, workers=None, wakeup=False),
    "serve": serve_run,
    "serve-2": lambda opts, work: serve_run(opts, work, workers=2),
    "serve-postgres": lambda opts, work: serve_run(opts, work, postgres=True),
    "peer": peer_run,
}


def measure(opts: Options, work: Path, console: Console) -> list[Run]:
    """Each chosen run in turn; a run that fails is kept with its reason in one line."""
    runs = []
    for key in opts.runs:
        console.print(f"latency: {key}, {opts.rate:g}/s for {opts.seconds:g} s…")
        try:
            run = MEASURED[key](opts, work)
        except (BenchFailure, BenchTimeout, ToolError) as exc:
            run = Run(key, [], {}, problem=f"failed: {exc}")
        run = dataclasses.replace(run, load=os.getloadavg()[0])
        console.print(f"  {run.name}: {run.summary()}")
        runs.append(run)
    return runs
