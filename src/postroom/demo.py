"""The reference scenario, end to end on one machine: what ``make run`` shows.

A dev inbox listens on loopback with STARTTLS and AUTH; the Mortgage example is
applied; a Mortgage Request case is created by Alice; the agent sends the Case
Manager's email from the ``MyOrg-Mortgage-Work`` account; the case gets the sent
email as an ``.eml`` attachment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from postroom.agent.registry import AgentInfo
from postroom.app import Postroom
from postroom.cases import Case
from postroom.config.apply import ApplyReport
from postroom.db import tables
from postroom.devinbox import DevInbox, InboxMessage
from postroom.outbox import OutboxEntry

DEMO_USER = "mortgages@example.com"
PASSWORD_VARIABLE = "POSTROOM_DEMO_SMTP_PASSWORD"  # noqa: S105 - a variable name
CASE_TYPE = "MyOrg-Mortgage-Work-MortgageRequest"
# `postroom demo` works here unless told otherwise, apart from what a server uses.
DEMO_DIRECTORY = Path("postroom-demo")
DEMO_DATABASE_URL = f"sqlite:///{DEMO_DIRECTORY}/postroom.db"
DEMO_INBOX = DEMO_DIRECTORY / "inbox"
RECORD_TABLES = {
    "operators": tables.operators,
    "accounts": tables.accounts,
    "auth profiles": tables.auth_profiles,
    "keystores": tables.keystores,
    "correspondence": tables.correspondence,
    "case types": tables.case_types,
}


@dataclass(frozen=True)
class DemoResult:
    """What the demo did, for printing."""

    applied: ApplyReport
    case: Case
    emails: list[OutboxEntry]
    received: list[InboxMessage]


@contextlib.contextmanager
def demo_environment(
    postroom: Postroom, *, config: Path, inbox_dir: Path, port: int = 1025
) -> Iterator[tuple[DevInbox, ApplyReport]]:
    """A running dev inbox and the example records applied, pointing at it."""
    # The example reads the password from the environment; the dev inbox checks it.
    password = os.environ.setdefault(PASSWORD_VARIABLE, secrets.token_urlsafe(16))
    with DevInbox(inbox_dir, port=port, user=DEMO_USER, password=password) as inbox:
        os.environ["POSTROOM_DEMO_SMTP_PORT"] = str(port)
        os.environ["POSTROOM_DEMO_CA_FILE"] = str(inbox.ca_file.resolve())
        yield inbox, postroom.apply(config)


def run_demo(
    postroom: Postroom,
    *,
    config: Path,
    inbox_dir: Path,
    port: int = 1025,
    timeout: float = 30.0,
) -> DemoResult:
    """Run the scenario; raises if the email does not arrive within ``timeout``."""
    with demo_environment(postroom, config=config, inbox_dir=inbox_dir, port=port) as (
        inbox,
        applied,
    ):
        before = {m.path for m in inbox.messages()}
        case = postroom.cases.create(
            CASE_TYPE,
            data={
                "applicant": "Bob Borrower",
                "amount": 250000,
                "currency": "EUR",
                "customer_email": "bob.borrower@example.org",
            },
            operator="alice",
        )

        async def deliver() -> None:
            agent = postroom.agent()
            await asyncio.wait_for(agent.run(until_idle=True), timeout)

        asyncio.run(deliver())
        received = [m for m in inbox.messages() if m.path not in before]
    return DemoResult(
        applied=applied,
        case=postroom.cases.get(case.id),
        emails=postroom.outbox(case_id=case.id),
        received=received,
    )


def live_agents(postroom: Postroom) -> list[AgentInfo]:
    """Agents that beat on this database now: a service or an agent is using it.

    An agent on this host whose process is gone is not live, even before its silence
    makes it stale (a service killed and started again at once).
    """
    here = socket.gethostname()
    return [
        a
        for a in postroom.agents()
        if a.state in ("running", "degraded") and (a.host != here or _process_alive(a.pid))
    ]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def held_records(postroom: Postroom) -> dict[str, int]:
    """How many records of each kind the database holds (kinds with none left out)."""
    with postroom.engine.connect() as conn:
        counts = {
            kind: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for kind, table in RECORD_TABLES.items()
        }
    return {kind: n for kind, n in counts.items() if n}
