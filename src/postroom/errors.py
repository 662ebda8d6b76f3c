"""The exception tree of Postroom.

Every error Postroom raises derives from :class:`PostroomError`, and most also
derive from the built-in that matches their meaning, so callers may catch
either::

    PostroomError
    ├── ConfigurationError (ValueError)        a record, file or setting is wrong
    │   ├── UnknownParameterError              an advanced parameter nobody knows
    │   ├── InvalidTextError                   text not valid Unicode, or a control
    │   │                                      character its field forbids
    │   └── InvalidFieldsError                 named fields of a record are wrong
    ├── NotFoundError (LookupError)            a named record does not exist
    │   └── NoAccountError                     no account for a class, and no Default
    ├── TemplateError (ValueError)             a correspondence does not render
    │   ├── TemplateSecurityError              the sandbox refused an expression
    │   └── TemplateLimitError                 a rendering went past a size or time limit
    ├── MessageError (ValueError)              a header or address would be unsafe
    ├── StateError (RuntimeError)              a status change the table forbids
    ├── SecretError                            a secret cannot be decrypted
    ├── DatabaseFatalError (RuntimeError)      the database can never work as it is
    └── DeliveryError                          sending failed (carries SMTP codes)
        ├── TransientDeliveryError (ConnectionError)  try again later
        │   ├── ThrottledError                 the service asked to wait (Retry-After)
        │   └── OutcomeUnknownError (TimeoutError)  sent, but no answer came back
        ├── PermanentDeliveryError             retrying cannot help
        └── CredentialsRejectedError (PermissionError)  the identity provider refused
                                               the account's credentials: it is held

Messages never contain secret values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PostroomError(Exception):
    """Base of every error raised by Postroom."""


class ConfigurationError(PostroomError, ValueError):
    """A record, configuration file or setting is invalid."""


class UnknownParameterError(ConfigurationError):
    """An advanced parameter is not one Postroom understands."""


class InvalidTextError(ConfigurationError):
    """Text is not valid Unicode, or holds a control character its field forbids."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FieldIssue:
    """One wrong field: where it is (dotted, e.g. ``data.amount`` or ``to.1``) and why."""

    field: str
    message: str


class InvalidFieldsError(ConfigurationError):
    """One or more named fields are wrong; ``issues`` lists each with its message."""

    def __init__(
        self, issues: Sequence[FieldIssue], *, what: str = "", message: str | None = None
    ) -> None:
        self.issues = tuple(issues)
        listed = "; ".join(f"{i.field}: {i.message}" for i in self.issues)
        # ``message`` keeps a text callers have always printed, while the fields are named.
        super().__init__(message or (f"{what}: {listed}" if what else listed))


_LOCATED: dict[type[PostroomError], type[InvalidFieldsError]] = {}


def invalid_fields(
    kind: type[PostroomError], issues: Sequence[FieldIssue], *, message: str | None = None
) -> InvalidFieldsError:
    """An error of ``kind`` (say :class:`MessageError`) that also names its ``issues``.

    It is both: callers catching ``kind`` still catch it, and the API lists its fields.
    One subclass per kind is made once.
    """
    located = _LOCATED.get(kind)
    if located is None:
        name = f"Located{kind.__name__}"
        located = _LOCATED[kind] = type(name, (InvalidFieldsError, kind), {"__module__": __name__})
    return located(issues, message=message)


class NotFoundError(PostroomError, LookupError):
    """A named record does not exist."""


class NoAccountError(NotFoundError):
    """No email account matches a class and there is no Default account."""


class TemplateError(PostroomError, ValueError):
    """A correspondence template failed to render."""


class TemplateSecurityError(TemplateError):
    """The template sandbox refused an unsafe expression."""


class TemplateLimitError(TemplateError):
    """A rendering went past a size, memory or time limit and was stopped."""


class MessageError(PostroomError, ValueError):
    """A message cannot be built safely (bad address, header injection...)."""


class StateError(PostroomError, RuntimeError):
    """A status change is not allowed from the current status."""


class ExistsError(StateError):
    """A record to be created exists already."""


class SecretError(PostroomError):
    """A stored secret cannot be decrypted with the configured key."""


class DatabaseFatalError(PostroomError, RuntimeError):
    """The database cannot work as it is: a damaged file, a schema of another version."""


class DeliveryError(PostroomError):
    """Delivery of a message failed; carries the server's reply when there was one."""

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        stage: str | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.enhanced = enhanced
        self.stage = stage

    def __str__(self) -> str:
        reply = " ".join(str(p) for p in (self.code, self.enhanced) if p)
        where = f" during {self.stage}" if self.stage else ""
        return f"{reply} {self.text}{where}".strip() if reply else f"{self.text}{where}"


class TransientDeliveryError(DeliveryError, ConnectionError):
    """Delivery failed for a reason that may pass; the message will be retried."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for a reason retrying cannot fix."""


class ThrottledError(TransientDeliveryError):
    """The service asked to wait ``retry_after`` seconds; waiting is not a failed attempt."""

    def __init__(self, text: str, *, retry_after: float, code: int | None = None) -> None:
        super().__init__(text, code=code, stage="throttled")
        self.retry_after = retry_after


class OutcomeUnknownError(TransientDeliveryError, TimeoutError):
    """The request was sent but no answer came: the message may or may not have gone."""


class CredentialsRejectedError(DeliveryError, PermissionError):
    """The identity provider refused the account's credentials; its emails wait, held."""
