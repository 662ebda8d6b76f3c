"""An agent's claims: a read while idle, then the claim transaction with its limits.

The claim transaction also expires what has expired, applies the accounts' limits and
marks suppressed recipients, so that what an agent sends is decided in one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

from postroom.accounts.limits import Limits
from postroom.agent.registry import is_paused
from postroom.agent.throttle import admit, release_slots
from postroom.cases.store import add_history
from postroom.db.engine import reading
from postroom.db.types import utcnow
from postroom.errors import PostroomError
from postroom.outbox.models import ClaimedEmail
from postroom.outbox.store import OutboxStore
from postroom.reviews.expiry import note_expired
from postroom.suppression.claim import mark_suppressed

if TYPE_CHECKING:
    from postroom.agent.agent import AgentConfig

log = logging.getLogger("postroom.agent")

# While a LISTEN hears every commit, an idle agent still looks this often (at least):
# what no notification announces (a lease lapsing, a retry falling due) is read from the
# queue, and this bounds what a notification lost with a silent connection costs.
LISTENING_POLL = 10.0


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim found, and how long to wait if it found nothing."""

    rows: list[ClaimedEmail]
    paused: bool
    quiet_for: float  # the idle wait that follows an empty claim
    connections: dict[str, int] | None = None  # the batch's connection slots per account


class Claimer:
    """Claims batches for one agent; reads first while the agent is idle."""

    def __init__(
        self,
        *,
        engine: Engine,
        outbox: OutboxStore,
        agent_id: str,
        config: AgentConfig,
        limits_of: Callable[[Connection, str], Limits] | None,
        hears_every_commit: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._id = agent_id
        self._config = config
        # Read in the claim's own transaction: on SQLite a second connection would wait
        # for the write lock that transaction holds.
        self._account_limits = limits_of or (lambda conn, name: Limits())
        self._hears_every_commit = hears_every_commit

    def claim(self, *, probe: bool) -> Claim:
        """Claim a batch and apply account limits to it, in one transaction.

        ``probe``: the agent is idle and nothing woke it; a read says first whether (and
        when) anything falls due, so that polling an empty queue takes no write lock.
        """
        poll = self._config.poll_interval
        if probe:
            with reading(self._engine) as conn:
                paused = is_paused(conn, self._id)
                due = self._outbox.next_due(conn)
            now = utcnow()
            if paused:
                return Claim([], paused=True, quiet_for=poll)
            if due is None or due > now:
                return Claim([], paused=False, quiet_for=self._quiet_time(due, now))
        with self._engine.begin() as conn:
            # Read in the claim's transaction: once a pause is committed, nothing more
            # is claimed (what is in flight finishes).
            if is_paused(conn, self._id):
                return Claim([], paused=True, quiet_for=poll)
            # Cheap (a partial index holds only waiting rows with an expiry), and done
            # here so that an expired email shows as such as soon as its turn would come.
            self._expire(conn)
            rows = self._outbox.claim(
                conn, owner=self._id, limit=self._config.batch_size,
                lease=self._config.lease_seconds,
            )  # fmt: skip
            admission = admit(
                conn,
                rows,
                outbox=self._outbox,
                limits_of=lambda name: self._limits_of(conn, name),
                owner=self._id,
                connections_per_account=self._config.connections_per_account,
                lease=self._config.lease_seconds,
                now=utcnow(),
            )
            # Suppressed recipients are never attempted; written in this transaction.
            rows = mark_suppressed(conn, admission.rows)
        # Woken (or just working) and nothing due yet: read at once when it will be.
        quiet = 0.0 if not rows and not probe else poll
        return Claim(rows, paused=False, quiet_for=quiet, connections=admission.connections)

    def release(self, ids: list[int]) -> None:
        """Give back rows claimed and not attempted, their attempt uncounted."""
        with self._engine.begin() as conn:
            self._outbox.release(conn, ids, owner=self._id)

    def release_slots(self) -> None:
        """Free the account connection slots this agent holds."""
        with self._engine.begin() as conn:
            release_slots(conn, owner=self._id)

    def _quiet_time(self, due: datetime | None, now: datetime) -> float:
        """How long to sleep when nothing is due before ``due``.

        A poll interval while commits of other processes may go unheard; while a LISTEN
        hears them all, until the next row falls due (at most LISTENING_POLL seconds).
        """
        poll = self._config.poll_interval
        longest = max(poll, LISTENING_POLL) if self._hears_every_commit() else poll
        if due is None:
            return longest
        return min(longest, max(0.0, (due - now).total_seconds()))

    def _limits_of(self, conn: Connection, account: str) -> Limits:
        try:
            return self._account_limits(conn, account)
        except PostroomError:
            return Limits()  # the deliverer reports what is wrong with the account

    def _expire(self, conn: Connection) -> None:
        expired = self._outbox.expire_due(conn)
        for outbox_id, case_id, subject in expired:
            log.info("outbox #%s expired before it could be sent", outbox_id)
            if case_id is not None:
                add_history(
                    conn,
                    case_id,
                    actor="agent",
                    action="email-expired",
                    detail=f"outbox #{outbox_id} '{subject}' not sent: it expired first",
                )
        if expired:
            note_expired(conn, [outbox_id for outbox_id, _, _ in expired], actor="agent")
