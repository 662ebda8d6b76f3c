"""Queueing ad-hoc emails: :meth:`Postroom.send` and :meth:`Postroom.send_many`.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services; these
methods compose outside the write lock, then queue in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import Connection, Engine

from postroom.accounts import DEFAULT_ACCOUNT
from postroom.cases.adhoc import QueuedEmail, at_field, explained, prefixed
from postroom.cases.emails import Composer, Composition, EmailRequest
from postroom.cases.models import CaseType, RecipientKind
from postroom.cases.store import CaseTypeStore, add_history, load_case
from postroom.composing import ComposePool, Plan, pool_processes
from postroom.db.engine import reading
from postroom.errors import (
    ConfigurationError,
    InvalidFieldsError,
    MessageError,
    NotFoundError,
    TemplateError,
)
from postroom.outbox import OutboxStore, Priority
from postroom.outbox.models import NewEmail
from postroom.settings import Settings
from postroom.text import check_email, check_names

MAX_SEND_MANY = 10_000  # one transaction: bounded so that a batch cannot hold the database
_POOL_LOCK = threading.Lock()  # the pool is started once, by whichever thread needs it first


class Sending:
    """The ad-hoc sending methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    composer: Composer
    _compose_pool: ComposePool | None = None
    outbox_store: OutboxStore
    case_type_store: CaseTypeStore

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
        priority: Priority = Priority.NORMAL,
        send_after: datetime | None = None,
        expires_at: datetime | None = None,
        template: bool = False,
        language: str | None = None,
        record: Callable[[Connection, list[int]], None] | None = None,
    ) -> int:
        """Queue an ad-hoc email; the account is resolved from the case's class or ``class_name``.

        ``subject`` and ``body`` (HTML) are sent as written; ``template=True`` renders them
        as templates; ``language`` picks a correspondence's translation (and the language
        dates and amounts are formatted in). Returns the outbox id; :meth:`queue_email`
        also says which account was chosen and why. Errors (no account, template, address,
        missing certificate) are raised here, naming the field they come from.
        """
        return self.queue_email(
            to=to, subject=subject, body=body, correspondence=correspondence,
            class_name=class_name, case_id=case_id, cc=cc, bcc=bcc, priority=priority,
            send_after=send_after, expires_at=expires_at, template=template, language=language,
            record=(lambda conn, queued: record(conn, list(queued.ids))) if record else None,
        ).ids[0]  # fmt: skip

    def queue_email(
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
        priority: Priority = Priority.NORMAL,
        send_after: datetime | None = None,
        expires_at: datetime | None = None,
        template: bool = False,
        language: str | None = None,
        record: Callable[[Connection, QueuedEmail], None] | None = None,
    ) -> QueuedEmail:
        """:meth:`send`, answering the outbox ids, the account chosen, why, and warnings.

        An email the account encrypts for some recipients only is two rows (encrypted,
        then unencrypted). A ``class_name`` that is no case type and has no account of
        its own still sends (from a parent's account or Default), with a warning.
        ``record`` is called with the answer in the transaction that queues the email.
        """
        request = EmailRequest.addressed(
            to=to, cc=cc, bcc=bcc, correspondence=correspondence, subject=subject, body=body,
            priority=priority, send_after=send_after, expires_at=expires_at, template=template,
            language=language,
        )  # fmt: skip
        check_email(request)
        check_names(class_name=class_name, case_id=case_id)
        # Composed (templates rendered) before the writing transaction: on SQLite a
        # slow template must not hold the write lock that every other writer waits for.
        with reading(self.engine) as conn:
            with at_field("case_id"):
                case = load_case(conn, case_id, details=False) if case_id else None
            resolved_class = case.case_type if case is not None else (class_name or DEFAULT_ACCOUNT)
            ctype = self._case_type_or_none(conn, resolved_class)
            composed = self.composer.batch(conn).compose(
                request,
                class_name=resolved_class,
                case=case,
                class_group=ctype.class_group if ctype is not None else None,
                name_fields=True,
                class_field="case_id" if case is not None else "class_name",
            )
        resolution = composed.resolution
        with self.engine.begin() as conn:
            ids = [self.outbox_store.enqueue(conn, email) for email in composed.emails]
            if case is not None:
                for outbox_id, email in zip(ids, composed.emails, strict=True):
                    add_history(
                        conn,
                        case.id,
                        actor="api",
                        action="email-queued",
                        detail=(
                            f"'{email.subject}' to {', '.join(email.recipients)} queued as "
                            f"outbox #{outbox_id}{composed.note(email)}; account "
                            f"{resolution.account}: {resolution.reason}"
                        ),
                    )
            queued = explained(
                ids,
                resolution,
                class_name=resolved_class if case is not None or class_name else None,
                known_type=ctype is not None,
            )
            if record is not None:
                record(conn, queued)  # in the same transaction: see CaseService.create
        return queued

    def close_compose_pool(self) -> None:
        """Stop the processes that render large batches, if any were started."""
        with _POOL_LOCK:
            pool, self._compose_pool = self._compose_pool, None
        if pool is not None:
            pool.close()

    def compose_pool_ready(self) -> bool:
        """Whether the processes that compose large batches are up; starts them if not.

        They start in the background (a second or two); batches meanwhile are composed
        in the calling process. A service or a benchmark may call this early and wait.
        """
        if pool_processes(self.settings.compose_processes) < 2:
            return False
        return self._pool().ready()

    def _pool(self) -> ComposePool:
        with _POOL_LOCK:
            if self._compose_pool is None:
                processes = pool_processes(self.settings.compose_processes)
                self._compose_pool = ComposePool(processes)
            return self._compose_pool

    def _plan(
        self,
        batch: Composition,
        requests: Sequence[EmailRequest],
        *,
        class_name: str,
        class_group: str | None,
    ) -> Plan | None:
        """What the pool's processes need, or None when the batch is composed here."""
        if len(requests) < self.settings.compose_parallel_from:
            return None
        if pool_processes(self.settings.compose_processes) < 2:
            return None
        if not self._pool().ready():
            return None  # still starting (this batch is composed here), or unusable
        account, renderer = batch.inputs(class_name, class_group)
        if account.signing is not None:
            return None  # its key is loaded from a keystore, in this process
        if any(
            r.kind is not RecipientKind.ADDRESS
            for request in requests
            for r in (*request.to, *request.cc, *request.bcc)
        ):
            return None  # an operator's address is read from the database
        return Plan(
            snapshot=renderer.snapshot,
            records=renderer.records,
            versions=renderer.versions,
            time_limit=renderer.time_limit,
            account=account,
            resolution=batch.resolve(class_name, class_group=class_group),
            class_name=class_name,
            class_group=class_group,
        )

    def _case_type_or_none(self, conn: Connection, class_name: str) -> CaseType | None:
        try:
            return self.case_type_store.get(conn, class_name)
        except NotFoundError:
            return None

    def send_many(
        self,
        requests: Sequence[EmailRequest],
        *,
        class_name: str = DEFAULT_ACCOUNT,
        record: Callable[[Connection, list[int]], None] | None = None,
    ) -> list[int]:
        """Queue many ad-hoc emails in one transaction: all of them, or none.

        The account and the templates are looked up once for the batch. Build each
        request with :meth:`EmailRequest.addressed`. Returns every outbox id, in order;
        an error names the request it comes from (``emails.3.to.1``) and nothing is
        queued. :meth:`queue_many` also says which account was chosen and why.
        """
        if not requests:
            return []
        queued = self.queue_many(
            requests,
            class_name=class_name,
            record=(lambda conn, q: record(conn, list(q.ids))) if record else None,
        )
        return list(queued.ids)

    def queue_many(
        self,
        requests: Sequence[EmailRequest],
        *,
        class_name: str = DEFAULT_ACCOUNT,
        record: Callable[[Connection, QueuedEmail], None] | None = None,
    ) -> QueuedEmail:
        """:meth:`send_many`, answering the outbox ids, the account chosen, why, and warnings."""
        if len(requests) > MAX_SEND_MANY:
            raise MessageError(f"at most {MAX_SEND_MANY:,} emails per call, not {len(requests):,}")
        check_names(class_name=class_name)
        with reading(self.engine) as conn:  # composed outside the write lock: see send()
            ctype = self._case_type_or_none(conn, class_name)
            group = ctype.class_group if ctype is not None else None
            batch = self.composer.batch(conn)
            with at_field("class_name"):  # the batch's class, not one email's
                resolution = batch.resolve(class_name, class_group=group)
            plan = self._plan(batch, requests, class_name=class_name, class_group=group)
            pool = self._pool() if plan is not None else None
            pipelined = pool is not None and pool.usable and self.engine.dialect.name != "sqlite"
            chunks: Iterable[list[NewEmail]] = []
            if not pipelined:
                chunks = list(self._rows(batch, requests, class_name, group, plan=plan))
        with self.engine.begin() as conn:
            if pipelined:
                # Each shard is written as it comes while the pool composes the next ones
                # (not on SQLite: its one write lock would be held while composing). What
                # the pool leaves is composed in this transaction, which only reads for it.
                batch = self.composer.batch(conn)
                chunks = self._rows(batch, requests, class_name, group, plan=plan)
            ids: list[int] = []
            for rows in chunks:
                if rows:  # a shard that failed at its first request has none
                    ids.extend(self.outbox_store.enqueue_many(conn, rows))
            queued = explained(ids, resolution, class_name=class_name, known_type=ctype is not None)
            if record is not None:
                record(conn, queued)  # in the same transaction: see CaseService.create
        return queued

    def _rows(
        self,
        batch: Composition,
        requests: Sequence[EmailRequest],
        class_name: str,
        class_group: str | None,
        *,
        plan: Plan | None,
    ) -> Iterator[list[NewEmail]]:
        """The rows of ``requests`` in order, a shard at a time; the first error is raised."""
        start = 0
        pool = self._compose_pool
        if plan is not None and pool is not None and pool.usable:
            for shard in pool.compose(plan, requests):
                yield [row for rows in shard.emails for row in rows]
                start = shard.failed_at
                if shard.failed:
                    break
        # What the pool did not compose (small batches, or from a failed request on,
        # which raises here the error the serial path raises).
        rest: list[NewEmail] = []
        for number in range(start, len(requests)):
            rest.extend(_composed(batch, requests[number], number, class_name, class_group))
        if rest:
            yield rest


def _composed(
    batch: Composition,
    request: EmailRequest,
    number: int,
    class_name: str,
    class_group: str | None,
) -> tuple[NewEmail, ...]:
    """The rows of request ``number`` of a batch; its errors name it (``emails.3.to.1``)."""
    check_email(request, prefix=f"emails.{number}.")
    try:
        composed = batch.compose(
            request, class_name=class_name, class_group=class_group, name_fields=True
        )
    except InvalidFieldsError as exc:
        # The same kind of error, its fields under the request's index.
        raise prefixed(exc, f"emails.{number}.") from None
    except (ConfigurationError, NotFoundError, TemplateError, MessageError) as exc:
        raise type(exc)(f"email {number}: {exc}") from None
    return composed.emails
