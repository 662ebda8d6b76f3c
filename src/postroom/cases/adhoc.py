"""Ad-hoc email requests: content as written, and errors naming their field.

An ad-hoc subject and body are sent as written (no template syntax is read) unless the
request asks for a template. Errors of a request name the field they come from
(``to.1``, ``subject``).

An error raised deep in composing (a bad address, a template that does not render, a
correspondence that does not exist) keeps its kind — callers catching
:class:`~postroom.errors.MessageError` or :class:`~postroom.errors.TemplateError` still
catch it — and is also an :class:`~postroom.errors.InvalidFieldsError`, so that the API
answers it with the field (``body.to.1``) and the CLI prints the field with the message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from postroom.accounts import DEFAULT_ACCOUNT, Resolution
from postroom.cases.models import Recipient, RecipientKind
from postroom.correspondence.html2text import html_to_text
from postroom.correspondence.render import Rendered
from postroom.errors import (
    ConfigurationError,
    FieldIssue,
    InvalidFieldsError,
    InvalidTextError,
    MessageError,
    NotFoundError,
    PostroomError,
    TemplateError,
    invalid_fields,
)
from postroom.validation import single_line

# What a request can get wrong; a SecretError or a DeliveryError is the service's.
_REQUEST_ERRORS = (ConfigurationError, MessageError, NotFoundError, TemplateError)
_LOCATED = (InvalidFieldsError, InvalidTextError)  # these name their field already


def invalid(kind: type[PostroomError], issues: Sequence[FieldIssue]) -> InvalidFieldsError:
    """An error of ``kind`` (say :class:`~postroom.errors.MessageError`) naming ``issues``."""
    return invalid_fields(kind, issues)


def located(exc: PostroomError, field: str) -> PostroomError:
    """``exc`` as an error of the same kind that names ``field``.

    Only errors in what the request says are located; one already located, or of the
    service (a secret it cannot read, a delivery), is returned unchanged.
    """
    if isinstance(exc, _LOCATED) or not isinstance(exc, _REQUEST_ERRORS):
        return exc
    return invalid(type(exc), [FieldIssue(field, str(exc))])


def prefixed(exc: InvalidFieldsError, prefix: str) -> InvalidFieldsError:
    """``exc`` with each field under ``prefix`` (``emails.3.`` + ``to.1``), of the same kind."""
    issues = [FieldIssue(prefix + i.field, i.message) for i in exc.issues]
    return type(exc)(issues)


@contextlib.contextmanager
def at_field(field: str, *, active: bool = True) -> Iterator[None]:
    """Postroom errors raised inside name ``field`` (when ``active``)."""
    try:
        yield
    except _REQUEST_ERRORS as exc:
        if not active or isinstance(exc, _LOCATED):
            raise
        raise located(exc, field) from None


def as_written(*, subject: str, body: str) -> Rendered:
    """An ad-hoc subject and HTML body as the user wrote them: no template syntax is read.

    The body is HTML, as a template's is, and the text part is derived from it; the
    subject is folded onto one line (the header checks still apply when it is built).
    """
    return Rendered(subject=single_line(subject), html=body, text=html_to_text(body))


def addressed_recipients(
    name: str, values: Sequence[str], issues: list[FieldIssue]
) -> list[Recipient]:
    """Address recipients of one list (``to``); each bad one is an issue naming its index."""
    recipients = []
    for index, value in enumerate(values):
        try:
            recipients.append(Recipient(kind=RecipientKind.ADDRESS, value=value))
        except ValidationError as exc:
            message = "; ".join(
                str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors(include_url=False, include_input=False)
            )
            issues.append(FieldIssue(f"{name}.{index}", message))
    return recipients


@dataclass(frozen=True, slots=True)
class QueuedEmail:
    """What an ad-hoc email became: its outbox rows, the account chosen, why, and warnings."""

    ids: tuple[int, ...]
    account: str
    reason: str
    warnings: tuple[str, ...] = ()


def explained(
    ids: Sequence[int], resolution: Resolution, *, class_name: str | None, known_type: bool
) -> QueuedEmail:
    """The outbox ``ids`` with the account ``resolution`` for ``class_name`` in words.

    A class that is no case type and has no account of its own is most often a typo: it
    still sends (from a parent's account or Default), and a warning says so.
    """
    if class_name is None:
        reason = f"no case and no class given: the {DEFAULT_ACCOUNT} account"
    else:
        reason = f"class {class_name}: {resolution.reason}"
    warnings: list[str] = []
    if class_name is not None and not known_type and resolution.account != class_name:
        warnings.append(
            f"class {class_name} is no case type and has no account of its own: "
            f"sent from the {resolution.account} account; check the class name"
        )
    return QueuedEmail(
        ids=tuple(ids), account=resolution.account, reason=reason, warnings=tuple(warnings)
    )
