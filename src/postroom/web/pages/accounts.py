"""Email accounts: list, create and edit (secrets write-only), test connectivity, resolution."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from postroom.accounts import EmailAccount, Protocol, resolve_account
from postroom.accounts.connectivity import ConnectivityReport
from postroom.accounts.models import GRAPH_URL, UnknownOutcome
from postroom.accounts.presets import PRESETS, Provider, Security
from postroom.app import Postroom
from postroom.errors import ExistsError, NoAccountError, PostroomError
from postroom.web import forms
from postroom.web.pages import inbound_form
from postroom.web.pages.records import case_type_rows
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
_TEXT_FIELDS = (
    "name", "provider", "protocol", "address", "display_name", "user_id", "reply_to", "host",
    "port", "security", "tls_min_version", "auth_profile", "user_principal_name", "graph_url",
    "on_unknown_outcome", "signing_keystore", "signing_alias", "bounce_address",
)  # fmt: skip
_CHECKBOXES = ("allow_insecure_auth", "save_to_sent_items", "reply_to_plus_addressing")


def _choices(pr: Postroom) -> dict[str, Any]:
    return {
        "providers": [p.value for p in Provider],
        "presets": {
            p.value: {"host": s.host, "port": s.port, "security": s.security.value}
            for p, s in PRESETS.items()
        },
        "protocols": [p.value for p in Protocol],
        "securities": [s.value for s in Security],
        "outcomes": [o.value for o in UnknownOutcome],
        "profile_names": [p.name for p in pr.auth_profiles()],
        "keystore_names": [k.name for k in pr.keystores()],
        **inbound_form.choices(),
    }


def _values(account: EmailAccount) -> dict[str, Any]:
    """An account as form values; secrets are left out on purpose."""
    return {
        "name": account.name,
        "provider": account.provider.value,
        "protocol": account.protocol.value,
        "address": account.address,
        "display_name": account.display_name,
        "user_id": account.user_id or "",
        "reply_to": account.reply_to or "",
        "host": account.host or "",
        "port": str(account.port),
        "security": account.security.value,
        "tls_min_version": account.tls_min_version,
        "auth_profile": account.auth_profile or "",
        "user_principal_name": account.user_principal_name or "",
        "graph_url": account.graph_url,
        "on_unknown_outcome": account.on_unknown_outcome.value,
        "signing_keystore": account.signing.keystore if account.signing else "",
        "signing_alias": (account.signing.alias or "") if account.signing else "",
        "allow_insecure_auth": account.allow_insecure_auth,
        "save_to_sent_items": account.save_to_sent_items,
        "truststore": account.truststore or "",
        "advanced": "\n".join(f"{k} = {v}" for k, v in sorted(account.advanced.items())),
        "reply_to_plus_addressing": account.reply_to_plus_addressing,
        "bounce_address": account.bounce_address or "",
        "inbound": inbound_form.values(account.inbound),
    }


def _posted(form: FormData) -> dict[str, Any]:
    values: dict[str, Any] = {name: forms.text(form, name) for name in _TEXT_FIELDS}
    values.update({name: forms.checked(form, name) for name in _CHECKBOXES})
    values["truststore"] = forms.raw(form, "truststore").strip()
    values["advanced"] = forms.raw(form, "advanced")
    values["inbound"] = inbound_form.posted(form)
    return values


def _record(
    values: dict[str, Any],
    existing: EmailAccount | None,
    *,
    password: str,
    clear: bool,
    inbound_password: str = "",
    clear_inbound: bool = False,
) -> EmailAccount:
    data: dict[str, Any] = {
        k: values[k] or None
        for k in (
            "name", "provider", "protocol", "address", "user_id", "reply_to", "host", "port",
            "security", "tls_min_version", "auth_profile", "user_principal_name",
            "on_unknown_outcome", "truststore", "bounce_address",
        )
    }  # fmt: skip
    data["display_name"] = values["display_name"]
    data["graph_url"] = values["graph_url"] or GRAPH_URL
    data["allow_insecure_auth"] = values["allow_insecure_auth"]
    data["save_to_sent_items"] = values["save_to_sent_items"]
    data["reply_to_plus_addressing"] = values["reply_to_plus_addressing"]
    data["inbound"] = inbound_form.record(
        values["inbound"],
        existing.inbound if existing is not None else None,
        password=inbound_password,
        clear=clear_inbound,
    )
    data["advanced"] = forms.pairs(values["advanced"], what="advanced")
    if values["signing_keystore"]:
        data["signing"] = {
            "keystore": values["signing_keystore"],
            "alias": values["signing_alias"] or None,
        }
    if password:
        data["password"] = password
    elif (
        existing is not None
        and existing.password is not None
        and not clear
        and values["protocol"] != Protocol.GRAPH
        and not values["auth_profile"]
    ):
        # An empty password field keeps the stored secret, which is never sent to the page.
        data["password"] = existing.password
    if existing is not None:
        # DKIM keys and encryption certificates are configured with `postroom apply`.
        data["dkim"] = existing.dkim
        data["encryption"] = existing.encryption
    return EmailAccount.model_validate(data)


@router.get("/accounts")
def list_accounts(request: Request, auth: LoggedIn, resolve: str = "") -> Response:
    pr = postroom_of(request)
    held = {h.account: h for h in pr.holds()}
    lookup: dict[str, Any] | None = None
    if resolve.strip():
        names = {a.name for a in pr.accounts()}
        try:
            found = resolve_account(resolve.strip(), names.__contains__)
            lookup = {"class_name": resolve, "account": found.account, "reason": found.reason}
        except NoAccountError as exc:
            lookup = {"class_name": resolve, "account": None, "reason": str(exc)}
    return page(
        request,
        "accounts.html",
        auth,
        title="Email accounts",
        accounts=pr.accounts(),
        held=held,
        resolutions=case_type_rows(request),
        lookup=lookup,
        resolve=resolve,
    )


def _form_page(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, Any],
    existing: EmailAccount | None,
    error: str | None = None,
    report: ConnectivityReport | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    hold = None
    if existing is not None:
        hold = next((h for h in pr.holds() if h.account == existing.name), None)
    return page(
        request,
        "account_form.html",
        auth,
        status_code=status_code,
        title=f"Account {existing.name}" if existing else "New email account",
        v=values,
        existing=existing,
        stored_password=existing is not None and existing.password is not None,
        stored_inbound_password=existing is not None
        and existing.inbound is not None
        and existing.inbound.password is not None,
        error=error,
        report=report,
        hold=hold,
        warnings=existing.warnings if existing else [],
        **_choices(pr),
    )


_BLANK: dict[str, Any] = {
    **dict.fromkeys(_TEXT_FIELDS, ""),
    "provider": Provider.CUSTOM.value,
    "protocol": Protocol.SMTP.value,
    "security": Security.STARTTLS.value,
    "port": "587",
    "tls_min_version": "1.2",
    "graph_url": GRAPH_URL,
    "on_unknown_outcome": UnknownOutcome.RETRY.value,
    "allow_insecure_auth": False,
    "save_to_sent_items": True,
    "truststore": "",
    "advanced": "",
    "reply_to_plus_addressing": False,
    "inbound": dict(inbound_form.BLANK),
}


@router.get("/accounts/new")
def new_account(request: Request, auth: LoggedIn) -> Response:
    return _form_page(request, auth, values=dict(_BLANK), existing=None)


@router.get("/accounts/{name}")
def show_account(request: Request, auth: LoggedIn, name: str) -> Response:
    account = postroom_of(request).account(name)
    return _form_page(request, auth, values=_values(account), existing=account)


def _save(request: Request, auth: Auth, form: FormData, existing: EmailAccount | None) -> Response:
    pr = postroom_of(request)
    values = _posted(form)
    if existing is not None:
        values["name"] = existing.name  # renaming would orphan the outbox rows naming it
    try:
        account = _record(
            values,
            existing,
            password=forms.raw(form, "password"),
            clear=forms.checked(form, "clear_password"),
            inbound_password=forms.raw(form, "inbound_password"),
            clear_inbound=forms.checked(form, "clear_inbound_password"),
        )
        change = pr.put_account(account, create=existing is None)
    except ExistsError as exc:
        return _form_page(
            request,
            auth,
            values=values,
            existing=None,
            error=f"{exc}: edit it instead",
            status_code=409,
        )
    except (ValidationError, PostroomError, ValueError) as exc:
        return _form_page(
            request,
            auth,
            values=values,
            existing=existing,
            error=forms.problem(exc),
            status_code=422,
        )
    notice = f"Account {account.name}: {change}."
    if account.warnings:
        notice += " Warning: " + "; ".join(account.warnings)
    return redirect(request, f"/accounts/{quote(account.name, safe='')}", notice)


@router.post("/accounts")
def create_account(request: Request, auth: LoggedIn, form: Form) -> Response:
    return _save(request, auth, form, None)


@router.post("/accounts/{name}")
def update_account(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    return _save(request, auth, form, postroom_of(request).account(name))


@router.post("/accounts/{name}/test")
def test_account(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    pr = postroom_of(request)
    account = pr.account(name)
    report = pr.test_account(name)
    return _form_page(request, auth, values=_values(account), existing=account, report=report)
