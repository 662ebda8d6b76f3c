"""``postroom outbox …`` and ``postroom agent run``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Annotated, Any

import typer

from postroom.agent.agent import new_agent_id
from postroom.agent.registry import AgentInfo
from postroom.agent.workers import Workers, usable_cores
from postroom.app import Postroom
from postroom.cli.common import (
    JsonOption,
    configure_logging,
    console,
    count_option,
    id_argument,
    id_column,
    opened,
    print_json,
    run_command,
    state,
    styled,
    table,
    where,
)
from postroom.errors import ConfigurationError, DatabaseFatalError
from postroom.outbox import OutboxEntry, OutboxStatus
from postroom.outbox.models import Recipient
from postroom.supervisor import Supervisor
from postroom.webhooks.dispatcher import dispatcher_for

log = logging.getLogger("postroom.agent")
outbox_app = typer.Typer(help="The outbox: list, retry, cancel.", no_args_is_help=True)
agent_app = typer.Typer(help="The sender agent.", no_args_is_help=True)
OutboxId = Annotated[int, id_argument("Outbox email id")]
INBOUND_STOP_TIMEOUT = 30.0  # a listener finishes the message it is ingesting
MAX_WORKERS = 64  # as Settings.workers


def _status(value: str | None) -> OutboxStatus | None:
    if value is None:
        return None
    try:
        return OutboxStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in OutboxStatus)
        raise ConfigurationError(f"unknown status {value!r}; known: {known}") from None


def entry_json(e: OutboxEntry) -> dict[str, Any]:
    """An outbox email as ``--json`` prints it: the REST API's view of it, key for key."""
    # The API's models load the web stack; only --json needs them.
    from postroom.api.schemas.work import EmailView  # noqa: PLC0415

    return EmailView.of(e).model_dump(mode="json")


def agent_json(a: AgentInfo) -> dict[str, Any]:
    """An agent as ``agent list --json`` prints it: the REST API's view of it."""
    from postroom.api.schemas.work import AgentView  # noqa: PLC0415

    return AgentView.of(a).model_dump(mode="json")


def print_entry(e: OutboxEntry) -> None:
    status = f"{e.status} ({e.hold})" if e.hold else str(e.status)
    console.print(styled((f"#{e.id}", "bold"), f" {status} — {e.subject}"))
    for label, value in (
        ("message-id", e.message_id),
        ("case", e.case_id or "-"),
        ("account", e.account or "-"),
        ("from", e.mail_from),
        ("template", rendered_from(e)),
        ("priority", str(e.priority)),
        ("attempts", str(e.attempts)),
        ("next attempt", _next_attempt(e)),
        ("expires", f"{e.expires_at:%Y-%m-%d %H:%M:%S} UTC" if e.expires_at else "-"),
        ("sent", f"{e.sent_at:%Y-%m-%d %H:%M:%S} UTC" if e.sent_at else "-"),
        (
            "last error",
            " ".join(str(x) for x in (e.last_code, e.last_enhanced, e.last_error) if x) or "-",
        ),
    ):
        console.print(f"  {label:>12}: {value}")
    for r in e.recipients:
        console.print(f"  {'recipient':>12}: {r.address} [{r.state}] {recipient_reply(r)}".rstrip())


def _next_attempt(e: OutboxEntry) -> str:
    """When an agent may send it; an email awaiting review waits for that instead."""
    if e.status is OutboxStatus.AWAITING_REVIEW:
        return f"waits for review #{e.review_id}" if e.review_id else "waits for its review"
    return f"{e.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC"


def rendered_from(e: OutboxEntry) -> str:
    """``Created version 2, in de``; ``-`` for ad-hoc text."""
    if e.correspondence is None:
        return "-" if e.language is None else f"ad-hoc text, in {e.language}"
    version = "" if e.correspondence_version is None else f" version {e.correspondence_version}"
    language = "" if e.language is None else f", in {e.language}"
    return f"{e.correspondence}{version}{language}"


def recipient_reply(r: Recipient) -> str:
    """Code, RFC 3463 status and text (a reply, a report's diagnostic, why suppressed)."""
    # A server's reply text usually starts with its enhanced status already, and a
    # report's diagnostic with its code too ("550 5.1.1 ..."): each is said once.
    said = r.text.split(maxsplit=2)
    code = None if r.code is not None and str(r.code) in said[:1] else r.code
    enhanced = None if r.enhanced is None or r.enhanced in said[:2] else r.enhanced
    return " ".join(str(x) for x in (code, enhanced, r.text) if x)


@outbox_app.command("list")
def list_outbox(
    status: Annotated[
        str | None,
        typer.Option(help="queued, sending, sent, retry, held, failed, cancelled"),
    ] = None,
    case: Annotated[str | None, typer.Option(help="Only this case's emails")] = None,
    limit: Annotated[int, count_option("How many emails", most=1000)] = 50,
    json: JsonOption = False,
) -> None:
    """List outbox emails, newest first, with counts by status."""

    def body() -> None:
        with opened() as postroom:
            entries = postroom.outbox(status=_status(status), case_id=case, limit=limit)
            counts = postroom.outbox_counts()
        if json:
            print_json([entry_json(e) for e in entries])
            return
        rows = table(
            id_column("id", (str(e.id) for e in entries)),
            "status",
            id_column("case", (e.case_id or "-" for e in entries)),
            "account",
            "to",
            "subject",
            "tries",
            "last error",
        )
        for e in entries:
            rows.add_row(
                str(e.id),
                e.status,
                e.case_id or "-",
                e.account or "-",
                ", ".join(r.address for r in e.recipients),
                e.subject,
                str(e.attempts),
                e.last_error or "",
            )
        console.print(rows)
        console.print("  ".join(f"{s}: {n}" for s, n in counts.items()))

    run_command(body)


@outbox_app.command("show")
def show(outbox_id: OutboxId, json: JsonOption = False) -> None:
    """Show one outbox email with per-recipient state."""

    def body() -> None:
        with opened() as postroom:
            entry = postroom.outbox_entry(outbox_id)
        if json:
            print_json(entry_json(entry))
        else:
            print_entry(entry)

    run_command(body)


@outbox_app.command("retry")
def retry(outbox_id: OutboxId) -> None:
    """Queue a failed, cancelled or waiting email again, now."""

    def body() -> None:
        with opened() as postroom:
            print_entry(postroom.retry(outbox_id))

    run_command(body)


@outbox_app.command("cancel")
def cancel(outbox_id: OutboxId) -> None:
    """Cancel an email that has not been sent."""

    def body() -> None:
        with opened() as postroom:
            print_entry(postroom.cancel(outbox_id))

    run_command(body)


@agent_app.command("run")
def run_agent(
    batch_size: Annotated[
        int | None, typer.Option(help="Rows claimed per batch (env POSTROOM_BATCH_SIZE)")
    ] = None,
    lease_seconds: Annotated[
        float | None, typer.Option(help="Lease on claimed rows (env POSTROOM_LEASE_SECONDS)")
    ] = None,
    poll_interval: Annotated[
        float | None, typer.Option(help="Idle wait between claims (env POSTROOM_POLL_INTERVAL)")
    ] = None,
    until_idle: Annotated[bool, typer.Option(help="Exit when nothing is due")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_WORKERS,
            help="Agent processes under this one; 1: the agent in this process "
            "(env POSTROOM_WORKERS; default: one per core)",
            show_default=False,
        ),
    ] = None,
    no_inbound: Annotated[
        bool,
        typer.Option("--no-inbound", help="Read no mailboxes here (env POSTROOM_INBOUND=false)"),
    ] = False,
    no_webhooks: Annotated[
        bool,
        typer.Option(
            "--no-webhooks", help="Deliver no webhook events here (env POSTROOM_WEBHOOKS=false)"
        ),
    ] = False,
    log_level: Annotated[
        str | None, typer.Option(help="Log level (env POSTROOM_LOG_LEVEL)")
    ] = None,
) -> None:
    """Run the sender agent, the inbound listeners and webhooks until SIGTERM/SIGINT.

    The batch in flight, the message being ingested and the webhook requests in flight
    are finished first. With --until-idle, due webhook events are delivered before exiting.
    With --workers N (N > 1), N agent processes deliver and this one supervises them,
    starting again any that dies; the listeners and webhooks stay in this one.
    """

    def body() -> None:
        state.extra.update(
            {
                k: v
                for k, v in (
                    ("batch_size", batch_size),
                    ("lease_seconds", lease_seconds),
                    ("poll_interval", poll_interval),
                    ("workers", workers),
                    ("inbound", False if no_inbound else None),
                    ("webhooks", False if no_webhooks else None),
                )
                if v is not None
            }
        )
        configure_logging(log_level or state.settings().log_level)
        # An agent on a database that does not exist would wait for emails forever.
        with opened(wait=True) as postroom:
            count = postroom.settings.workers or usable_cores()
            if count > 1:
                asyncio.run(_supervise(postroom, count=count, until_idle=until_idle))
                return
            agent = postroom.agent()

            async def main() -> None:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
                console.print(
                    f"agent {agent.id} running on {where(postroom.settings.database_url)}"
                )
                # The listeners run beside the agent, supervised: one that fails is
                # started again, and never takes the sender agent down with it.
                listening = Supervisor(postroom.background)
                if postroom.settings.inbound and not until_idle:
                    listening.start("inbound", lambda: postroom.inbound_listeners(agent.id))
                    console.print("inbound: listening to the accounts' mailboxes")
                else:
                    console.print("inbound: not in this process")
                hooks = postroom.settings.webhooks
                if hooks and not until_idle:
                    listening.start("webhooks", lambda: dispatcher_for(postroom, agent.id))
                console.print("webhooks: " + ("delivering" if hooks else "not in this process"))
                try:
                    stats = await agent.run(stop=stop, until_idle=until_idle)
                    if hooks and until_idle:  # the events of what was just sent, too
                        await dispatcher_for(postroom, agent.id).run(stop=stop, until_idle=True)
                finally:
                    await listening.stop(timeout=INBOUND_STOP_TIMEOUT)
                console.print(
                    f"agent {agent.id} stopped: {stats.sent} sent, {stats.failed} failed, "
                    f"{stats.retried} to retry, {stats.held} held"
                )

            asyncio.run(main())

    run_command(body)


async def _supervise(postroom: Postroom, *, count: int, until_idle: bool) -> None:
    """``agent run --workers N``: N agent processes, with listeners and webhooks here."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    place = where(postroom.settings.database_url)
    console.print(f"supervisor {os.getpid()} running {count} agent workers on {place}")
    workers = Workers(
        postroom.settings, count=count, until_idle=until_idle, say=console.print, place=place
    )
    owner = new_agent_id()  # the listeners' and the dispatcher's own, as an agent's
    listening = Supervisor(postroom.background)
    if postroom.settings.inbound and not until_idle:
        listening.start("inbound", lambda: postroom.inbound_listeners(owner))
        console.print("inbound: listening to the accounts' mailboxes")
    else:
        console.print("inbound: not in this process")
    hooks = postroom.settings.webhooks
    if hooks and not until_idle:
        listening.start("webhooks", lambda: dispatcher_for(postroom, owner))
    console.print("webhooks: " + ("delivering" if hooks else "not in this process"))
    try:
        stats = await workers.run(stop=stop)
        if workers.fatal is not None:
            raise DatabaseFatalError(workers.fatal)
        if hooks and until_idle:  # the events of what was just sent, too
            await dispatcher_for(postroom, owner).run(stop=stop, until_idle=True)
    finally:
        await listening.stop(timeout=INBOUND_STOP_TIMEOUT)
    # A killed worker never sends its final totals: its last report (a heartbeat's) stands.
    partial = workers.partial
    known = ""
    if partial == 1:
        known = " (one worker's totals are as of its last report)"
    elif partial:
        known = f" ({partial} workers' totals are as of their last report)"
    console.print(
        f"{count} agent workers stopped: {stats.sent} sent, {stats.failed} failed, "
        f"{stats.retried} to retry, {stats.held} held{known}"
    )


@agent_app.command("list")
def list_agents(json: JsonOption = False) -> None:
    """Agents with their heartbeats: running, degraded (and why), stale or stopped."""

    def body() -> None:
        with opened() as postroom:
            agents = postroom.agents()
        if json:
            print_json([agent_json(a) for a in agents])
            return
        # Ids are never cut short: they are what `agent pause` takes.
        rows = table(id_column("id", (a.id for a in agents)),
                     "host", "pid", "state", "started", "last beat", "sent", "failed")  # fmt: skip
        for a in agents:
            rows.add_row(
                a.id,
                a.host,
                str(a.pid),
                f"{a.state} (paused)" if a.paused else a.state,
                f"{a.started_at:%Y-%m-%d %H:%M:%S}",
                f"{a.last_beat_at:%H:%M:%S}",
                str(a.sent),
                str(a.failed),
            )
        console.print(rows)
        # Why an agent cannot work takes a line of its own: a table cell would wrap it.
        for a in agents:
            if a.state == "degraded":
                console.print(
                    f"{a.id} degraded: {a.reason or 'no reason given'} "
                    f"({a.db_errors} database errors in a row)"
                )

    run_command(body)


@agent_app.command("pause")
def pause_agent(agent_id: str) -> None:
    """Pause an agent wherever it runs: it finishes its batch, then claims nothing more."""
    run_command(lambda: _set_paused(agent_id, paused=True))


@agent_app.command("resume")
def resume_agent(agent_id: str) -> None:
    """Resume a paused agent."""
    run_command(lambda: _set_paused(agent_id, paused=False))


def _set_paused(agent_id: str, *, paused: bool) -> None:
    with opened() as postroom:
        agent = postroom.pause_agent(agent_id, paused=paused)
    console.print(f"agent {agent.id} on {agent.host}: {'paused' if agent.paused else 'resumed'}")
