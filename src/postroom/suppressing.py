"""The suppression list as the facade offers it: list, add, remove.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine

from postroom.accounts import AccountStore
from postroom.errors import ConfigurationError, FieldIssue, invalid_fields
from postroom.settings import Settings
from postroom.suppression import EVERYWHERE, Suppression, SuppressionReason, SuppressionStore
from postroom.text import check_line
from postroom.validation import check_address

log = logging.getLogger("postroom")
MAX_DETAIL = 500  # a note for people, not a document
MAX_CREATED_BY = 128  # the column's width


class Suppressing:
    """The suppression methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    suppression_store: SuppressionStore
    account_store: AccountStore

    def suppressions(
        self,
        *,
        scope: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Suppression]:
        """Suppressed addresses, newest first.

        ``scope`` is an account's name, or ``*`` for the entries that hold for every
        account; ``search`` matches part of the address.
        """
        if scope is not None:
            check_line(scope, field="account")
        if search:
            check_line(search, field="search")
        with self.engine.connect() as conn:
            return self.suppression_store.list(
                conn, scope=scope, search=search or None, limit=limit, offset=offset
            )

    def suppress(
        self,
        address: str,
        *,
        scope: str = EVERYWHERE,
        detail: str = "",
        operator: str | None = None,
    ) -> tuple[Suppression, bool]:
        """Suppress ``address`` by hand for an account (``scope``) or everywhere (``*``).

        Returns the entry and whether it is new: an address already suppressed in that
        scope keeps its entry (and its reason) as it is.
        """
        key = _address(address)
        detail = check_line(detail.strip(), field="detail")
        if len(detail) > MAX_DETAIL:
            raise _located("detail", f"at most {MAX_DETAIL} characters", named=True)
        created_by = (operator or "")[:MAX_CREATED_BY] or None
        with self.engine.begin() as conn:
            self._check_scope(conn, scope)
            entry, new = self.suppression_store.suppress(
                conn,
                key,
                scope=scope,
                reason=SuppressionReason.MANUAL,
                detail=detail,
                created_by=created_by,
            )
        if new:
            log.info("%s suppressed for %s by %s", key, _words(scope), created_by or "someone")
        return entry, new

    def unsuppress(self, address: str, *, scope: str | None = None) -> int:
        """Remove ``address`` from the list: from one scope, or from every scope (None).

        :class:`~postroom.errors.NotFoundError` when it is not suppressed there.
        """
        # Not checked as an address: whatever a delivery report put on the list (an
        # internationalised address, say) can be taken off it again.
        key = check_line(address, field="address").strip().lower()
        if not key:
            raise ConfigurationError("address: give the address to remove")
        if scope is not None:
            check_line(scope, field="account")
        with self.engine.begin() as conn:
            removed = self.suppression_store.remove(conn, key, scope=scope)
        log.info("%s no longer suppressed (%d entries removed)", key, removed)
        return removed

    def _check_scope(self, conn: Connection, scope: str) -> None:
        check_line(scope, field="account")
        if scope != EVERYWHERE and not self.account_store.exists(conn, scope):
            raise _located("account", f"no email account named {scope!r}", named=True)


def chosen_scope(account: str | None, *, everywhere: bool) -> str | None:
    """The scope an ``--account`` / ``--everywhere`` pair names (None: neither)."""
    if account is not None and everywhere:
        raise ConfigurationError("give an account or everywhere, not both")
    return EVERYWHERE if everywhere else account


def _address(value: str) -> str:
    try:
        return check_address(value).lower()
    except ValueError as exc:
        raise _located("address", str(exc)) from None


def _located(field: str, message: str, *, named: bool = False) -> ConfigurationError:
    """An error naming its field (the API lists it); ``named``: the text starts with it."""
    text = f"{field}: {message}" if named else message
    return invalid_fields(ConfigurationError, [FieldIssue(field, message)], message=text)


def _words(scope: str) -> str:
    return "every account" if scope == EVERYWHERE else f"account {scope}"
