"""Composing an email for a case: recipients, rendering, account resolution, MIME."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, cast

from cryptography import x509
from sqlalchemy import Connection

from postroom.accounts import AccountStore, EmailAccount, Resolution, resolve_account
from postroom.accounts.encryption import plan_copies
from postroom.cases import store as case_store
from postroom.cases.adhoc import addressed_recipients, as_written, at_field, invalid
from postroom.cases.context import first_party, render_context
from postroom.cases.models import Case, CaseType, Recipient, RecipientKind
from postroom.cases.threads import case_reply_to, case_subject
from postroom.correspondence import Attachment, Mailbox, OutgoingEmail, Renderer, build_message
from postroom.correspondence.mime import new_message_id
from postroom.correspondence.render import Rendered
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, FieldIssue, MessageError, NotFoundError
from postroom.operators import Operator, OperatorStore
from postroom.outbox.models import NewEmail
from postroom.outbox.status import Priority
from postroom.validation import check_address


@dataclass(frozen=True, slots=True)
class EmailRequest:
    """What to send: recipients and either a correspondence name or inline content.

    ``template`` says whether an inline subject and body are templates: they are in a
    case type's steps (built with this constructor); an ad-hoc request from
    :meth:`addressed` is sent as written unless it asks for ``template=True``.
    """

    to: Sequence[Recipient] = ()
    cc: Sequence[Recipient] = ()
    bcc: Sequence[Recipient] = ()
    correspondence: str | None = None
    subject: str | None = None
    body: str | None = None
    include_attachments: bool = False
    priority: Priority = Priority.NORMAL
    send_after: datetime | None = None  # a scheduled send: not before this time
    expires_at: datetime | None = None  # never sent at or after this time
    template: bool = True

    @classmethod
    def addressed(
        cls,
        *,
        to: Sequence[str],
        cc: Sequence[str] = (),
        bcc: Sequence[str] = (),
        correspondence: str | None = None,
        subject: str | None = None,
        body: str | None = None,
        priority: Priority = Priority.NORMAL,
        send_after: datetime | None = None,
        expires_at: datetime | None = None,
        template: bool = False,
    ) -> EmailRequest:
        """An ad-hoc request to plain addresses, its subject and body as written.

        A bad address is an :class:`InvalidFieldsError` (also a :class:`MessageError`)
        naming it, e.g. ``to.1``; ``template=True`` renders subject and body as templates.
        """
        issues: list[FieldIssue] = []
        lists = {
            name: addressed_recipients(name, values, issues)
            for name, values in (("to", to), ("cc", cc), ("bcc", bcc))
        }
        if issues:
            raise invalid(MessageError, issues)
        return cls(
            to=lists["to"],
            cc=lists["cc"],
            bcc=lists["bcc"],
            correspondence=correspondence,
            subject=subject,
            body=body,
            priority=priority,
            send_after=send_after,
            expires_at=expires_at,
            template=template,
        )


@dataclass(frozen=True, slots=True)
class ComposedEmail:
    """The outbox rows of one email and the account resolution that chose its sender.

    One row, or two when the account encrypts and some recipients have no
    certificate: an encrypted copy and, by the account's policy, an unencrypted one.
    """

    emails: tuple[NewEmail, ...]
    resolution: Resolution
    recipients: tuple[Mailbox, ...]
    encrypted: frozenset[str] = frozenset()  # message ids of the encrypted copies

    def note(self, email: NewEmail) -> str:
        """`` (encrypted)``, `` (unencrypted)`` or nothing, for history lines."""
        if email.message_id in self.encrypted:
            return " (encrypted)"
        return " (unencrypted: no certificate)" if self.encrypted else ""


class Seal(Protocol):
    """Signs and encrypts an account's message (see :class:`postroom.signing.Sealer`)."""

    def __call__(
        self,
        conn: Connection,
        account: EmailAccount,
        message: bytes,
        *,
        encrypt_for: Sequence[x509.Certificate] = (),
    ) -> bytes: ...


class Composer:
    """Turns an :class:`EmailRequest` for a case (or a bare class) into outbox bytes."""

    def __init__(
        self,
        *,
        accounts: AccountStore,
        operators: OperatorStore,
        renderer: Callable[[Connection], Renderer],
        seal: Seal | None = None,
    ) -> None:
        self._accounts = accounts
        self._operators = operators
        self._renderer = renderer
        self._seal = seal

    def batch(self, conn: Connection) -> Composition:
        """Composition in the caller's transaction: accounts and templates looked up once."""
        return Composition(
            conn,
            accounts=self._accounts,
            operators=self._operators,
            renderer=self._renderer,
            seal=self._seal,
        )


class Composition:
    """Composes emails in one transaction, looking each account and the templates up once.

    What it remembers is read in that transaction, so it holds for as long as the
    transaction does; it is not a cache across transactions.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        accounts: AccountStore,
        operators: OperatorStore,
        renderer: Callable[[Connection], Renderer],
        seal: Seal | None,
    ) -> None:
        self._conn = conn
        self._account_store = accounts
        self._operators = operators
        self._renderer_for = renderer
        self._seal = seal
        self._accounts: dict[tuple[str, str | None], tuple[Resolution, EmailAccount]] = {}
        self._case_types: dict[str, CaseType | None] = {}
        self._renderer: Renderer | None = None

    @classmethod
    def detached(
        cls,
        renderer: Renderer,
        *,
        composer: Composer,
        chosen: tuple[str, str | None, Resolution, EmailAccount],
    ) -> Composition:
        """A composition that reads nothing, for a process of the composing pool.

        ``chosen`` is the batch's class, group, resolution and account, looked up by the
        caller; the caller also checked that nothing else needs the database (plain
        addresses, no case, no signing key to load).
        """
        # Never read: every lookup that would use it is answered from what was given.
        no_database = cast(Connection, None)
        composition = cls(
            no_database,
            accounts=composer._accounts,
            operators=composer._operators,
            renderer=composer._renderer,
            seal=composer._seal,
        )
        class_name, class_group, resolution, account = chosen
        composition._accounts[(class_name, class_group)] = (resolution, account)
        composition._renderer = renderer
        return composition

    def resolve(self, class_name: str, *, class_group: str | None = None) -> Resolution:
        """The account that sends for ``class_name``, and why (:class:`NoAccountError`)."""
        return self._account(class_name, class_group)[0]

    def inputs(self, class_name: str, class_group: str | None) -> tuple[EmailAccount, Renderer]:
        """The account that sends for ``class_name`` and the renderer, read once here."""
        return self._account(class_name, class_group)[1], self._render_with()

    def _account(self, class_name: str, class_group: str | None) -> tuple[Resolution, EmailAccount]:
        key = (class_name, class_group)
        found = self._accounts.get(key)
        if found is None:
            store, conn = self._account_store, self._conn
            resolution = resolve_account(
                class_name, lambda n: store.exists(conn, n), class_group=class_group
            )
            found = self._accounts[key] = (resolution, store.get(conn, resolution.account))
        return found

    def _case_type(self, class_name: str) -> CaseType | None:
        if class_name not in self._case_types:
            try:
                found: CaseType | None = case_store.CaseTypeStore().get(self._conn, class_name)
            except NotFoundError:
                found = None
            self._case_types[class_name] = found
        return self._case_types[class_name]

    def _render_with(self) -> Renderer:
        if self._renderer is None:
            self._renderer = self._renderer_for(self._conn)
        return self._renderer

    def compose(
        self,
        request: EmailRequest,
        *,
        class_name: str,
        case: Case | None = None,
        actor: Operator | None = None,
        label: str = "",
        class_group: str | None = None,
        name_fields: bool = False,
        class_field: str | None = "class_name",
        received_from: Mailbox | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> ComposedEmail:
        """The outbox rows of ``request``; nothing is written.

        With ``name_fields`` (an ad-hoc request from a user), an error names the request's
        field it comes from (``to.1``, ``subject``; ``class_field`` for the account, unless
        it is None). ``received_from`` is who ``{sender: true}`` recipients are (a step
        answering received mail); ``headers`` are added as written (``Auto-Submitted``).
        A case's email carries its subject token and plus-addressed Reply-To when its
        case type and account ask for them.
        """
        conn = self._conn
        with at_field(class_field or "", active=name_fields and class_field is not None):
            resolution, account = self._account(class_name, class_group)
        lists = []
        for name, recipients in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc)):
            lists.append(
                self._mailboxes(
                    conn, recipients, case, received_from, field=name, active=name_fields
                )
            )
        to, cc, bcc = lists
        with at_field("to", active=name_fields):
            if not (to or cc or bcc):
                raise MessageError("the email has no recipient")
        with at_field("subject", active=name_fields):
            if not request.correspondence and not (request.subject or "").strip():
                raise MessageError("the email has no subject: give one, or name a correspondence")
        _check_timing(request, utcnow(), name_fields=name_fields)
        context = render_context(
            case,
            label=label,
            class_name=class_name,
            actor=actor,
            account=account,
            party=first_party(request, case),
        )
        renderer = self._render_with()
        if request.correspondence:
            with at_field("correspondence", active=name_fields):
                rendered = renderer.render(request.correspondence, context)
        elif not request.template:
            rendered = as_written(subject=request.subject or "", body=request.body or "")
        else:
            # Each part on its own, so that an error names the part it is in.
            with at_field("subject", active=name_fields):
                subject = renderer.render_inline(
                    subject=request.subject or "", body="", context=context
                )
            with at_field("body", active=name_fields):
                body = renderer.render_inline(subject="", body=request.body or "", context=context)
            rendered = Rendered(subject=subject.subject, html=body.html, text=body.text)
        subject_line = rendered.subject
        if case is not None:
            subject_line = case_subject(subject_line, case, self._case_type(case.case_type))
        attachments: tuple[Attachment, ...] = ()
        if request.include_attachments and case is not None:
            attachments = tuple(
                Attachment(n, ct, b) for n, ct, b in case_store.attachment_contents(conn, case.id)
            )
        now = utcnow()
        envelope: dict[str, str] = {}
        for box in (*to, *cc, *bcc):
            envelope.setdefault(box.address.lower(), box.address)
        emails = []
        encrypted = set()
        for copy in plan_copies(account.encryption, tuple(envelope.values()), now=now):
            # Each copy names only its own recipients: over Graph the headers are the
            # envelope, and an unencrypted copy must not reach an encrypted recipient.
            keep = {a.lower() for a in copy.recipients}
            message_id = new_message_id(account.address)
            outgoing = OutgoingEmail(
                sender=Mailbox(account.address, account.display_name),
                to=tuple(b for b in to if b.address.lower() in keep),
                cc=tuple(b for b in cc if b.address.lower() in keep),
                bcc=tuple(b for b in bcc if b.address.lower() in keep),
                reply_to=case_reply_to(account, case),
                subject=subject_line,
                html=rendered.html,
                text=rendered.text,
                message_id=message_id,
                date=now,
                attachments=attachments,
                headers=(
                    *((("X-Postroom-Case", case.id),) if case is not None else ()),
                    *headers,
                ),
            )
            message = build_message(outgoing)
            if self._seal is not None:
                # Sealed once, here: the outbox keeps the exact bytes that are sent.
                message = self._seal(conn, account, message, encrypt_for=copy.certificates)
            elif copy.encrypted:
                raise ConfigurationError("this composer cannot encrypt: it has no sealer")
            if copy.encrypted:
                encrypted.add(message_id)
            emails.append(
                NewEmail(
                    message_id=message_id,
                    account=account.name,
                    subject=subject_line,
                    mail_from=account.address,
                    recipients=tuple(outgoing.envelope_recipients),
                    message=message,
                    case_id=case.id if case is not None else None,
                    priority=request.priority,
                    send_after=request.send_after,
                    expires_at=request.expires_at,
                )
            )
        return ComposedEmail(
            emails=tuple(emails),
            resolution=resolution,
            recipients=(*to, *cc, *bcc),
            encrypted=frozenset(encrypted),
        )

    def _mailboxes(
        self,
        conn: Connection,
        recipients: Sequence[Recipient],
        case: Case | None,
        received_from: Mailbox | None,
        *,
        field: str,
        active: bool,
    ) -> list[Mailbox]:
        boxes = []
        for index, r in enumerate(recipients):
            with at_field(f"{field}.{index}", active=active):
                boxes.append(self._mailbox(conn, r, case, received_from))
        return boxes

    def _mailbox(
        self, conn: Connection, r: Recipient, case: Case | None, received_from: Mailbox | None
    ) -> Mailbox:
        if r.kind is RecipientKind.ADDRESS:
            # The normalised form: the envelope must not get the raw value (with, say,
            # a trailing U+2028 that the validator stripped).
            try:
                return Mailbox(check_address(r.value, what="recipient address"))
            except ValueError as exc:
                raise MessageError(str(exc)) from None
        if r.kind is RecipientKind.OPERATOR:
            operator = self._operators.get(conn, r.value)
            if not operator.email:
                raise MessageError(f"operator {operator.id} has no email address")
            return Mailbox(operator.email, operator.name)
        if r.kind is RecipientKind.SENDER:
            if received_from is None:
                raise MessageError("{sender: true} needs a received email with a sender address")
            return received_from
        if case is None:
            raise MessageError(f"a {r.kind} recipient needs a case")
        if r.kind is RecipientKind.PARTY:
            party = next((p for p in case.parties if p.role == r.value), None)
            if party is None:
                raise MessageError(f"case {case.id} has no {r.value} work party")
            return Mailbox(party.address, party.name)
        value = case.data.get(r.value)
        if not isinstance(value, str) or not value:
            raise MessageError(f"case {case.id} has no address in field {r.value!r}")
        try:
            return Mailbox(check_address(value, what=f"field {r.value}"))
        except ValueError as exc:
            raise MessageError(str(exc)) from None


def _check_timing(request: EmailRequest, now: datetime, *, name_fields: bool) -> None:
    for name in ("send_after", "expires_at"):
        value = getattr(request, name)
        with at_field(name, active=name_fields):
            if value is not None and value.tzinfo is None:
                raise MessageError(f"{name} needs a time zone (e.g. 2026-12-01T09:00:00+01:00)")
    if request.expires_at is None:
        return
    with at_field("expires_at", active=name_fields):
        if request.expires_at <= now:
            raise MessageError(f"expires_at {request.expires_at.isoformat()} has already passed")
    with at_field("send_after", active=name_fields):
        if request.send_after is not None and request.send_after >= request.expires_at:
            raise MessageError("send_after must come before expires_at: it would never be sent")
