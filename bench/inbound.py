"""Inbound throughput: replies ingested and routed per second from a real Dovecot folder.

A Dovecot of its own (``tests/dovecotkit.py``: loopback, implicit TLS with a test CA)
gets N replies (default 5,000) by IMAP APPEND, each answering (``In-Reply-To``) one of
50 case emails Postroom sent; then one ``Postroom.poll_inbound`` round reads, parses,
routes and commits every reply (each threaded onto its case, with the case's history
and ``.eml`` attachment) and flags it ``\\Seen``. The rate is N over that round's
seconds; every reply must have been read once and matched.

    python bench/inbound.py [--count 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import Phase

from postroom import Postroom, Settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/dovecotkit.py

CASES = 50
NAME = "Postroom inbound: ingest and route from Dovecot (IMAP)"
CLASS = "Bench-Desk-Work-Request"


def _records(account: dict[str, object]) -> dict[str, object]:
    return {
        "accounts": [account],
        "case_types": [
            {
                "class": CLASS,
                "class_group": "Desk",
                "id_prefix": "B-",
                "parties": {"Customer": "data.customer"},
                "steps": [
                    {
                        "on": "created",
                        "to": [{"party": "Customer"}],
                        "subject": "Your request {{ case.id }}",
                        "body": "<p>We have your request.</p>",
                    }
                ],
            }
        ],
    }


def run(count: int, work: Path, timeout: float) -> Phase | str:
    """The inbound phase, or why it could not run (no Dovecot here)."""
    from tests.dovecotkit import Dovecot, dovecot_missing, message  # noqa: PLC0415
    from tests.fakes import smtp_server  # noqa: PLC0415

    missing = dovecot_missing()
    if missing is not None:
        return missing
    import trustme  # noqa: PLC0415

    deadline = harness.Deadline(time.monotonic() + timeout)
    server = Dovecot(trustme.CA()).start()
    try:
        mailbox = server.add_user()
        settings = Settings(
            database_url=f"sqlite:///{work / f'inbound-{time.monotonic_ns()}.db'}",
            secret_key=secrets.token_urlsafe(32),
            log_level="WARNING",
        )
        with smtp_server() as smtp, Postroom(settings) as postroom:
            account = {**mailbox.account_yaml("Desk"), "port": smtp.port}
            postroom.apply(_records(account))
            for _ in range(CASES):
                postroom.cases.create(CLASS, data={"customer": "customer@example.org"})
            asyncio.run(postroom.agent().run(until_idle=True))
            sent = [e.message_id.strip("<>") for e in postroom.outbox(limit=CASES)]
            if len(sent) != CASES:
                raise harness.BenchFailure(f"{len(sent)} case emails sent, not {CASES}")
            replies = (
                message(f"Re: reply {n}", body=f"Answer {n}.", In_Reply_To=f"<{sent[n % CASES]}>")
                for n in range(count)
            )
            mailbox.append_many(replies, chunk=500)
            deadline.check("appending the replies")
            start = time.perf_counter()
            report = postroom.poll_inbound("Desk")
            seconds = time.perf_counter() - start
        if (report.read, report.matched, report.settled) != (count, count, count):
            raise harness.BenchFailure(f"inbound: {report} for {count} replies")
        deadline.check("the inbound round")
        return Phase(NAME, count, seconds)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=harness.positive, default=5000)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        result = run(args.count, Path(scratch), args.timeout)
    if isinstance(result, str):
        print(f"inbound: not run: {result}")
        return 0
    print(f"{result.name}: {result.count:,} messages in {result.seconds:.2f} s, "
          f"{result.rate:,.0f} msg/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
