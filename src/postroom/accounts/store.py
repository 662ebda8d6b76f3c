"""Persistence of email accounts; passwords are encrypted before they reach the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select

from postroom.accounts.limits import Limits, effective_limits
from postroom.accounts.models import EmailAccount, Protocol
from postroom.accounts.presets import Provider
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.errors import NotFoundError
from postroom.records import Change, upsert
from postroom.security import SecretBox


class AccountStore:
    """Reads and writes :class:`EmailAccount` records."""

    def __init__(self, secrets: SecretBox) -> None:
        self._secrets = secrets

    def _to_row(self, account: EmailAccount) -> dict[str, Any]:
        row = account.model_dump(mode="json", exclude={"password", "dkim", "inbound"})
        row["password"] = (
            self._secrets.encrypt(account.password.get_secret_value())
            if account.password is not None
            else None
        )
        dkim = account.dkim
        row["dkim"] = None
        row["dkim_private_key"] = None
        if dkim is not None:
            row["dkim"] = {"domain": dkim.domain, "selector": dkim.selector}
            row["dkim_private_key"] = self._secrets.encrypt(dkim.private_key.get_secret_value())
        inbound = account.inbound
        row["inbound"] = None
        row["inbound_password"] = None
        if inbound is not None:
            row["inbound"] = inbound.model_dump(mode="json", exclude={"password"})
            if inbound.password is not None:
                row["inbound_password"] = self._secrets.encrypt(inbound.password.get_secret_value())
        return row

    def _from_row(self, row: Any) -> EmailAccount:
        data = dict(row._mapping)
        data.pop("created_at", None)
        data.pop("updated_at", None)
        stored = data.pop("password")
        if stored is not None:
            data["password"] = self._secrets.decrypt(
                stored, what=f"the password of account {data['name']}"
            )
        dkim_key = data.pop("dkim_private_key")
        if data.get("dkim") and dkim_key is not None:
            key = self._secrets.decrypt(dkim_key, what=f"the DKIM key of account {data['name']}")
            data["dkim"] = {**data["dkim"], "private_key": key}
        inbound_password = data.pop("inbound_password")
        if data.get("inbound") and inbound_password is not None:
            secret = self._secrets.decrypt(
                inbound_password, what=f"the inbound password of account {data['name']}"
            )
            data["inbound"] = {**data["inbound"], "password": secret}
        return EmailAccount.model_validate(data)

    def get(self, conn: Connection, name: str) -> EmailAccount:
        row = conn.execute(select(tables.accounts).where(tables.accounts.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"no email account named {name!r}")
        return self._from_row(row)

    def limits(self, conn: Connection, name: str) -> Limits:
        """The account's effective limits, read without loading (and decrypting) the rest.

        Read on every claim: a whole account costs a decryption per secret.
        """
        a = tables.accounts
        query = select(a.c.provider, a.c.protocol, a.c.limits).where(a.c.name == name)
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no email account named {name!r}")
        given = Limits.model_validate(row.limits) if row.limits else None
        return effective_limits(
            provider=Provider(row.provider), graph=row.protocol == Protocol.GRAPH, given=given
        )

    def exists(self, conn: Connection, name: str) -> bool:
        query = select(tables.accounts.c.name).where(tables.accounts.c.name == name)
        return conn.execute(query).first() is not None

    def list(self, conn: Connection) -> list[EmailAccount]:
        rows = conn.execute(select(tables.accounts).order_by(tables.accounts.c.name))
        return [self._from_row(row) for row in rows]

    def put(self, conn: Connection, account: EmailAccount) -> Change:
        """Insert or update; ``unchanged`` when the stored record is equal."""
        now = utcnow()
        try:
            same: bool | None = _same(self.get(conn, account.name), account)
        except NotFoundError:
            same = None
        return upsert(
            conn,
            tables.accounts,
            key=tables.accounts.c.name,
            same=same,
            values={**self._to_row(account), "updated_at": now},
            on_insert={"created_at": now},
        )

    def delete(self, conn: Connection, name: str) -> None:
        result = conn.execute(delete(tables.accounts).where(tables.accounts.c.name == name))
        if result.rowcount == 0:
            raise NotFoundError(f"no email account named {name!r}")


def _same(a: EmailAccount, b: EmailAccount) -> bool:
    # Pydantic compares SecretStr by value: a changed password or DKIM key is a change.
    return a == b
