"""What composing an email gives: its outbox rows, their drafts and languages, and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from postroom.accounts import Resolution
from postroom.cases.languages import LanguageChoice, LanguageGroup
from postroom.correspondence import Mailbox, OutgoingEmail
from postroom.outbox.models import NewEmail


@dataclass(frozen=True, slots=True)
class Draft:
    """A row's message before sealing: rebuilt with a reviewer's text, then sealed."""

    email: OutgoingEmail
    encrypt: bool = False  # sealed for its recipients' certificates when approved


@dataclass(frozen=True, slots=True)
class ComposedEmail:
    """The outbox rows of one email and the account resolution that chose its sender.

    One row per language its recipients read, each one, or two when the account
    encrypts and some recipients have no certificate: an encrypted copy and, by the
    account's policy, an unencrypted one.
    """

    emails: tuple[NewEmail, ...]
    resolution: Resolution
    recipients: tuple[Mailbox, ...]
    encrypted: frozenset[str] = frozenset()  # message ids of the encrypted copies
    drafts: dict[str, Draft] = field(default_factory=dict)  # by message id
    languages: dict[str, LanguageChoice] = field(default_factory=dict)  # by message id

    def note(self, email: NewEmail) -> str:
        """`` (encrypted)``, `` (unencrypted)`` or nothing, for history lines."""
        if email.message_id in self.encrypted:
            return " (encrypted)"
        return " (unencrypted: no certificate)" if self.encrypted else ""

    def rendering(self, email: NewEmail) -> str:
        """What the email was rendered from, for history lines: ``; correspondence 'X'
        version 3, in de (Customer's language)``; nothing for text sent as written."""
        parts = []
        if email.correspondence is not None:
            version = f" version {email.version}" if email.version is not None else ""
            parts.append(f"correspondence '{email.correspondence}'{version}")
        choice = self.languages.get(email.message_id)
        if choice is not None and email.language is not None:
            parts.append(f"in {email.language} ({choice.reason})")
        return "; " + ", ".join(parts) if parts else ""

    def joined(self, more: ComposedEmail, group: LanguageGroup) -> ComposedEmail:
        """These rows and ``more``, the rows of one more language."""
        return ComposedEmail(
            emails=(*self.emails, *more.emails),
            resolution=self.resolution,
            recipients=(*self.recipients, *more.recipients),
            encrypted=self.encrypted | more.encrypted,
            drafts={**self.drafts, **more.drafts},
            languages={
                **self.languages,
                **{e.message_id: group.choice for e in more.emails},
            },
        )
