"""Received mail as the facade offers it: listing, showing, triage and conversations.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

from postroom.bounces.process import BouncePolicy
from postroom.cases.models import Case
from postroom.cases.service import CaseService
from postroom.inbound.conversation import BodyCache, ConversationItem, conversation
from postroom.inbound.ingest import Ingestor
from postroom.inbound.models import InboundStatus, ReceivedMessage
from postroom.inbound.store import InboundStore
from postroom.inbound.triage import Triage
from postroom.settings import Settings
from postroom.text import check_names


class Receiving:
    """The received-mail methods of :class:`~postroom.Postroom`."""

    engine: Engine
    cases: CaseService
    settings: Settings

    def deliver_now(self, outbox_ids: Sequence[int]) -> None: ...

    @cached_property
    def inbound_store(self) -> InboundStore:
        return InboundStore()

    @cached_property
    def ingestor(self) -> Ingestor:
        """Commits received messages with all they cause (the listeners call it)."""
        return Ingestor(
            engine=self.engine,
            cases=self.cases,
            auto_reply_limit=self.settings.auto_reply_limit,
            store=self.inbound_store,
            bounces=BouncePolicy.of(self.settings),
        )

    @cached_property
    def _bodies(self) -> BodyCache:
        # Per Postroom (per database): row ids mean nothing across databases.
        return BodyCache()

    @cached_property
    def _triage(self) -> Triage:
        return Triage(
            engine=self.engine,
            cases=self.cases,
            store=self.inbound_store,
            auto_reply_limit=self.settings.auto_reply_limit,
            deliver_now=self.deliver_now,
        )

    def received(
        self,
        *,
        case_id: str | None = None,
        unmatched: bool = False,
        status: InboundStatus | None = None,
        account: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ReceivedMessage]:
        """Received messages, newest first; ``unmatched`` is the triage list."""
        check_names(case_id=case_id, account=account)
        with self.engine.connect() as conn:
            return self.inbound_store.list(
                conn,
                case_id=case_id,
                status=InboundStatus.UNMATCHED if unmatched else status,
                account=account,
                limit=limit,
                offset=offset,
            )

    def received_message(self, received_id: int) -> ReceivedMessage:
        with self.engine.connect() as conn:
            return self.inbound_store.get(conn, received_id)

    def received_raw(self, received_id: int) -> bytes:
        """The message's bytes as received (StateError when it was too large to read)."""
        with self.engine.connect() as conn:
            return self.inbound_store.raw(conn, received_id)

    def attach_received(
        self, received_id: int, case_id: str, *, actor: str = "admin"
    ) -> ReceivedMessage:
        """Attach a message from triage to a case (its ``email_received`` steps fire)."""
        return self._triage.attach(received_id, case_id, actor=actor)

    def case_from_received(
        self,
        received_id: int,
        class_name: str,
        *,
        actor: str = "admin",
        data: Mapping[str, Any] | None = None,
        operator: str | None = None,
    ) -> Case:
        """Open a case of type ``class_name`` from a message in triage.

        ``data`` goes over what the case type's ``inbound.data`` takes from the mail;
        ``operator`` is the creator (for parties such as ``creator.reports_to``).
        """
        return self._triage.open_case(
            received_id, class_name, actor=actor, data=data, operator=operator
        )

    def dismiss_received(self, received_id: int, *, actor: str = "admin") -> ReceivedMessage:
        """Take a message off the triage list; it is kept, and can still be attached."""
        return self._triage.dismiss(received_id, actor=actor)

    def conversation(self, case_id: str) -> list[ConversationItem]:
        """The case's sent and received mail in time order."""
        check_names(case_id=case_id)
        with self.engine.connect() as conn:
            return conversation(conn, case_id, cache=self._bodies)
