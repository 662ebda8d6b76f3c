"""Durable, idempotent ingest: one received message and all it causes, in one transaction.

The message (raw bytes, parsed headers, its routing), the case it opens or reaches,
the files attached there, the history line, the steps' emails, and the listener's own
``within`` (its lease checked, its cursor saved) commit together or not at all. The
server is told (flag, move, delete) only after the commit, so a crash in between
leaves a message that is read again, found by its dedupe key, and not taken twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from postroom.bounces.models import BounceReport
from postroom.bounces.process import BouncePolicy, ReportProcessor
from postroom.bounces.report import parse_report
from postroom.cases.service import CaseService
from postroom.cases.store import CaseTypeStore
from postroom.errors import StateError
from postroom.inbound import notices
from postroom.inbound.effects import CaseEffects
from postroom.inbound.models import FetchedMessage, InboundStatus, MailboxRef, ServerState
from postroom.inbound.parse import ParsedMail, dedupe_key, parse_mail
from postroom.inbound.routing import AccountAddresses, Route, case_type_of, quoted, route
from postroom.inbound.store import Existing, InboundStore, NewReceived
from postroom.suppression import SuppressionStore

log = logging.getLogger("postroom.inbound")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one message did."""

    id: int
    status: InboundStatus
    case_id: str | None
    duplicate: bool  # already in the database: nothing was done again
    settle: bool  # the source should flag, move or delete it (not when too large)
    immediate: tuple[int, ...] = ()  # outbox ids its steps queued with mode immediate


class _Fenced(Exception):
    """``within`` refused (the lease is gone): the error to raise once rolled back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class Ingestor:
    """Commits received messages, each with everything it causes on a case."""

    def __init__(
        self,
        *,
        engine: Engine,
        cases: CaseService,
        auto_reply_limit: int,
        store: InboundStore | None = None,
        bounces: BouncePolicy | None = None,
    ) -> None:
        self._engine = engine
        self._store = store or InboundStore()
        self._types = CaseTypeStore()
        self._effects = CaseEffects(cases, auto_reply_limit=auto_reply_limit)
        self._suppressions = SuppressionStore()
        self._reports = ReportProcessor(
            cases, policy=bounces or BouncePolicy(), suppressions=self._suppressions
        )

    def ingest(
        self,
        mailbox: MailboxRef,
        item: FetchedMessage,
        *,
        validity: str | None,
        within: Callable[[Connection], None] | None = None,
    ) -> IngestResult:
        """Commit ``item`` and its effects; a message already here is a duplicate.

        ``within`` runs last in the same transaction (also for a duplicate, so that the
        caller's cursor moves on); whatever it raises rolls everything back and is raised.
        """
        # Parsed before the transaction: a large mail must not hold the write lock.
        mail = parse_mail(item.raw) if item.raw is not None else None
        key = dedupe_key(mail, item.raw) if mail is not None and item.raw is not None else None
        key = key or _too_large_key(mailbox, item, validity)
        # A delivery report is read before the transaction too.
        report = parse_report(item.raw) if mail is not None and mail.bounce and item.raw else None
        failure: Exception | None = None
        conflicts = 0
        # At most one failure and two conflicts: three attempts are always enough.
        for _ in range(3):
            try:
                return self._once(
                    mailbox,
                    item,
                    mail,
                    key=key,
                    validity=validity,
                    within=within,
                    failure=failure,
                    report=report,
                )
            except _Fenced as fenced:
                raise fenced.error from None
            except IntegrityError:
                # A concurrent ingest of the same message won the unique index, or a file
                # name was taken meanwhile: look again in a fresh transaction.
                conflicts += 1
                if conflicts == 2:
                    break
            except SQLAlchemyError:
                raise  # the database is away: the listener retries the message later
            except Exception as exc:  # a bug must not block the mailbox or lose the message
                if failure is not None:
                    raise
                log.exception("routing received message %s in %s failed", item.key, mailbox.key)
                failure = exc
        raise StateError(
            f"received message {item.key} in {mailbox.key} met a conflicting write twice; "
            "it is read again in the next round"
        )

    def _once(
        self,
        mailbox: MailboxRef,
        item: FetchedMessage,
        mail: ParsedMail | None,
        *,
        key: str,
        validity: str | None,
        within: Callable[[Connection], None] | None,
        failure: Exception | None,
        report: BounceReport | None,
    ) -> IngestResult:
        with self._engine.begin() as conn:
            existing = self._store.find(conn, mailbox, key)
            if existing is not None:
                result = self._duplicate(conn, existing, item, validity)
            elif mail is None or item.raw is None:
                result = self._too_large(conn, mailbox, item, key, validity)
            else:
                new = _row(mailbox, item, mail, key, validity)
                result = self._new(conn, new, mail, item.raw, failure=failure, report=report)
            if within is not None:
                try:
                    within(conn)
                except Exception as exc:
                    raise _Fenced(exc) from exc
        return result

    def _duplicate(
        self, conn: Connection, existing: Existing, item: FetchedMessage, validity: str | None
    ) -> IngestResult:
        if existing.server_state is ServerState.DONE and existing.source_key != item.key:
            # Another copy on the server (the same Message-ID under a new UID): settle it
            # too, and let a crash before that leave it to the next round's leftovers.
            self._store.track(conn, existing.id, source_key=item.key, validity=validity)
        return IngestResult(
            id=existing.id,
            status=existing.status,
            case_id=existing.case_id,
            duplicate=True,
            settle=existing.server_state is not ServerState.LEFT,
        )

    def _too_large(
        self,
        conn: Connection,
        mailbox: MailboxRef,
        item: FetchedMessage,
        key: str,
        validity: str | None,
    ) -> IngestResult:
        reason = (
            f"too large: {item.size:,} bytes, over the account's max_message_bytes; "
            "left on the server"
        )
        new = NewReceived(
            mailbox=mailbox,
            dedupe_key=key,
            source_key=item.key,
            validity=validity,
            size=item.size,
            raw=None,
            status=InboundStatus.TOO_LARGE,
            reason=reason,
            server_state=ServerState.LEFT,
        )
        received_id = self._store.insert(conn, new)
        notices.received(
            conn,
            received_id=received_id,
            message_id=None,
            account=mailbox.account,
            sender=None,
            subject="",
            status=InboundStatus.TOO_LARGE,
            case_id=None,
            reason=reason,
        )
        return IngestResult(received_id, InboundStatus.TOO_LARGE, None, False, settle=False)

    def _new(
        self,
        conn: Connection,
        new: NewReceived,
        mail: ParsedMail,
        raw: bytes,
        *,
        failure: Exception | None,
        report: BounceReport | None = None,
    ) -> IngestResult:
        types = self._types.list(conn)
        if failure is not None and mail.bounce:
            # Never a reply, even when reading it failed: kept as a report that did nothing.
            found = Route(
                InboundStatus.BOUNCE,
                f"a delivery report that could not be applied ({type(failure).__name__}: "
                f"{failure}): kept, changes nothing",
            )
        elif failure is not None:
            found = Route(
                InboundStatus.UNMATCHED,
                f"could not be routed ({type(failure).__name__}: {failure}); kept for triage",
            )
        else:
            account = AccountAddresses.load(conn, new.mailbox.account)
            found = route(conn, mail, account=account, types=types)
        twin = self._twin(conn, new, mail, found)
        if twin is not None:
            # The same mail read from another mailbox (sent to two of Postroom's
            # addresses): noted on its case once, its steps fired once.
            received_id = self._store.insert(
                conn, replace(new, status=twin.status, reason=twin.reason, case_id=twin.case_id)
            )
            return IngestResult(received_id, twin.status, twin.case_id, False, settle=True)
        received_id = self._store.insert(
            conn, replace(new, status=found.status, reason=found.reason, case_id=found.case_id)
        )
        if found.status is InboundStatus.BOUNCE and failure is None:
            applied = self._reports.apply(
                conn, report or parse_report(raw), inbound_id=received_id, types=types
            )
            self._store.route(
                conn,
                received_id,
                status=found.status,
                reason=applied.reason,
                case_id=applied.case_id,
            )
            return IngestResult(
                received_id,
                found.status,
                applied.case_id,
                False,
                settle=True,
                immediate=applied.immediate,
            )
        status, case_id, reason = found.status, found.case_id, found.reason
        immediate: tuple[int, ...] = ()
        if found.status is InboundStatus.MATCHED and found.case_id is not None:
            class_name = case_type_of(conn, found.case_id)
            ctype = next((t for t in types if t.class_name == class_name), None)
            immediate = tuple(
                self._effects.on_case(
                    conn,
                    ctype,
                    found.case_id,
                    received_id=received_id,
                    mail=mail,
                    raw=raw,
                    how=found.reason,
                )
            )
        elif found.new_case is not None:
            opened = self._effects.open_case(
                conn, found.new_case, received_id=received_id, mail=mail, raw=raw, how=found.reason
            )
            if opened.case_id is None:
                status = InboundStatus.UNMATCHED
                reason = f"{found.reason}, but the case was not opened: {opened.error}"
            else:
                case_id, reason = opened.case_id, f"{found.reason}: case {opened.case_id}"
                immediate = opened.immediate
            self._store.route(conn, received_id, status=status, reason=reason, case_id=case_id)
        if status is not InboundStatus.BOUNCE:
            notices.lift_bounces(
                conn,
                self._suppressions,
                sender=mail.from_address,
                status=status,
                received_id=received_id,
                case_id=case_id,
            )
            notices.received(
                conn,
                received_id=received_id,
                message_id=mail.message_id,
                account=new.mailbox.account,
                sender=mail.from_address,
                subject=mail.subject,
                status=status,
                case_id=case_id,
                reason=reason,
            )
        return IngestResult(received_id, status, case_id, False, settle=True, immediate=immediate)

    def _twin(
        self, conn: Connection, new: NewReceived, mail: ParsedMail, found: Route
    ) -> Route | None:
        """Where the same message went when another mailbox read it first.

        Its twin takes that outcome: the same case (not attached again, no steps), or,
        when the first copy waits in triage or was dismissed, dismissed as that copy's
        twin, so that the triage list shows the message once.
        """
        if found.status not in _TWINNED:
            return None  # automatic mail and bounces go nowhere either way
        twin = self._store.twin(
            conn, message_id=mail.message_id, dedupe_key=new.dedupe_key, other_than=new.mailbox
        )
        if twin is None:
            return None
        first = f"the same message was received as #{twin.id} from {quoted(twin.mailbox)}"
        if twin.case_id is not None:
            return Route(
                InboundStatus.MATCHED,
                f"{first}, on case {twin.case_id}: not attached again",
                case_id=twin.case_id,
            )
        where = "dismissed" if twin.status is InboundStatus.DISMISSED else "in triage"
        return Route(InboundStatus.DISMISSED, f"{first}, {where}: not listed again")


_TWINNED = (InboundStatus.MATCHED, InboundStatus.NEW_CASE, InboundStatus.UNMATCHED)


def _row(
    mailbox: MailboxRef,
    item: FetchedMessage,
    mail: ParsedMail,
    key: str,
    validity: str | None,
) -> NewReceived:
    """The row of a message that was read; its routing is filled in later."""
    return NewReceived(
        mailbox=mailbox,
        dedupe_key=key,
        source_key=item.key,
        validity=validity,
        size=item.size,
        raw=item.raw,
        status=InboundStatus.UNMATCHED,
        reason="",
        server_state=ServerState.PENDING,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to[0] if mail.in_reply_to else None,
        subject=mail.subject,
        from_address=mail.from_address,
        from_name=mail.from_name,
        recipients=mail.recipients,
        sent_at=mail.sent_at,
        text=mail.text,
        defects=mail.defects,
        attachments=len(mail.attachments),
    )


def _too_large_key(mailbox: MailboxRef, item: FetchedMessage, validity: str | None) -> str:
    """A message never read has no Message-ID to go by: its place on the server is its key."""
    place = f"{mailbox.key}\n{validity or ''}\n{item.key}"
    return "big:" + hashlib.sha256(place.encode("utf-8", "replace")).hexdigest()
