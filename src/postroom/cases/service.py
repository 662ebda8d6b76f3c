"""Case operations: create, change status, attach; each fires its send-email steps.

A case change and the emails it queues are written in one transaction: either
both are committed or neither is.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from postroom.cases import store
from postroom.cases.data import check_data
from postroom.cases.emails import Composer
from postroom.cases.fields import validate_data
from postroom.cases.languages import party_language
from postroom.cases.models import INITIAL_STATUS, Case, CaseType, Party, check_status
from postroom.cases.steps import StepRunner
from postroom.cases.store import CaseTypeStore
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError
from postroom.operators import Operator, OperatorStore
from postroom.outbox.store import OutboxStore
from postroom.text import check_names, check_tree, check_unicode
from postroom.validation import check_address, single_line
from postroom.webhooks.events import emit
from postroom.webhooks.models import Event, EventType

MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_ATTACHMENT_NAME = 200
SENT_EMAIL_NAME = re.compile(r"email-\d+\.eml", re.IGNORECASE)
RECEIVED_EMAIL_NAME = re.compile(r"received-\d+\.eml", re.IGNORECASE)


class CaseService:
    """Creates and changes cases; the CLI, the Python API and the web all call this."""

    def __init__(
        self,
        *,
        engine: Engine,
        composer: Composer,
        operators: OperatorStore,
        outbox: OutboxStore,
        deliver_now: Callable[[Sequence[int]], None],
    ) -> None:
        self._engine = engine
        self._composer = composer
        self._operators = operators
        self._outbox = outbox
        self._types = CaseTypeStore()
        self._deliver_now = deliver_now
        self.steps = StepRunner(composer=composer, outbox=outbox)

    def create(
        self,
        case_type: str,
        *,
        data: dict[str, Any] | None = None,
        operator: str | None = None,
        record: Callable[[Connection, str], None] | None = None,
    ) -> Case:
        """Create a case, add its work parties and queue its ``on: created`` emails.

        ``record`` runs in the case's transaction with its id, before the commit: a
        caller's own bookkeeping (an idempotency key) commits with the case or not at all.
        """
        check_names(case_type=case_type, operator=operator)
        data = check_data(check_tree(dict(data or {}), field="data"))
        with self._engine.begin() as conn:
            ctype = self._types.get(conn, case_type)
            creator = self._operators.get(conn, operator) if operator else None
            case_id = self.open_in(conn, ctype, data, creator=creator)
            immediate = self.steps.fire(conn, ctype, case_id, event="created", actor=creator)
            if record is not None:
                record(conn, case_id)
        self._deliver_now(immediate)
        return self.get(case_id)

    def open_in(
        self,
        conn: Connection,
        ctype: CaseType,
        data: dict[str, Any],
        *,
        creator: Operator | None = None,
        sender: Party | None = None,
        how: str = "",
    ) -> str:
        """Insert a case in the caller's transaction; its ``created`` steps are not fired.

        ``data`` is validated against the case type's fields (:class:`InvalidFieldsError`
        before anything is written). ``sender`` is a work party from received mail (the
        case type's inbound ``sender_party``); ``how`` ends the history line.
        """
        data = validate_data(ctype.fields, data, what=f"case data for {ctype.class_name}")
        parties, notes = self._parties(conn, ctype, creator, data)
        if sender is not None:
            parties = [p for p in parties if p.role != sender.role] + [sender]
        case_id = store.next_case_id(conn, ctype.id_prefix)
        store.insert_case(
            conn,
            case_id=case_id,
            case_type=ctype.class_name,
            status=INITIAL_STATUS,
            created_by=creator.id if creator else None,
            data=data,
            parties=parties,
            now=utcnow(),
        )
        store.add_history(
            conn,
            case_id,
            actor=creator.id if creator else store.SYSTEM,
            action="created",
            detail=f"{ctype.label or ctype.class_name} created with status {INITIAL_STATUS}{how}",
        )
        for note in notes:
            store.add_history(conn, case_id, actor=store.SYSTEM, action="party", detail=note)
        created = {
            "case_id": case_id,
            "case_type": ctype.class_name,
            "status": INITIAL_STATUS,
            "created_by": creator.id if creator else None,
        }
        emit(conn, [Event(EventType.CASE_CREATED, created)])
        return case_id

    def set_status(self, case_id: str, status: str, *, operator: str | None = None) -> Case:
        """Change the status and queue the steps that fire on entering it."""
        try:
            check_status(status)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        check_names(case_id=case_id, operator=operator)
        with self._engine.begin() as conn:
            case = store.load_case(conn, case_id, details=False)
            if case.status == status:
                # Entering a status fires its steps; staying in it must not send again.
                return store.load_case(conn, case_id)
            actor_op = self._operators.get(conn, operator) if operator else None
            ctype = self._types.get(conn, case.case_type)
            immediate = self.steps.enter_status(conn, ctype, case_id, status, actor=actor_op)
        self._deliver_now(immediate)
        return self.get(case_id)

    def attach(
        self,
        case_id: str,
        *,
        name: str,
        content: bytes,
        content_type: str | None = None,
        operator: str | None = None,
    ) -> Case:
        check_names(case_id=case_id, operator=operator)
        check_unicode(name, field="attachment name")  # controls are folded below
        clean = single_line(name).replace("/", "_").replace("\\", "_")
        if not clean or clean in (".", ".."):
            raise ConfigurationError("an attachment needs a file name")
        if len(clean) > MAX_ATTACHMENT_NAME:
            raise ConfigurationError(
                f"an attachment name may have at most {MAX_ATTACHMENT_NAME} characters"
            )
        if SENT_EMAIL_NAME.fullmatch(clean):
            # The sent emails are attached under these names: a file uploaded under one
            # could pass for what Postroom sent.
            raise ConfigurationError(
                f"{clean}: names email-<n>.eml are kept for the emails Postroom sends"
            )
        if RECEIVED_EMAIL_NAME.fullmatch(clean):
            raise ConfigurationError(
                f"{clean}: names received-<n>.eml are kept for the emails Postroom receives"
            )
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise ConfigurationError(
                f"attachment {clean} is larger than {MAX_ATTACHMENT_BYTES // (1024 * 1024)} MB"
            )
        ctype = content_type or mimetypes.guess_type(clean)[0] or "application/octet-stream"
        taken = f"case {case_id} already has an attachment named {clean}; choose another name"
        with self._engine.begin() as conn:
            store.load_case(conn, case_id, details=False)
            if store.has_attachment(conn, case_id, clean):
                raise ConfigurationError(taken)
            try:
                store.add_attachment(conn, case_id, name=clean, content_type=ctype, content=content)
            except IntegrityError:
                # Another upload of that name committed after the check above.
                raise ConfigurationError(taken) from None
            store.add_history(
                conn,
                case_id,
                actor=operator or store.SYSTEM,
                action="attached",
                detail=f"{clean} ({len(content)} bytes)",
            )
        return self.get(case_id)

    def get(self, case_id: str) -> Case:
        with self._engine.connect() as conn:
            return store.load_case(conn, case_id)

    def attachment(self, case_id: str, name: str) -> tuple[str, bytes]:
        with self._engine.connect() as conn:
            return store.attachment_content(conn, case_id, name)

    def recent(self, *, limit: int = 50) -> list[Case]:
        """The newest cases, without their attachments and history."""
        t = tables.cases
        with self._engine.connect() as conn:
            ids = conn.execute(select(t.c.id).order_by(t.c.created_at.desc()).limit(limit))
            return [store.load_case(conn, i, details=False) for (i,) in ids]

    # --- internals ---------------------------------------------------------------------

    def _parties(
        self, conn: Connection, ctype: CaseType, creator: Operator | None, data: dict[str, Any]
    ) -> tuple[list[Party], list[str]]:
        parties: list[Party] = []
        notes: list[str] = []
        for role, source in ctype.parties.items():
            operator: Operator | None = None
            address: str | None = None
            if source == "creator":
                operator = creator
            elif source == "creator.reports_to":
                if creator is not None and creator.reports_to:
                    operator = self._operators.find(conn, creator.reports_to)
            elif source.startswith("operator:"):
                operator = self._operators.find(conn, source.removeprefix("operator:"))
            else:
                value = data.get(source.removeprefix("data."))
                if isinstance(value, str) and value:
                    try:
                        address = check_address(value, what=f"{role} ({source})")
                    except ValueError as exc:
                        raise ConfigurationError(str(exc)) from None
            language, note = party_language(ctype, role, data)
            if note is not None:
                notes.append(note)
            if operator is not None and operator.email:
                parties.append(
                    Party(
                        role=role,
                        address=operator.email,
                        name=operator.name,
                        operator_id=operator.id,
                        language=language or operator.language,
                    )
                )
            elif address is not None:
                parties.append(Party(role=role, address=address, language=language))
            else:
                notes.append(f"work party {role} not added: {source} gives no email address")
        return parties, notes
