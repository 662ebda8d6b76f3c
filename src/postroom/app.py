"""The :class:`Postroom` object: one database, its records and services.

The CLI, the demo and applications embedding Postroom all go through this object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from postroom.accounts import AccountStore, EmailAccount
from postroom.accounts.checks import check_account
from postroom.accounts.connectivity import ConnectivityReport, Step
from postroom.accounts.graph_check import token_step
from postroom.accounts.holds import AccountHold, HoldStore
from postroom.agent import AgentConfig, SenderAgent
from postroom.agent.immediate import deliver_ids, run_in_own_loop
from postroom.agent.registry import AgentInfo, list_agents, set_paused
from postroom.auth import AuthProfile, AuthProfileStore, TokenCache
from postroom.cases.emails import Composer
from postroom.cases.service import CaseService
from postroom.cases.store import CaseTypeStore, add_history
from postroom.composing.guard import refuse_in_a_starting_child
from postroom.config.apply import ApplyReport, apply_config, write_records
from postroom.correspondence import CorrespondenceStore, RendererCache
from postroom.db import create_db_engine, tables, upgrade
from postroom.db.engine import reading
from postroom.db.migrate import check_schema
from postroom.hooking import Hooking
from postroom.identity import Identity
from postroom.keystores.models import Keystore
from postroom.keystores.store import KeystoreStore
from postroom.listening import Listening
from postroom.operators import OperatorStore
from postroom.outbox import OutboxEntry, OutboxStatus, OutboxStore, RetryPolicy
from postroom.outbox.wakeup import wakeup_for
from postroom.receiving import Receiving
from postroom.records import Change
from postroom.reviews.service import Reviews
from postroom.security import SecretBox, load_secret_box
from postroom.sending import Sending
from postroom.settings import Settings
from postroom.signing.sealer import Sealer
from postroom.supervisor import TaskBoard
from postroom.suppressing import Suppressing
from postroom.suppression import SuppressionStore
from postroom.transports import Sender, TransportFactory, Transports
from postroom.webhooks.deliveries import DeliveryStore
from postroom.webhooks.endpoints import WebhookEndpointStore

log = logging.getLogger("postroom")
T = TypeVar("T")


class Postroom(Sending, Receiving, Listening, Suppressing, Hooking):
    """Postroom opened on one database."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        transport_factory: TransportFactory | None = None,
        engine: Engine | None = None,
        secrets: SecretBox | None = None,
    ) -> None:
        refuse_in_a_starting_child()
        self.settings = settings or Settings()
        self.engine = engine or create_db_engine(self.settings.database_url)
        if self.settings.auto_migrate:
            upgrade(self.engine)
        else:
            check_schema(self.engine)  # another version's schema: one clear error, now
        self.secrets = secrets or load_secret_box(self.settings, holds_secrets=self._holds_secrets)
        self.transports = Transports(
            smtp_timeout=self.settings.smtp_timeout,
            http_timeout=self.settings.http_timeout,
            allowed_hosts=self.settings.endpoint_hosts,
        )
        self.transport_factory: TransportFactory = transport_factory or self.transports
        self.account_store = AccountStore(self.secrets)
        self.profile_store = AuthProfileStore(self.secrets)
        self.keystore_store = KeystoreStore(self.secrets)
        self.sealer = Sealer(self.keystore_store)
        self.hold_store = HoldStore()
        self.operator_store = OperatorStore()
        self.correspondence_store = CorrespondenceStore()
        self.case_type_store = CaseTypeStore()
        self.outbox_store = OutboxStore()
        self.suppression_store = SuppressionStore()
        self.webhook_store = WebhookEndpointStore(self.secrets)
        self.delivery_store = DeliveryStore()
        self.identity = Identity(self.engine)
        # What `postroom serve`'s background tasks are doing, for its health check.
        self.background = TaskBoard()
        self._renderers = RendererCache(self.correspondence_store)
        self.composer = Composer(
            accounts=self.account_store,
            operators=self.operator_store,
            renderer=self._renderers,
            seal=self.sealer.seal,
        )
        self.cases = CaseService(
            engine=self.engine,
            composer=self.composer,
            operators=self.operator_store,
            outbox=self.outbox_store,
            deliver_now=self.deliver_now,
        )
        self.reviews = Reviews(
            engine=self.engine,
            accounts=self.account_store,
            seal=self.sealer.seal,
            composer=self.composer,
            operators=self.operator_store,
            outbox=self.outbox_store,
        )

    def _holds_secrets(self) -> bool:
        try:
            with reading(self.engine) as conn:
                a = tables.accounts
                queries = (
                    select(a.c.name).where(
                        a.c.password.is_not(None)
                        | a.c.dkim_private_key.is_not(None)
                        | a.c.inbound_password.is_not(None)
                    ),
                    select(tables.auth_profiles.c.name),
                    select(tables.keystores.c.name),
                    select(tables.webhook_endpoints.c.name),
                )
                return any(conn.execute(q.limit(1)).first() is not None for q in queries)
        except SQLAlchemyError:
            return False  # no schema yet: nothing encrypted to lose

    @classmethod
    def open(cls, database_url: str | None = None, **settings: Any) -> Postroom:
        """Open Postroom on ``database_url`` (default: settings from the environment)."""
        return cls(Settings.from_flags(database_url=database_url, **settings))

    def close(self) -> None:
        self.close_compose_pool()  # processes of parallel send_many, if any were started
        self.engine.dispose()

    def __enter__(self) -> Postroom:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- records ------------------------------------------------------------------------

    def apply(self, source: Any, *, by: str = "apply") -> ApplyReport:
        """Upsert the records of a YAML file (path) or mapping; see :mod:`postroom.config`.

        ``by`` names who saved them in the correspondence versions it keeps.
        """
        return apply_config(self, source, by=by)

    def account(self, name: str) -> EmailAccount:
        with reading(self.engine) as conn:
            return self.account_store.get(conn, name)

    def accounts(self) -> list[EmailAccount]:
        with reading(self.engine) as conn:
            return self.account_store.list(conn)

    def put_account(self, account: EmailAccount, *, create: bool = False) -> Change:
        """Create or update an account (``create``: only a new one, else ExistsError).

        A change lifts the account's hold (see :meth:`release_account`).
        """
        return write_records(self, {"accounts": [account]}, create=create).changes[0][2]

    def auth_profile(self, name: str) -> AuthProfile:
        with reading(self.engine) as conn:
            return self.profile_store.get(conn, name)

    def auth_profiles(self) -> list[AuthProfile]:
        with reading(self.engine) as conn:
            return self.profile_store.list(conn)

    def put_auth_profile(self, profile: AuthProfile) -> Change:
        """Create or update a profile; a change lifts the holds of the accounts naming it."""
        return write_records(self, {"auth_profiles": [profile]}).changes[0][2]

    def keystore(self, name: str) -> Keystore:
        with reading(self.engine) as conn:
            return self.keystore_store.get(conn, name)

    def keystores(self) -> list[Keystore]:
        with reading(self.engine) as conn:
            return self.keystore_store.list(conn)

    def put_keystore(self, keystore: Keystore) -> Change:
        """Create or update a keystore; it is opened first (password, alias) as apply does."""
        return write_records(self, {"keystores": [keystore]}).changes[0][2]

    def sender(self, name: str) -> Sender:
        """Account ``name`` as the agent sends with it: its profile and any hold."""
        with reading(self.engine) as conn:
            account = self.account_store.get(conn, name)
            profile = (
                self.profile_store.get(conn, account.auth_profile) if account.auth_profile else None
            )
            return Sender(account, profile, self.hold_store.get(conn, name))

    def test_account(self, name: str) -> ConnectivityReport:
        """Test connectivity as the agent would connect: SMTP stages (with XOAUTH2's token),
        or Graph's token, mailbox and permission."""
        sender = self.sender(name)
        s = self.settings
        inbound, store = sender.account.inbound_profile, self.profile_store
        with reading(self.engine) as conn:  # a missing profile is a failed step, not an error
            found = inbound is not None and store.exists(conn, inbound)
            inbound_profile = store.get(conn, inbound) if inbound and found else None
        return run_in_own_loop(
            lambda: check_account(
                sender.account,
                sender.profile,
                tokens=self.transports.tokens,
                allowed_hosts=s.endpoint_hosts,
                smtp_timeout=s.smtp_timeout,
                http_timeout=s.http_timeout,
                inbound_profile=inbound_profile,
            )
        )

    def test_auth_profile(self, name: str) -> Step:
        """Request a token with profile ``name`` (bypassing the cache) and describe it."""
        profile = self.auth_profile(name)
        tokens = TokenCache(
            allowed_hosts=self.settings.endpoint_hosts, timeout=self.settings.http_timeout
        )

        async def check() -> Step:
            return (await token_step(profile, tokens))[0]

        return run_in_own_loop(check)

    def holds(self) -> list[AccountHold]:
        """Accounts held because their credentials were refused."""
        with reading(self.engine) as conn:
            return self.hold_store.list(conn)

    def release_account(self, name: str) -> int:
        """Lift the hold on account ``name`` and queue its held emails now; returns how many."""
        with self.engine.begin() as conn:
            self.account_store.get(conn, name)  # NotFoundError for a typo
            self.hold_store.lift(conn, name)
            return self.outbox_store.release_held(conn, name)

    # --- outbox -------------------------------------------------------------------------

    def outbox(
        self,
        *,
        status: OutboxStatus | None = None,
        case_id: str | None = None,
        account: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[OutboxEntry]:
        """Outbox rows, newest first, filtered by status, case and account."""
        with reading(self.engine) as conn:
            return self.outbox_store.list(
                conn, status=status, case_id=case_id, account=account, limit=limit, offset=offset
            )

    def outbox_entry(self, outbox_id: int) -> OutboxEntry:
        with reading(self.engine) as conn:
            return self.outbox_store.get(conn, outbox_id)

    def outbox_counts(self) -> dict[OutboxStatus, int]:
        with reading(self.engine) as conn:
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
            load_sender=self.sender,
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
            limits_of=self.account_store.limits,
            wakeup=wakeup_for(self.engine, enabled=s.wakeup),
            periodic=self.reviews.escalate_due,
        )

    def agents(self) -> list[AgentInfo]:
        """Agents that ran on this database, newest first, with their heartbeat state."""
        with reading(self.engine) as conn:
            return list_agents(conn, stale_after=self._stale_after)

    def pause_agent(self, agent_id: str, *, paused: bool = True) -> AgentInfo:
        """Pause (or with ``paused=False`` resume) an agent, wherever it runs."""
        with self.engine.begin() as conn:
            set_paused(conn, agent_id, paused=paused)
            [agent] = list_agents(conn, stale_after=self._stale_after, agent_id=agent_id)
        return agent

    @property
    def _stale_after(self) -> float:
        # Three missed beats (an agent beats at least three times per lease).
        s = self.settings
        return 3 * min(s.heartbeat_interval, s.lease_seconds / 3)

    def deliver_now(self, outbox_ids: Sequence[int]) -> None:
        """Try these queued emails at once; whatever fails stays queued for the agent."""
        deliver_ids(
            outbox_ids,
            engine=self.engine,
            outbox=self.outbox_store,
            limits_of=self.account_store.limits,
            factory=self.transport_factory,
            policy=self.retry_policy(),
            connections_per_account=self.settings.connections_per_account,
            lease=self.settings.lease_seconds,
            load_sender=self.sender,
        )
