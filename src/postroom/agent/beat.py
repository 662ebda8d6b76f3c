"""An agent's row in ``agents``: registration, and the heartbeat that keeps its work."""

from __future__ import annotations

import logging
import os
import socket
from typing import Protocol

from sqlalchemy import Connection, Engine, insert, update

from postroom.accounts.holds import HoldStore
from postroom.agent.health import AgentState, Health
from postroom.agent.throttle import release_slots, renew_slots
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.outbox.store import OutboxStore

log = logging.getLogger("postroom.agent")


class Counts(Protocol):
    """What a heartbeat reports of an agent's work (:class:`AgentStats` fits)."""

    sent: int
    failed: int


class AgentRow:
    """Writes one agent's row and renews what it holds."""

    def __init__(self, *, engine: Engine, outbox: OutboxStore, agent_id: str, lease: float) -> None:
        self._engine = engine
        self._outbox = outbox
        self.id = agent_id
        self._lease = lease

    def register(self) -> None:
        now = utcnow()
        with self._engine.begin() as conn:
            conn.execute(
                insert(tables.agents).values(
                    id=self.id,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    state=AgentState.RUNNING.value,
                    started_at=now,
                    last_beat_at=now,
                    sent=0,
                    failed=0,
                )
            )

    def beat(self, health: Health, counts: Counts) -> None:
        """Write the agent's state, and while it works renew its leases and slots.

        The state is committed on its own, first: when the renewals fail (a locked
        outbox, say) the row still says the agent is degraded, and why.
        """
        now = utcnow()
        stopped = health.state is AgentState.STOPPED
        with self._engine.begin() as conn:
            conn.execute(
                update(tables.agents)
                .where(tables.agents.c.id == self.id)
                .values(
                    state=health.state.value,
                    state_reason=health.reason,
                    db_errors=health.db_errors,
                    last_beat_at=now,
                    sent=counts.sent,
                    failed=counts.failed,
                    **({"stopped_at": now} if stopped else {}),
                )
            )
            if stopped:
                release_slots(conn, owner=self.id)
                return
        with self._engine.begin() as conn:
            # Degraded too: rows whose outcomes wait to be written stay this agent's.
            self._outbox.renew(conn, owner=self.id, lease=self._lease)
            renew_slots(conn, owner=self.id, lease=self._lease, now=now)
            self._recheck_holds(conn)

    def _recheck_holds(self, conn: Connection) -> None:
        # A held account's emails are queued again when its check is due, so that the
        # next attempt finds out whether the credentials work now.
        orphans = self._outbox.release_orphans(conn)
        if orphans:
            log.info("%d emails held for accounts no longer held: queued again", orphans)
        for account in HoldStore().due(conn, utcnow()):
            released = self._outbox.release_held(conn, account)
            if released:
                log.info(
                    "account %s: checking its credentials again with %d emails", account, released
                )
