"""Which account sends an email for a case class: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from postroom.accounts.models import DEFAULT_ACCOUNT
from postroom.errors import NoAccountError


@dataclass(frozen=True, slots=True)
class Resolution:
    """The chosen account and the reason, as written into the case history."""

    account: str
    tried: tuple[str, ...]

    @property
    def reason(self) -> str:
        skipped = [name for name in self.tried if name != self.account]
        if self.account == DEFAULT_ACCOUNT and skipped:
            return f"no account named {', '.join(skipped)}; fell back to {DEFAULT_ACCOUNT}"
        if skipped:
            return f"matches class {self.account} (no account named {', '.join(skipped)})"
        if self.account == DEFAULT_ACCOUNT:
            return f"{DEFAULT_ACCOUNT} account"
        return f"matches class {self.account}"


def candidate_accounts(class_name: str, class_group: str | None = None) -> list[str]:
    """The class, each parent class in turn, the class group (work pool), then Default.

    ``MyOrg-Mortgage-Work-MortgageRequest`` → ``MyOrg-Mortgage-Work-MortgageRequest``,
    ``MyOrg-Mortgage-Work``, ``MyOrg-Mortgage``, ``MyOrg``, ``Default``.
    """
    parts = [p for p in class_name.split("-") if p]
    names = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if class_group and class_group not in names:
        names.append(class_group)
    if DEFAULT_ACCOUNT not in names:
        names.append(DEFAULT_ACCOUNT)
    return names


def resolve_account(
    class_name: str, exists: Callable[[str], bool], *, class_group: str | None = None
) -> Resolution:
    """The first candidate for which ``exists`` is true, or :class:`NoAccountError`."""
    tried: list[str] = []
    for name in candidate_accounts(class_name, class_group):
        tried.append(name)
        if exists(name):
            return Resolution(account=name, tried=tuple(tried))
    raise NoAccountError(
        f"no email account for class {class_name}: create one named "
        f"{' or '.join(tried[:-1]) or class_name}, or a {DEFAULT_ACCOUNT} account"
    )
