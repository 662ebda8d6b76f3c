"""What to send: recipients and either a correspondence or inline content."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from postroom.cases.adhoc import addressed_recipients, invalid
from postroom.cases.models import Recipient
from postroom.errors import FieldIssue, MessageError
from postroom.languages import check_language
from postroom.outbox.status import Priority


@dataclass(frozen=True, slots=True)
class EmailRequest:
    """What to send: recipients and either a correspondence name or inline content.

    ``template`` says whether an inline subject and body are templates: they are in a
    case type's steps (built with this constructor); an ad-hoc request from
    :meth:`addressed` is sent as written unless it asks for ``template=True``.
    ``language`` asks for that language for every recipient (else each recipient's own).
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
    language: str | None = None

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
        language: str | None = None,
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
        if language is not None:
            try:
                language = check_language(language)
            except ValueError as exc:
                issues.append(FieldIssue("language", str(exc)))
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
            language=language,
        )
