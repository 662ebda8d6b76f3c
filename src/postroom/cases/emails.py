"""Composing an email for a case: recipients, rendering, account resolution, MIME."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, cast

from cryptography import x509
from sqlalchemy import Connection

from postroom.accounts import AccountStore, EmailAccount, Resolution, resolve_account
from postroom.accounts.encryption import plan_copies
from postroom.cases import store as case_store
from postroom.cases.adhoc import as_written, at_field
from postroom.cases.composed import ComposedEmail, Draft
from postroom.cases.context import first_party, render_context
from postroom.cases.languages import LanguageGroup, by_language, group_party
from postroom.cases.models import Case, CaseType
from postroom.cases.recipients import addressees, check_timing
from postroom.cases.requests import EmailRequest
from postroom.cases.threads import case_reply_to, case_subject
from postroom.correspondence import Attachment, Mailbox, OutgoingEmail, Renderer, build_message
from postroom.correspondence.mime import new_message_id
from postroom.correspondence.render import Rendered
from postroom.db.types import utcnow
from postroom.errors import ConfigurationError, MessageError, NotFoundError
from postroom.operators import Operator, OperatorStore
from postroom.outbox.models import NewEmail

__all__ = ["ComposedEmail", "Composer", "Composition", "Draft", "EmailRequest", "Seal"]


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
        seal: bool = True,
    ) -> ComposedEmail:
        """The outbox rows of ``request``; nothing is written.

        With ``name_fields`` (an ad-hoc request from a user), an error names the request's
        field it comes from (``to.1``, ``subject``; ``class_field`` for the account, unless
        it is None). ``received_from`` is who ``{sender: true}`` recipients are (a step
        answering received mail); ``headers`` are added as written (``Auto-Submitted``).
        A case's email carries its subject token and plus-addressed Reply-To when its
        case type and account ask for them. Recipients whose languages differ get an
        email each. ``seal=False`` leaves the messages unsigned and unencrypted (an email
        waiting for its reviewer is sealed when approved, from its draft).
        """
        conn = self._conn
        with at_field(class_field or "", active=name_fields and class_field is not None):
            resolution, account = self._account(class_name, class_group)
        lists = [
            addressees(
                conn,
                self._operators,
                recipients,
                case=case,
                received_from=received_from,
                field=name,
                active=name_fields,
            )
            for name, recipients in (("to", request.to), ("cc", request.cc), ("bcc", request.bcc))
        ]
        with at_field("to", active=name_fields):
            if not any(lists):
                raise MessageError("the email has no recipient")
        with at_field("subject", active=name_fields):
            if not request.correspondence and not (request.subject or "").strip():
                raise MessageError("the email has no subject: give one, or name a correspondence")
        check_timing(request, utcnow(), name_fields=name_fields)
        renderer = self._render_with()
        ctype = self._case_type(case.case_type) if case is not None else None
        record = renderer.records.get(request.correspondence or "")
        groups = by_language(
            lists,
            offered=record.languages if record is not None else None,
            case_type=ctype.language if ctype is not None else None,
            asked=request.language,
        )
        attachments: tuple[Attachment, ...] = ()
        if request.include_attachments and case is not None:
            attachments = tuple(
                Attachment(n, ct, b) for n, ct, b in case_store.attachment_contents(conn, case.id)
            )
        composed = ComposedEmail(emails=(), resolution=resolution, recipients=())
        for group in groups:
            party = group_party(group, case) or first_party(request, case)
            context = render_context(
                case, label=label, class_name=class_name, actor=actor, account=account, party=party
            )
            rendered = self._rendered(request, renderer, context, group, name_fields=name_fields)
            subject_line = rendered.subject
            if case is not None:
                subject_line = case_subject(subject_line, case, ctype)
            content = _Content(subject_line, rendered, attachments, tuple(headers))
            composed = composed.joined(
                self._copies(account, request, case, group, content, seal=seal), group
            )
        return replace(composed, resolution=resolution)

    def _rendered(
        self,
        request: EmailRequest,
        renderer: Renderer,
        context: dict[str, object],
        group: LanguageGroup,
        *,
        name_fields: bool,
    ) -> Rendered:
        language = group.choice.language
        if request.correspondence:
            with at_field("correspondence", active=name_fields):
                return renderer.render(request.correspondence, context, language=language)
        if not request.template:
            return as_written(subject=request.subject or "", body=request.body or "")
        # Each part on its own, so that an error names the part it is in.
        with at_field("subject", active=name_fields):
            subject = renderer.render_inline(
                subject=request.subject or "", body="", context=context, language=language
            )
        with at_field("body", active=name_fields):
            body = renderer.render_inline(
                subject="", body=request.body or "", context=context, language=language
            )
        return replace(body, subject=subject.subject)

    def _copies(
        self,
        account: EmailAccount,
        request: EmailRequest,
        case: Case | None,
        group: LanguageGroup,
        content: _Content,
        *,
        seal: bool,
    ) -> ComposedEmail:
        """The rows of one language's email: one, or an encrypted and an unencrypted copy."""
        to, cc, bcc = ([a.box for a in people] for people in group.lists)
        rendered = content.rendered
        declared = rendered.language is not None and bool(
            request.correspondence or request.language
        )
        now = utcnow()
        envelope: dict[str, str] = {}
        for box in (*to, *cc, *bcc):
            envelope.setdefault(box.address.lower(), box.address)
        emails: list[NewEmail] = []
        encrypted: set[str] = set()
        drafts: dict[str, Draft] = {}
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
                subject=content.subject,
                html=rendered.html,
                text=rendered.text,
                message_id=message_id,
                date=now,
                attachments=content.attachments,
                headers=(
                    *((("X-Postroom-Case", case.id),) if case is not None else ()),
                    # The language the text is in (RFC 3282), for readers and screen readers:
                    # known for a correspondence or when asked, a guess for inline text.
                    *((("Content-Language", rendered.language),) if declared else ()),
                    *content.headers,
                ),
                inline=rendered.inline,
            )
            message = build_message(outgoing)
            if seal and self._seal is not None:
                # Sealed once, here: the outbox keeps the exact bytes that are sent.
                message = self._seal(self._conn, account, message, encrypt_for=copy.certificates)
            elif seal and copy.encrypted:
                raise ConfigurationError("this composer cannot encrypt: it has no sealer")
            if copy.encrypted:
                encrypted.add(message_id)
            drafts[message_id] = Draft(outgoing, encrypt=copy.encrypted)
            emails.append(
                NewEmail(
                    message_id=message_id,
                    account=account.name,
                    subject=content.subject,
                    mail_from=account.address,
                    recipients=tuple(outgoing.envelope_recipients),
                    message=message,
                    case_id=case.id if case is not None else None,
                    priority=request.priority,
                    send_after=request.send_after,
                    expires_at=request.expires_at,
                    correspondence=request.correspondence or None,
                    version=rendered.version,
                    language=rendered.language,
                )
            )
        return ComposedEmail(
            emails=tuple(emails),
            resolution=cast(Resolution, None),
            recipients=(*to, *cc, *bcc),
            encrypted=frozenset(encrypted),
            drafts=drafts,
        )


@dataclass(frozen=True, slots=True)
class _Content:
    subject: str
    rendered: Rendered
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]
