"""One description per record type, read by the API, the Studio and the CLI alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel
from sqlalchemy import Connection

from postroom.accounts import EmailAccount
from postroom.auth import AuthProfile
from postroom.cases.models import CaseType
from postroom.catalog import usage
from postroom.catalog.secrets import account_data, secret_data
from postroom.catalog.views import (
    AccountIn,
    AccountView,
    AuthProfileIn,
    AuthProfileView,
    KeystoreIn,
    KeystoreView,
)
from postroom.catalog.webhook_views import WebhookIn, WebhookView
from postroom.correspondence import Correspondence
from postroom.errors import StateError
from postroom.keystores.models import Keystore
from postroom.operators import Operator
from postroom.webhooks.endpoints import WebhookEndpoint

if TYPE_CHECKING:
    from postroom.app import Postroom

Loader = Callable[["Postroom", Connection, str], BaseModel]
Lister = Callable[["Postroom", Connection], Sequence[BaseModel]]
Remover = Callable[["Postroom", Connection, str], None]
UsageCheck = Callable[["Postroom", Connection, str], "str | None"]
Merger = Callable[[dict[str, Any], "BaseModel | None"], dict[str, Any]]


class InUseError(StateError):
    """A record cannot be deleted: another record or a waiting email still names it."""


def _unchanged(record: BaseModel) -> BaseModel:
    return record


def _no_secrets(body: dict[str, Any], _: BaseModel | None) -> dict[str, Any]:
    return body


@dataclass(frozen=True, kw_only=True)
class RecordKind:
    """A record type: its names, URLs, models, secrets, stores and what refuses a delete."""

    name: str  # in sentences: "account Default", "case type A-B-C"
    label: str  # "Email account"
    plural: str  # "Email accounts"
    slug: str  # the path under /api/v1 and in the Studio
    command: str  # the CLI's sub-command
    tag: str  # the OpenAPI tag
    section: str  # the section of an apply file
    key: str  # the key as the JSON names it ("name", "id", "class")
    attr: str  # the key as the model names it ("class_name")
    param: str  # the API's path parameter ("operator_id")
    model: type[BaseModel]  # the record, as apply validates it
    input: type[BaseModel]  # the API's request body
    view: type[BaseModel]  # what the API answers and --json prints: secrets as *_set
    secrets: tuple[str, ...] = ()
    studio_path: str  # the Studio page of one record; {key} is its quoted key
    load: Loader
    load_all: Lister
    remove: Remover
    in_use: UsageCheck
    show: Callable[[Any], BaseModel] = _unchanged
    merge: Merger = _no_secrets  # the body with the stored secrets it omits

    @property
    def a(self) -> str:
        """The kind with its article: "an account", "a keystore"."""
        return f"{'an' if self.name[0] in 'aeiou' else 'a'} {self.name}"

    def key_of(self, record: BaseModel) -> str:
        return str(getattr(record, self.attr))

    def studio_url(self, key: str) -> str:
        return self.studio_path.format(key=quote(key, safe=""))

    def delete_url(self, key: str) -> str:
        return f"/{self.slug}/{quote(key, safe='')}/delete"

    def as_json(self, record: BaseModel) -> dict[str, Any]:
        """The record's view as JSON: the API's keys, secrets only as ``*_set`` flags."""
        data: dict[str, Any] = self.show(record).model_dump(mode="json", by_alias=True)
        return data


def records(pr: Postroom, kind: RecordKind) -> list[BaseModel]:
    """Every record of ``kind``, in key order."""
    with pr.engine.connect() as conn:
        return sorted(kind.load_all(pr, conn), key=kind.key_of)


def record(pr: Postroom, kind: RecordKind, key: str) -> BaseModel:
    """The record ``key`` of ``kind`` (NotFoundError when there is none)."""
    with pr.engine.connect() as conn:
        return kind.load(pr, conn, key)


def refusal(pr: Postroom, kind: RecordKind, key: str) -> str | None:
    """Why ``key`` cannot be deleted now, or None; NotFoundError when it does not exist."""
    with pr.engine.connect() as conn:
        kind.load(pr, conn, key)
        return kind.in_use(pr, conn, key)


def delete(pr: Postroom, kind: RecordKind, key: str) -> None:
    """Delete ``key``, unless something still uses it (:class:`InUseError`)."""
    with pr.engine.begin() as conn:
        # Checked in the deleting transaction, so a user added meanwhile is seen.
        kind.load(pr, conn, key)
        reason = kind.in_use(pr, conn, key)
        if reason is not None:
            raise InUseError(reason)
        kind.remove(pr, conn, key)


def _remove_account(pr: Postroom, conn: Connection, name: str) -> None:
    pr.hold_store.lift(conn, name)
    pr.account_store.delete(conn, name)


def _all_correspondence(pr: Postroom, conn: Connection) -> list[Correspondence]:
    return list(pr.correspondence_store.all(conn).values())


ACCOUNTS = RecordKind(
    name="account",
    label="Email account",
    plural="Email accounts",
    slug="accounts",
    command="accounts",
    tag="accounts",
    section="accounts",
    key="name",
    attr="name",
    param="name",
    model=EmailAccount,
    input=AccountIn,
    view=AccountView,
    secrets=("password", "dkim.private_key"),
    studio_path="/accounts/{key}",
    load=lambda pr, conn, key: pr.account_store.get(conn, key),
    load_all=lambda pr, conn: pr.account_store.list(conn),
    remove=_remove_account,
    in_use=usage.account_in_use,
    show=AccountView.of,
    merge=account_data,
)
AUTH_PROFILES = RecordKind(
    name="auth profile",
    label="Authentication profile",
    plural="Authentication profiles",
    slug="auth-profiles",
    command="profiles",
    tag="auth profiles",
    section="auth_profiles",
    key="name",
    attr="name",
    param="name",
    model=AuthProfile,
    input=AuthProfileIn,
    view=AuthProfileView,
    secrets=("client_secret",),
    studio_path="/auth-profiles/{key}",
    load=lambda pr, conn, key: pr.profile_store.get(conn, key),
    load_all=lambda pr, conn: pr.profile_store.list(conn),
    remove=lambda pr, conn, key: pr.profile_store.delete(conn, key),
    in_use=usage.profile_in_use,
    show=AuthProfileView.of,
    merge=partial(secret_data, keys=("client_secret",)),
)
KEYSTORES = RecordKind(
    name="keystore",
    label="Keystore",
    plural="Keystores",
    slug="keystores",
    command="keystores",
    tag="keystores",
    section="keystores",
    key="name",
    attr="name",
    param="name",
    model=Keystore,
    input=KeystoreIn,
    view=KeystoreView,
    secrets=("content", "password"),
    studio_path="/keystores/{key}",
    load=lambda pr, conn, key: pr.keystore_store.get(conn, key),
    load_all=lambda pr, conn: pr.keystore_store.list(conn),
    remove=lambda pr, conn, key: pr.keystore_store.delete(conn, key),
    in_use=usage.keystore_in_use,
    show=KeystoreView.of,
    merge=partial(secret_data, keys=("content", "password")),
)
OPERATORS = RecordKind(
    name="operator",
    label="Operator",
    plural="Operators",
    slug="operators",
    command="operators",
    tag="operators",
    section="operators",
    key="id",
    attr="id",
    param="operator_id",
    model=Operator,
    input=Operator,
    view=Operator,
    studio_path="/operators?edit={key}#operator-form",
    load=lambda pr, conn, key: pr.operator_store.get(conn, key),
    load_all=lambda pr, conn: pr.operator_store.list(conn),
    remove=lambda pr, conn, key: pr.operator_store.delete(conn, key),
    in_use=usage.operator_in_use,
)
CORRESPONDENCE = RecordKind(
    name="correspondence",
    label="Correspondence",
    plural="Correspondence",
    slug="correspondence",
    command="correspondence",
    tag="correspondence",
    section="correspondence",
    key="name",
    attr="name",
    param="name",
    model=Correspondence,
    input=Correspondence,
    view=Correspondence,
    studio_path="/correspondence/edit?name={key}",
    load=lambda pr, conn, key: pr.correspondence_store.get(conn, key),
    load_all=_all_correspondence,
    remove=lambda pr, conn, key: pr.correspondence_store.delete(conn, key),
    in_use=usage.correspondence_in_use,
)
CASE_TYPES = RecordKind(
    name="case type",
    label="Case type",
    plural="Case types",
    slug="case-types",
    command="case-types",
    tag="case types",
    section="case_types",
    key="class",
    attr="class_name",
    param="class_name",
    model=CaseType,
    input=CaseType,
    view=CaseType,
    studio_path="/case-types/edit?class_name={key}",
    load=lambda pr, conn, key: pr.case_type_store.get(conn, key),
    load_all=lambda pr, conn: pr.case_type_store.list(conn),
    remove=lambda pr, conn, key: pr.case_type_store.delete(conn, key),
    in_use=usage.case_type_in_use,
)
WEBHOOKS = RecordKind(
    name="webhook",
    label="Webhook",
    plural="Webhooks",
    slug="webhooks",
    command="webhooks",
    tag="webhooks",
    section="webhooks",
    key="name",
    attr="name",
    param="name",
    model=WebhookEndpoint,
    input=WebhookIn,
    view=WebhookView,
    secrets=("secret",),
    studio_path="/webhooks/{key}",
    load=lambda pr, conn, key: pr.webhook_store.get(conn, key),
    load_all=lambda pr, conn: pr.webhook_store.list(conn),
    remove=lambda pr, conn, key: pr.webhook_store.delete(conn, key),
    # Nothing refuses it: deliveries still waiting for a deleted endpoint end failed.
    in_use=lambda pr, conn, key: None,
    show=WebhookView.of,
    merge=partial(secret_data, keys=("secret",)),
)

KINDS: tuple[RecordKind, ...] = (
    ACCOUNTS,
    AUTH_PROFILES,
    KEYSTORES,
    OPERATORS,
    CORRESPONDENCE,
    CASE_TYPES,
    WEBHOOKS,
)
BY_SLUG = {k.slug: k for k in KINDS}
