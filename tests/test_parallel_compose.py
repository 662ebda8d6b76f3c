"""``send_many`` over the threshold composes in a pool of processes, exactly as it would alone."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from postroom import Postroom
from postroom.cases.emails import EmailRequest
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import InvalidFieldsError, PostroomError
from postroom.outbox import OutboxStatus, Priority
from tests.chaoskit import wait_until
from tests.conftest import make_settings
from tests.test_delivery import account

RECORDS = {
    "accounts": [account(2525, display_name="Bank Notices ✓", reply_to="help@example.com")],
    "correspondence": [
        {"name": "Footer", "html": "<p>Kind regards,<br><b>{{ account.display_name }}</b></p>"},
        {
            "name": "Notice",
            "subject": "Notice from {{ account.display_name }}",
            "html": (
                '<div style="font-family: Arial;"><p>Dear customer,</p><table><tr><td>Amount'
                "</td><td>250 000 €</td></tr></table><ul><li>one</li><li>two &amp; three</li>"
                '</ul><p>See <a href="https://bank.example/r?id=1&amp;x=2">your request</a>.'
                '</p>{% include "Footer" %}</div>'
            ),
        },
        {
            "name": "Plain",
            "subject": "Plain",
            "html": "<p>Hi</p>",
            "text": "Hi {{ account.address }}",
        },
    ],
}
COUNT = 120


def requests(count: int = COUNT) -> list[EmailRequest]:
    """Every kind of ad-hoc request: letters, templates, as written, cc/bcc, timing."""
    later = utcnow() + timedelta(days=2)
    made = []
    for n in range(count):
        to = [f"user{n}@example.net"]
        kind = n % 5
        if kind == 0:
            made.append(EmailRequest.addressed(to=to, correspondence="Notice"))
        elif kind == 1:
            made.append(
                EmailRequest.addressed(
                    to=to, cc=[f"cc{n}@example.org"], bcc=["audit@example.org"],
                    correspondence="Plain", priority=Priority.HIGH,
                )
            )  # fmt: skip
        elif kind == 2:
            made.append(
                EmailRequest.addressed(
                    to=to, subject=f"Request {n} for {{{{ account.display_name }}}}",
                    body="<p>Größe {{ account.address }}</p>" + "x" * (80 + n), template=True,
                )
            )  # fmt: skip
        elif kind == 3:
            made.append(
                EmailRequest.addressed(
                    to=[*to, f"USER{n}@example.net"], subject=f"As written {{{{ {n} }}}}",
                    body=f"<p>Zoë {n}</p>", send_after=later, expires_at=later + timedelta(days=1),
                )
            )  # fmt: skip
        else:
            made.append(
                EmailRequest.addressed(to=to, subject="Low", body="", priority=Priority.LOW)
            )
    return made


@pytest.fixture
def pair(database_url: str) -> Iterator[tuple[Postroom, Postroom]]:
    """A Postroom that composes in two processes from 2 emails, and one that never does."""
    with (
        Postroom(make_settings(database_url, compose_parallel_from=2, compose_processes=2)) as par,
        Postroom(make_settings(database_url, compose_processes=1)) as ser,
    ):
        par.apply(RECORDS)
        yield par, ser


def started(pr: Postroom) -> list[int]:
    """Start ``pr``'s composing pool and wait until it is up; its process ids."""
    wait_until(pr.compose_pool_ready, limit=60, what="the composing processes to start")
    assert pr._compose_pool is not None
    return pr._compose_pool.pids()


def normalised(message: bytes) -> bytes:
    """``message`` without what is new in every message: Message-ID, Date, MIME boundaries."""
    message = re.sub(rb"(?m)^(Message-ID|Date): [^\r\n]*", rb"\1: -", message)
    for n, boundary in enumerate(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', message))):
        message = message.replace(boundary, b"boundary-%d" % n)
    return message


def rows(pr: Postroom, ids: Sequence[int]) -> list[tuple[object, ...]]:
    o = tables.outbox
    with pr.engine.connect() as conn:
        found = conn.execute(
            select(
                o.c.id, o.c.account, o.c.subject, o.c.mail_from, o.c.recipients, o.c.message,
                o.c.status, o.c.priority, o.c.next_attempt_at, o.c.expires_at, o.c.case_id,
            ).where(o.c.id.in_(ids)).order_by(o.c.id)
        ).all()  # fmt: skip
    soon = utcnow() + timedelta(days=1)  # a scheduled send, not the moment it was queued
    return [
        (*r[1:5], normalised(r.message), r.status, r.priority,
         r.next_attempt_at if r.next_attempt_at > soon else None, *r[9:])
        for r in found
    ]  # fmt: skip


def test_a_parallel_batch_is_the_serial_batch_byte_for_byte(
    pair: tuple[Postroom, Postroom],
) -> None:
    par, ser = pair
    batch = requests()
    started(par)
    parallel_ids = par.send_many(batch)
    assert par._compose_pool is not None
    assert par._compose_pool.pids(), "the pool composed it"
    serial_ids = ser.send_many(batch)
    assert not ser.compose_pool_ready()  # compose_processes=1: never a pool
    assert ser._compose_pool is None
    assert len(parallel_ids) == len(serial_ids) == COUNT
    parallel, serial = rows(par, parallel_ids), rows(ser, serial_ids)
    for n, (p, s) in enumerate(zip(parallel, serial, strict=True)):
        assert p == s, f"email {n} differs"
    statuses = {r[5] for r in parallel}
    assert any(r[7] is not None for r in parallel)  # the scheduled ones kept their time
    assert statuses == {OutboxStatus.QUEUED.value}


def outcome(action: Callable[[], object]) -> tuple[type[BaseException], str, list[str]]:
    with pytest.raises(PostroomError) as info:
        action()
    exc = info.value
    fields = [i.field for i in exc.issues] if isinstance(exc, InvalidFieldsError) else []
    return type(exc), str(exc), fields


@pytest.mark.parametrize(
    "bad",
    [
        {97: EmailRequest.addressed(to=["a@example.net"], correspondence="No such letter")},
        {60: EmailRequest.addressed(to=["a@example.net"], subject="{{ nope }}", template=True)},
        {5: EmailRequest.addressed(to=["a@example.net"], subject="two\nlines", body="b")},
        {  # the lowest index wins, whatever the kind, as in the serial loop
            110: EmailRequest.addressed(to=["a@example.net"], subject="{{ nope }}", template=True),
            41: EmailRequest.addressed(to=["a@example.net"], correspondence="No such letter"),
            77: EmailRequest.addressed(to=["a@example.net"], subject="two\nlines", body="b"),
        },
    ],
    ids=["unknown-correspondence", "template", "bad-subject", "lowest-wins"],
)
def test_errors_are_the_serial_errors_and_nothing_is_queued(
    pair: tuple[Postroom, Postroom], bad: dict[int, EmailRequest]
) -> None:
    par, ser = pair
    batch = requests()
    for index, request in bad.items():
        batch[index] = request
    started(par)
    parallel = outcome(lambda: par.send_many(batch))
    assert par._compose_pool is not None
    assert par._compose_pool.pids(), "the pool composed it"
    assert parallel == outcome(lambda: ser.send_many(batch))
    assert f"{min(bad)}" in parallel[1]
    assert par.outbox_counts().get(OutboxStatus.QUEUED, 0) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_dead_composing_process_leaves_the_batch_to_the_caller(
    pair: tuple[Postroom, Postroom], caplog: pytest.LogCaptureFixture
) -> None:
    par, ser = pair
    before = started(par)
    assert len(par.send_many(requests(10))) == 10
    assert len(before) >= 1
    title = Path(f"/proc/{before[0]}/cmdline").read_bytes().split(b"\0")[0].decode()
    assert title == f"postroom: composing (for {os.getpid()})"  # named in ps and top
    os.kill(before[0], signal.SIGKILL)
    wait_until(lambda: not alive(before[0]), limit=20, what="the killed process to go")
    batch = requests()
    with caplog.at_level(logging.WARNING, logger="postroom.composing.pool"):
        ids = par.send_many(batch)
    assert len(ids) == COUNT  # composed in the calling process
    assert "stopped unexpectedly" in caplog.text
    assert rows(par, ids) == rows(ser, ser.send_many(batch))
    # The next batch starts a new pool (and is composed here while it starts).
    assert len(par.send_many(requests(10))) == 10
    after = started(par)
    assert len(par.send_many(requests(10))) == 10
    assert after
    assert not set(after) & set(before)


def test_close_stops_the_processes_and_a_small_batch_starts_none(
    pair: tuple[Postroom, Postroom],
) -> None:
    par, _ = pair
    assert len(par.send_many(requests(1))) == 1  # under the threshold: no pool
    assert par._compose_pool is None
    par.send_many(requests(4))  # starts the pool, composed here meanwhile
    assert par._compose_pool is not None
    pids = started(par)
    assert pids
    par.close_compose_pool()
    wait_until(lambda: not any(alive(p) for p in pids), limit=20, what="the pool to stop")
    assert par._compose_pool is None
    assert len(par.send_many(requests(4))) == 4  # and a later batch starts it again


SCRIPT = """
import sys
import time
from postroom import Postroom
from postroom.cases.emails import EmailRequest
from tests.conftest import make_settings

# No 'if __name__ == "__main__":' guard: each composing process would run this again.
with Postroom(make_settings(sys.argv[1], compose_parallel_from=2, compose_processes=2)) as pr:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "127.0.0.1",
                            "port": 2525, "security": "none"}]})
    pr.send(to=["boss@x.example"], subject="starting", body="b")  # once, not per process
    deadline = time.monotonic() + 60
    queued = 0
    # Each batch is composed here while the pool starts, until it is known not to.
    while pr._compose_pool is None or pr._compose_pool.usable:
        assert time.monotonic() < deadline, "the pool neither started nor failed"
        batch = [EmailRequest.addressed(to=[f"u{n}@x.example"], subject="s") for n in range(30)]
        queued += len(pr.send_many(batch))
        time.sleep(0.05)
    queued += len(pr.send_many(batch))
    print("queued", queued, flush=True)
"""


def test_a_script_without_the_main_guard_still_queues_its_batches(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, str(script), url],
        check=False, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [line] = done.stdout.splitlines()
    queued = int(line.split()[1])
    assert "could not start" in done.stderr
    assert "must keep its code under 'if __name__" in done.stderr  # said by each process
    with Postroom(make_settings(url)) as pr:
        assert pr.outbox_counts()[OutboxStatus.QUEUED] == queued + 1
        assert [e.subject for e in pr.outbox(limit=10_000)].count("starting") == 1
