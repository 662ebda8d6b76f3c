"""After "sent": delivery reports applied, and webhook events delivered, per second.

Bounce reports: N case letters (default 2,000), each to its own customer, go out
through a real SMTP server (aiosmtpd) from an account with a ``bounce_address``, so
each carries its own VERP envelope sender (checked at the server). One RFC 3464 report
per letter, as Postfix writes it (``tests/bouncesamples.py``) and addressed to that
letter's VERP address, is then appended to a Dovecot of its own (``tests/dovecotkit.py``:
loopback, implicit TLS with a test CA), and one ``Postroom.poll_inbound`` round reads,
matches and applies them: each recipient marked bounced with its status and diagnostic,
a ``delivery_reports`` row, a line in the case's history, the address suppressed. The
rate is N over that round's seconds; every letter's recipient must have bounced exactly
once. Skipped, with the reason, when Dovecot is not installed.

Webhook deliveries: one endpoint subscribed to ``email.queued`` on a receiver process on
loopback (``bench/receiver.py``) that checks every signature with the
``standardwebhooks`` package; N emails (default 5,000) enqueued with ``send_many``
write N events; then one ``WebhookDispatcher`` (``dispatcher_for``: the settings'
concurrency, 4 by default) delivers them until none is due. The rate is N over the
dispatcher's seconds; every event id must arrive exactly once, signed correctly, and
every delivery end ``delivered``.

    python bench/feedback.py [--bounce-count 2000] [--webhook-count 5000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import harness
import receiver
import throughput
import workload
from harness import Phase
from sqlalchemy import func, select

from postroom import Postroom, Settings
from postroom.bounces.verp import verp_address
from postroom.db import tables
from postroom.outbox.models import Recipient, RecipientState
from postroom.webhooks.dispatcher import dispatcher_for
from postroom.webhooks.endpoints import WebhookEndpoint
from postroom.webhooks.models import DeliveryStatus, EventType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/*kit.py

BOUNCES = "Postroom bounce reports: read from Dovecot, matched and applied"
WEBHOOKS = "Postroom webhook deliveries: signed and POSTed to a local receiver"
CLASS = "Bench-Letters-Offer"
ACCOUNT = "Bench-Letters"
RECEIVER_SCRIPT = Path(__file__).with_name("receiver.py")
ENQUEUE_BATCH = 500
CREATE_CHECK = 100  # cases created between deadline checks


# --- bounce reports --------------------------------------------------------------------


def _bounce_records(account: dict[str, Any]) -> dict[str, Any]:
    return {
        "accounts": [account],
        "case_types": [
            {
                "class": CLASS,
                "class_group": ACCOUNT,
                "id_prefix": "O-",
                "parties": {"Customer": "data.customer"},
                "steps": [
                    {
                        "on": "created",
                        "to": [{"party": "Customer"}],
                        "subject": "Your offer {{ case.id }}",
                        "body": "<p>Please find our offer.</p>",
                    }
                ],
            }
        ],
    }


def _customer(n: int) -> str:
    return f"customer{n}@example.org"


def run_bounces(count: int, work: Path, timeout: float) -> Phase | str:
    """The bounce phase, or why it could not run (no Dovecot here)."""
    from tests import bouncesamples  # noqa: PLC0415
    from tests.dovecotkit import Dovecot, dovecot_missing  # noqa: PLC0415
    from tests.fakes import SmtpSink, smtp_server  # noqa: PLC0415

    missing = dovecot_missing()
    if missing is not None:
        return missing
    import trustme  # noqa: PLC0415

    deadline = harness.Deadline(time.monotonic() + timeout)
    server = Dovecot(trustme.CA()).start()
    try:
        mailbox = server.add_user()
        settings = Settings(
            database_url=f"sqlite:///{work / f'bounces-{time.monotonic_ns()}.db'}",
            secret_key=secrets.token_urlsafe(32),
            log_level="WARNING",
        )
        sink = SmtpSink()
        with smtp_server(sink) as smtp, Postroom(settings) as postroom:
            account = {**mailbox.account_yaml(ACCOUNT), "port": smtp.port}
            local, _, domain = str(account["address"]).partition("@")
            bounce_address = account["bounce_address"] = f"{local}-bounces@{domain}"
            postroom.apply(_bounce_records(account))
            for n in range(count):
                if n % CREATE_CHECK == 0:
                    deadline.check("creating the cases")
                postroom.cases.create(CLASS, data={"customer": _customer(n)})
            asyncio.run(postroom.agent().run(until_idle=True))
            sent = _sent(postroom, count)
            verps = {verp_address(bounce_address, token) for token, _, _ in sent}
            if {m.mail_from for m in sink.received} != verps:
                raise harness.BenchFailure("bounces: the envelope senders are not the VERP ones")
            deadline.check("sending the letters")
            reports = (
                bouncesamples.postfix_dsn(
                    recipient=address, to=verp_address(bounce_address, token), message_id=mid
                )
                for token, mid, address in sent
            )
            mailbox.append_many(reports, chunk=500)
            deadline.check("appending the reports")
            start = time.perf_counter()
            polled = postroom.poll_inbound(ACCOUNT)
            seconds = time.perf_counter() - start
            if (polled.read, polled.bounces, polled.settled) != (count, count, count):
                raise harness.BenchFailure(f"bounces: {polled} for {count} reports")
            _check_bounced(postroom, count)
        deadline.check("the bounce round")
        return Phase(BOUNCES, count, seconds, unit="report")
    finally:
        server.stop()


def _sent(postroom: Postroom, count: int) -> list[tuple[str, str, str]]:
    """Each sent letter's VERP token, Message-ID (no brackets) and recipient."""
    o = tables.outbox
    with postroom.engine.connect() as conn:
        rows = conn.execute(
            select(o.c.bounce_token, o.c.message_id, o.c.recipients).where(o.c.status == "sent")
        ).all()
    if len(rows) != count:
        raise harness.BenchFailure(f"bounces: {len(rows)} letters sent, not {count}")
    return [(r.bounce_token, r.message_id.strip("<>"), r.recipients[0]["address"]) for r in rows]


def _check_bounced(postroom: Postroom, count: int) -> None:
    """Every letter's one recipient bounced, by exactly one report row, and suppressed."""
    o, d = tables.outbox, tables.delivery_reports
    with postroom.engine.connect() as conn:
        states = [
            [Recipient.from_json(r).state for r in recipients]
            for (recipients,) in conn.execute(select(o.c.recipients))
        ]
        rows, emails, bounced = conn.execute(
            select(
                func.count(),
                func.count(d.c.outbox_id.distinct()),
                func.count().filter(d.c.kind == "bounced"),
            )
        ).one()
        suppressed = conn.execute(select(func.count()).select_from(tables.suppressions)).scalar()
    if states != [[RecipientState.BOUNCED]] * count:
        late = sum(s != [RecipientState.BOUNCED] for s in states)
        raise harness.BenchFailure(f"bounces: {late} of {len(states)} letters not bounced")
    if (rows, emails, bounced, suppressed) != (count, count, count, count):
        raise harness.BenchFailure(
            f"bounces: {rows} report rows for {emails} letters ({bounced} bounced), "
            f"{suppressed} addresses suppressed; expected {count} of each"
        )


# --- webhook deliveries ----------------------------------------------------------------


class ReceiverProcess(harness.StdioProcess):
    """``bench/receiver.py`` in its own process, spoken to over its stdio."""

    def __init__(self, secret: str, max_seconds: float) -> None:
        super().__init__(
            [str(RECEIVER_SCRIPT), "--max-seconds", f"{max_seconds:.0f}"],
            what="receiver",
            env={**os.environ, receiver.SECRET_VARIABLE: secret},
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/postroom"


@contextlib.contextmanager
def running_receiver(secret: str, max_seconds: float) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(secret, max_seconds)
    try:
        yield process
    finally:
        process.close()


def run_webhooks(count: int, work: Path, timeout: float, concurrency: int | None = None) -> Phase:
    """The webhook phase: N ``email.queued`` events delivered by one dispatcher."""
    from tests.webhookkit import new_secret  # noqa: PLC0415

    deadline = harness.Deadline(time.monotonic() + timeout)
    secret = new_secret()
    options: dict[str, Any] = {"webhook_concurrency": concurrency} if concurrency else {}
    settings = Settings(
        database_url=f"sqlite:///{work / f'webhooks-{time.monotonic_ns()}.db'}",
        secret_key=secrets.token_urlsafe(32),
        log_level="WARNING",
        allowed_endpoint_hosts="127.0.0.1",  # the receiver: plain http on loopback
        **options,
    )
    with running_receiver(secret, timeout) as hooks, Postroom(settings) as postroom:
        # Nothing is delivered by email: the account's port is never dialled.
        postroom.apply(workload.records(9))
        postroom.put_webhook(
            WebhookEndpoint(
                name="app", url=hooks.url, events=[EventType.EMAIL_QUEUED], secret=secret
            ),
            create=True,
        )
        throughput.batch_enqueue(postroom, count, ENQUEUE_BATCH, deadline)
        if (due := postroom.webhook_counts().get(DeliveryStatus.PENDING, 0)) != count:
            raise harness.BenchFailure(f"webhooks: {due} deliveries due, not {count}")
        dispatcher = dispatcher_for(postroom)
        in_flight = postroom.settings.webhook_concurrency
        start = time.perf_counter()
        stats, stopped = asyncio.run(_drain(dispatcher.run, deadline.remaining("enqueueing")))
        seconds = time.perf_counter() - start
        if stopped:
            raise harness.BenchTimeout("timed out while delivering webhook events")
        counts = postroom.webhook_counts()
        if (stats.delivered, counts.get(DeliveryStatus.DELIVERED, 0)) != (count, count):
            raise harness.BenchFailure(f"webhooks: {stats}, {dict(counts)} for {count} events")
        _check_received(postroom, hooks.stats(), count)
    return Phase(f"{WEBHOOKS}, {in_flight} in flight", count, seconds, unit="event")


async def _drain(run: Callable[..., Any], limit: float) -> tuple[Any, bool]:
    """``run(stop=..., until_idle=True)``, stopped after ``limit`` s; and whether it was."""
    stop = asyncio.Event()
    timer = asyncio.get_running_loop().call_later(limit, stop.set)
    try:
        stats = await run(stop=stop, until_idle=True)
    finally:
        timer.cancel()
    return stats, stop.is_set()


def _check_received(postroom: Postroom, got: dict[str, Any], count: int) -> None:
    """Each event id arrived once, with a valid signature, and they are the stored ones."""
    e = tables.webhook_events
    with postroom.engine.connect() as conn:
        stored = set(conn.execute(select(e.c.id)).scalars())
    expected = {
        "requests": count,
        "verified": count,
        "distinct_ids": count,
        "ids_digest": receiver.ids_digest(stored),
    }
    if got != expected or len(stored) != count:
        raise harness.BenchFailure(f"webhooks: the receiver got {got}; expected {expected}")


# --- both, for make bench and on their own ----------------------------------------------


def measured(
    *,
    bounces: int,
    webhooks: int,
    work: Path,
    timeout: float,
    say: Callable[[str], object],
    concurrency: int | None = None,
) -> list[Phase]:
    """The rows for ``make bench``: each skipped at count 0, bounces without Dovecot."""
    rows: list[Phase] = []
    if bounces > 0:
        result = run_bounces(bounces, work, timeout)
        if isinstance(result, Phase):
            rows.append(result)
        else:
            say(f"bounce reports not measured: {result}")
    if webhooks > 0:
        rows.append(run_webhooks(webhooks, work, timeout, concurrency))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bounce-count", type=int, default=2000, help="reports (0: skip)")
    parser.add_argument("--webhook-count", type=int, default=5000, help="events (0: skip)")
    parser.add_argument(
        "--concurrency", type=harness.positive, default=None, help="webhook requests in flight"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per phase")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        rows = measured(
            bounces=args.bounce_count,
            webhooks=args.webhook_count,
            work=Path(scratch),
            timeout=args.timeout,
            say=print,
            concurrency=args.concurrency,
        )
    for row in rows:
        print(f"{row.name}: {row.count:,} {row.unit}s in {row.seconds:.2f} s, "
              f"{row.rate:,.0f} {row.unit}/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (harness.BenchFailure, harness.BenchTimeout) as exc:
        print(f"feedback: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
