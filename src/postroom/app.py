"""The :class:`Postroom` object: one database, its records and services.

The CLI, the demo and applications embedding Postroom all go through this object.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from postroom.accounts import AccountStore, EmailAccount
from postroom.agent import AgentConfig, SenderAgent
from postroom.agent.agent import new_agent_id
from postroom.agent.delivery import Deliverer
from postroom.agent.recording import record_outcomes
from postroom.agent.registry import AgentInfo, list_agents
from postroom.cases.emails import Composer, EmailRequest
from postroom.cases.models import Recipient
from postroom.cases.service import CaseService
from postroom.cases.store import CaseTypeStore, add_history, load_case
from postroom.config.apply import ApplyReport, apply_config
from postroom.correspondence import CorrespondenceStore, Renderer
from postroom.db import create_db_engine, tables, upgrade, utcnow
from postroom.errors import MessageError
from postroom.operators import OperatorStore
from postroom.outbox import OutboxEntry, OutboxStatus, OutboxStore, RetryPolicy
from postroom.security import SecretBox, load_secret_box
from postroom.settings import Settings
from postroom.transports import TransportFactory, make_transport

log = logging.getLogger("postroom")


class _RendererCache:
    """One compiled renderer per version of the correspondence records."""

    def __init__(self, store: CorrespondenceStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._version: tuple[int, object] | None = None
        self._renderer: Renderer | None = None

    def __call__(self, conn: Connection) -> Renderer:
        version = self._store.version(conn)
        with self._lock:
            if self._renderer is None or version != self._version:
                self._renderer = Renderer(self._store.all(conn))
                self._version = version
            return self._renderer


class Postroom:
    """Postroom opened on one database."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport_factory: TransportFactory | None = None,
        engine: Engine | None = None,
        secrets: SecretBox | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.engine = engine or create_db_engine(self.settings.database_url)
        if self.settings.auto_migrate:
            upgrade(self.engine)
        self.secrets = secrets or load_secret_box(self.settings, holds_secrets=self._holds_secrets)
        timeout = self.settings.smtp_timeout
        self.transport_factory: TransportFactory = transport_factory or (
            lambda account: make_transport(account, timeout=timeout)
        )
        self.account_store = AccountStore(self.secrets)
        self.operator_store = OperatorStore()
        self.correspondence_store = CorrespondenceStore()
        self.case_type_store = CaseTypeStore()
        self.outbox_store = OutboxStore()
        self._renderers = _RendererCache(self.correspondence_store)
        self.composer = Composer(
            accounts=self.account_store, operators=self.operator_store, renderer=self._renderers
        )
        self.cases = CaseService(
            engine=self.engine,
            composer=self.composer,
            operators=self.operator_store,
            outbox=self.outbox_store,
            deliver_now=self.deliver_now,
        )

    def _holds_secrets(self) -> bool:
        try:
            with self.engine.connect() as conn:
                query = select(tables.accounts.c.name).where(
                    tables.accounts.c.password.is_not(None)
                )
                return conn.execute(query.limit(1)).first() is not None
        except SQLAlchemyError:
            return False  # no schema yet: nothing encrypted to lose

    @classmethod
    def open(cls, database_url: str | None = None, **settings: Any) -> Postroom:
        """Open Postroom on ``database_url`` (default: settings from the environment)."""
        return cls(Settings.from_flags(database_url=database_url, **settings))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Postroom:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- records ------------------------------------------------------------------------

    def apply(self, source: Any) -> ApplyReport:
        """Upsert the records of a YAML file (path) or mapping; see :mod:`postroom.config`."""
        return apply_config(self, source)

    def account(self, name: str) -> EmailAccount:
        with self.engine.connect() as conn:
            return self.account_store.get(conn, name)

    def accounts(self) -> list[EmailAccount]:
        with self.engine.connect() as conn:
            return self.account_store.list(conn)

    # --- outbox -------------------------------------------------------------------------

    def outbox(
        self,
        *,
        status: OutboxStatus | None = None,
        case_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[OutboxEntry]:
        with self.engine.connect() as conn:
            return self.outbox_store.list(
                conn, status=status, case_id=case_id, limit=limit, offset=offset
            )

    def outbox_entry(self, outbox_id: int) -> OutboxEntry:
        with self.engine.connect() as conn:
            return self.outbox_store.get(conn, outbox_id)

    def outbox_counts(self) -> dict[OutboxStatus, int]:
        with self.engine.connect() as conn:
            return self.outbox_store.counts(conn)

    def retry(self, outbox_id: int) -> OutboxEntry:
        """Queue a failed, cancelled or waiting email again, now."""
        return self._steer(outbox_id, self.outbox_store.retry, "email-retry", "queued again")

    def cancel(self, outbox_id: int) -> OutboxEntry:
        """Cancel an email that is not sent and not being sent."""
        return self._steer(outbox_id, self.outbox_store.cancel, "email-cancelled", "cancelled")

    def _steer(
        self,
        outbox_id: int,
        change: Callable[[Connection, int], OutboxEntry],
        action: str,
        done: str,
    ) -> OutboxEntry:
        with self.engine.begin() as conn:
            entry = change(conn, outbox_id)
            if entry.case_id:
                add_history(
                    conn,
                    entry.case_id,
                    actor="admin",
                    action=action,
                    detail=f"outbox #{outbox_id} {done}",
                )
            return entry

    # --- sending ------------------------------------------------------------------------

    def send(
        self,
        *,
        to: Sequence[str],
        subject: str | None = None,
        body: str | None = None,
        correspondence: str | None = None,
        class_name: str | None = None,
        case_id: str | None = None,
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
    ) -> int:
        """Queue an ad-hoc email; the account is resolved from the case's class or ``class_name``.

        Returns the outbox id. Errors (no account, template, address) are raised here.
        """
        try:
            request = EmailRequest(
                to=[Recipient(kind="address", value=a) for a in to],
                cc=[Recipient(kind="address", value=a) for a in cc],
                bcc=[Recipient(kind="address", value=a) for a in bcc],
                correspondence=correspondence,
                subject=subject,
                body=body,
            )
        except ValidationError as exc:
            raise MessageError(
                "; ".join(
                    str(e["msg"]).removeprefix("Value error, ")
                    for e in exc.errors(include_url=False, include_input=False)
                )
            ) from None
        with self.engine.begin() as conn:
            case = load_case(conn, case_id, details=False) if case_id else None
            resolved_class = case.case_type if case is not None else (class_name or "Default")
            composed = self.composer.compose(conn, request, class_name=resolved_class, case=case)
            outbox_id = self.outbox_store.enqueue(conn, composed.email)
            if case is not None:
                add_history(
                    conn,
                    case.id,
                    actor="api",
                    action="email-queued",
                    detail=(
                        f"'{composed.email.subject}' queued as outbox #{outbox_id}; account "
                        f"{composed.resolution.account}: {composed.resolution.reason}"
                    ),
                )
        return outbox_id

    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            max_attempts=s.max_attempts,
            max_age=timedelta(seconds=s.max_age_seconds),
            base=s.backoff_base,
            cap=s.backoff_max,
        )

    def agent(self, *, agent_id: str | None = None) -> SenderAgent:
        """A sender agent for this database; ``await agent.run()`` to start it."""
        s = self.settings
        return SenderAgent(
            engine=self.engine,
            load_account=self.account,
            transport_factory=self.transport_factory,
            policy=self.retry_policy(),
            config=AgentConfig(
                batch_size=s.batch_size,
                poll_interval=s.poll_interval,
                lease_seconds=s.lease_seconds,
                heartbeat_interval=s.heartbeat_interval,
                connections_per_account=s.connections_per_account,
            ),
            agent_id=agent_id,
        )

    def agents(self) -> list[AgentInfo]:
        """Agents that ran on this database, newest first, with their heartbeat state."""
        s = self.settings
        stale_after = 3 * min(s.heartbeat_interval, s.lease_seconds / 3)
        with self.engine.connect() as conn:
            return list_agents(conn, stale_after=stale_after)

    def deliver_now(self, outbox_ids: Sequence[int]) -> None:
        """Try these queued emails at once; whatever fails stays queued for the agent."""
        if not outbox_ids:
            return
        owner = f"immediate:{new_agent_id()}"
        with self.engine.begin() as conn:
            rows = self.outbox_store.claim_ids(
                conn, outbox_ids, owner=owner, lease=self.settings.lease_seconds
            )
        if not rows:
            return

        async def attempt() -> None:
            deliverer = Deliverer(
                factory=self.transport_factory,
                policy=self.retry_policy(),
                connections_per_account=self.settings.connections_per_account,
            )
            try:
                outcomes = await deliverer.deliver(rows, self.account)
            finally:
                await deliverer.close()
            # An immediate attempt that did not go through waits for the agent right away.
            outcomes = [
                replace(o, next_attempt_at=utcnow()) if o.status is OutboxStatus.RETRY else o
                for o in outcomes
            ]
            await asyncio.to_thread(
                record_outcomes,
                self.engine,
                self.outbox_store,
                outcomes,
                {r.id: r for r in rows},
                owner=owner,
            )

        # A thread of its own: callers may already be inside an event loop.
        worker = threading.Thread(target=lambda: asyncio.run(attempt()), daemon=True)
        worker.start()
        worker.join()
