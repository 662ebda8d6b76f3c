"""Triage: an admin attaches a received message to a case, opens a case from it, or
dismisses it. Each change is checked against the statuses' transitions first."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from postroom.cases.data import check_data
from postroom.cases.models import Case
from postroom.cases.service import CaseService
from postroom.cases.store import CaseTypeStore, load_case
from postroom.errors import ConfigurationError, InvalidFieldsError, NotFoundError
from postroom.inbound.effects import CaseEffects
from postroom.inbound.models import InboundStatus, ReceivedMessage, check_transition
from postroom.inbound.parse import parse_mail
from postroom.inbound.store import InboundStore
from postroom.operators.store import OperatorStore
from postroom.text import check_names, check_tree


class Triage:
    """The admin's decisions on received messages that routing left to a person."""

    def __init__(
        self,
        *,
        engine: Engine,
        cases: CaseService,
        store: InboundStore,
        auto_reply_limit: int,
        deliver_now: Callable[[Sequence[int]], None],
    ) -> None:
        self._engine = engine
        self._cases = cases
        self._store = store
        self._types = CaseTypeStore()
        self._operators = OperatorStore()
        self._effects = CaseEffects(cases, auto_reply_limit=auto_reply_limit)
        self._deliver_now = deliver_now

    def attach(self, received_id: int, case_id: str, *, actor: str) -> ReceivedMessage:
        """Attach the message to a case; its ``email_received`` steps fire (not for
        automatic mail)."""
        check_names(case_id=case_id, actor=actor)
        reason = f"attached by {actor}"
        with self._engine.begin() as conn:
            message, raw = self._taking(conn, received_id, InboundStatus.MATCHED)
            case = load_case(conn, case_id, details=False)
            try:
                ctype = self._types.get(conn, case.case_type)
            except NotFoundError:
                ctype = None  # the case's type is gone: attached, no steps
            immediate = self._effects.on_case(
                conn,
                ctype,
                case_id,
                received_id=received_id,
                mail=parse_mail(raw),
                raw=raw,
                how=reason,
                actor=actor,
                steps=message.status is not InboundStatus.AUTOMATIC,
            )
            result = self._store.set_status(
                conn, received_id, InboundStatus.MATCHED, reason=reason, case_id=case_id
            )
        self._deliver_now(immediate)
        return result

    def open_case(
        self,
        received_id: int,
        class_name: str,
        *,
        actor: str,
        data: Mapping[str, Any] | None = None,
        operator: str | None = None,
    ) -> Case:
        """Open a case of ``class_name`` from the message, as routing's rule 4 would.

        ``data`` goes over what the case type's ``inbound.data`` takes from the mail;
        ``operator`` is the case's creator (for parties such as ``creator.reports_to``).
        """
        check_names(class_name=class_name, actor=actor, operator=operator)
        given = check_data(check_tree(dict(data or {}), field="data"))
        with self._engine.begin() as conn:
            _, raw = self._taking(conn, received_id, InboundStatus.NEW_CASE)
            ctype = self._types.get(conn, class_name)
            creator = self._operators.get(conn, operator) if operator else None
            opened = self._effects.open_case(
                conn,
                ctype,
                received_id=received_id,
                mail=parse_mail(raw),
                raw=raw,
                how=f"case opened by {actor}",
                actor=actor,
                data=given,
                creator=creator,
            )
            if opened.case_id is None:
                refused = (
                    f"received message #{received_id} cannot open a {class_name} case: "
                    f"{opened.error}"
                )
                if isinstance(opened.problem, InvalidFieldsError):
                    # The fields it names (data.applicant: is required) stay listed.
                    raise InvalidFieldsError(opened.problem.issues, message=refused)
                raise ConfigurationError(refused)
            self._store.set_status(
                conn,
                received_id,
                InboundStatus.NEW_CASE,
                reason=f"case {opened.case_id} opened by {actor}",
                case_id=opened.case_id,
            )
        self._deliver_now(opened.immediate)
        return self._cases.get(opened.case_id)

    def _taking(
        self, conn: Connection, received_id: int, status: InboundStatus
    ) -> tuple[ReceivedMessage, bytes]:
        """The message and its bytes, once it is known that it may take ``status``."""
        message = self._store.get(conn, received_id)
        check_transition(message.status, status, message_id=received_id, case_id=message.case_id)
        return message, self._store.raw(conn, received_id)

    def dismiss(self, received_id: int, *, actor: str) -> ReceivedMessage:
        """Take the message off the triage list (it is kept)."""
        check_names(actor=actor)
        with self._engine.begin() as conn:
            return self._store.set_status(
                conn, received_id, InboundStatus.DISMISSED, reason=f"dismissed by {actor}"
            )
