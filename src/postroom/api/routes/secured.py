"""Email accounts, authentication profiles and keystores: the records that hold secrets."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from postroom.accounts import EmailAccount
from postroom.api.auth import admin
from postroom.api.problems import ApiProblem, problem_responses
from postroom.api.schemas.records import (
    AccountIn,
    AccountView,
    AuthProfileIn,
    AuthProfileView,
    KeystoreIn,
    KeystoreView,
)
from postroom.api.writes import (
    account_data,
    check_name,
    in_use,
    save,
    secret_data,
    stored,
    validate,
)
from postroom.app import Postroom
from postroom.auth import AuthProfile
from postroom.db import tables
from postroom.keystores.models import Keystore
from postroom.outbox import OutboxStatus

_WRITE = problem_responses(401, 403, 409, 422)
_READ = problem_responses(401, 403, 404)
# Emails an account still has to send: deleting it would strand them.
_WAITING = [
    s.value
    for s in (OutboxStatus.QUEUED, OutboxStatus.SENDING, OutboxStatus.RETRY, OutboxStatus.HELD)
]


def _status(response: Response, change: str) -> None:
    response.status_code = 201 if change == "created" else 200


def router(postroom: Postroom) -> APIRouter:
    api = APIRouter(dependencies=[admin], responses=problem_responses(401, 403))
    _accounts(api, postroom)
    _profiles(api, postroom)
    _keystores(api, postroom)
    return api


def _accounts(api: APIRouter, postroom: Postroom) -> None:

    def put_account(body: AccountIn, response: Response, *, create: bool) -> AccountView:
        old = stored(postroom.account, body.name)
        data = account_data(body.model_dump(exclude_unset=True), old)
        change, warnings = save(postroom, "accounts", validate(EmailAccount, data), create=create)
        _status(response, change)
        return AccountView.of(postroom.account(body.name), warnings)

    @api.get("/accounts", tags=["accounts"], summary="List email accounts")
    def list_accounts() -> list[AccountView]:
        return [AccountView.of(a) for a in postroom.accounts()]

    @api.post("/accounts", tags=["accounts"], status_code=201, responses=_WRITE)
    def create_account(body: AccountIn, response: Response) -> AccountView:
        """Create an email account (409 when the name exists)."""
        return put_account(body, response, create=True)

    @api.get("/accounts/{name}", tags=["accounts"], responses=_READ)
    def get_account(name: str) -> AccountView:
        return AccountView.of(postroom.account(name))

    @api.put("/accounts/{name}", tags=["accounts"], responses=_WRITE)
    def replace_account(name: str, body: AccountIn, response: Response) -> AccountView:
        """Create or replace an account; omitted secrets keep their stored values."""
        check_name(name, body.name)
        return put_account(body, response, create=False)

    @api.delete("/accounts/{name}", tags=["accounts"], status_code=204, responses=_WRITE)
    def delete_account(name: str) -> Response:
        o = tables.outbox
        with postroom.engine.begin() as conn:
            postroom.account_store.get(conn, name)
            query = select(o.c.id).where(o.c.account == name, o.c.status.in_(_WAITING))
            waiting = conn.execute(query.limit(1)).first()
            if waiting is not None:
                raise ApiProblem(
                    409,
                    f"account {name} still has emails waiting to be sent (outbox #{waiting[0]}); "
                    "cancel or send them first",
                    kind="in-use",
                )
            postroom.hold_store.lift(conn, name)
            postroom.account_store.delete(conn, name)
        return Response(status_code=204)


def _profiles(api: APIRouter, postroom: Postroom) -> None:

    def put_profile(body: AuthProfileIn, response: Response, *, create: bool) -> AuthProfileView:
        old = stored(postroom.auth_profile, body.name)
        data = secret_data(body.model_dump(exclude_unset=True), old, ("client_secret",))
        change, _ = save(postroom, "auth_profiles", validate(AuthProfile, data), create=create)
        _status(response, change)
        return AuthProfileView.of(postroom.auth_profile(body.name))

    @api.get("/auth-profiles", tags=["auth profiles"], summary="List authentication profiles")
    def list_profiles() -> list[AuthProfileView]:
        return [AuthProfileView.of(p) for p in postroom.auth_profiles()]

    @api.post("/auth-profiles", tags=["auth profiles"], status_code=201, responses=_WRITE)
    def create_profile(body: AuthProfileIn, response: Response) -> AuthProfileView:
        return put_profile(body, response, create=True)

    @api.get("/auth-profiles/{name}", tags=["auth profiles"], responses=_READ)
    def get_profile(name: str) -> AuthProfileView:
        return AuthProfileView.of(postroom.auth_profile(name))

    @api.put("/auth-profiles/{name}", tags=["auth profiles"], responses=_WRITE)
    def replace_profile(name: str, body: AuthProfileIn, response: Response) -> AuthProfileView:
        check_name(name, body.name)
        return put_profile(body, response, create=False)

    @api.delete("/auth-profiles/{name}", tags=["auth profiles"], status_code=204, responses=_WRITE)
    def delete_profile(name: str) -> Response:
        a = tables.accounts
        with postroom.engine.begin() as conn:
            postroom.profile_store.get(conn, name)
            in_use(conn, select(a.c.name).where(a.c.auth_profile == name), f"profile {name}")
            postroom.profile_store.delete(conn, name)
        return Response(status_code=204)


def _keystores(api: APIRouter, postroom: Postroom) -> None:

    def put_keystore(body: KeystoreIn, response: Response, *, create: bool) -> KeystoreView:
        old = stored(postroom.keystore, body.name)
        data = secret_data(body.model_dump(exclude_unset=True), old, ("content", "password"))
        change, _ = save(postroom, "keystores", validate(Keystore, data), create=create)
        _status(response, change)
        return KeystoreView.of(postroom.keystore(body.name))

    @api.get("/keystores", tags=["keystores"], summary="List keystores with their certificates")
    def list_keystores() -> list[KeystoreView]:
        return [KeystoreView.of(k) for k in postroom.keystores()]

    @api.post("/keystores", tags=["keystores"], status_code=201, responses=_WRITE)
    def create_keystore(body: KeystoreIn, response: Response) -> KeystoreView:
        return put_keystore(body, response, create=True)

    @api.get("/keystores/{name}", tags=["keystores"], responses=_READ)
    def get_keystore(name: str) -> KeystoreView:
        return KeystoreView.of(postroom.keystore(name))

    @api.put("/keystores/{name}", tags=["keystores"], responses=_WRITE)
    def replace_keystore(name: str, body: KeystoreIn, response: Response) -> KeystoreView:
        check_name(name, body.name)
        return put_keystore(body, response, create=False)

    @api.delete("/keystores/{name}", tags=["keystores"], status_code=204, responses=_WRITE)
    def delete_keystore(name: str) -> Response:
        with postroom.engine.begin() as conn:
            # Signing settings are JSON: compared here rather than in SQL.
            for account in postroom.account_store.list(conn):
                if account.signing and account.signing.keystore == name:
                    raise ApiProblem(
                        409, f"keystore {name} is still used by {account.name}", kind="in-use"
                    )
            postroom.keystore_store.delete(conn, name)
        return Response(status_code=204)
