"""Operators (create and edit) and case types (their account resolution; edited as YAML).

This router also carries every record type's delete pages (:mod:`.deleting`).
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.accounts import candidate_accounts, resolve_account
from postroom.cases.models import CaseType
from postroom.config.apply import parse_yaml
from postroom.errors import ConfigurationError, NoAccountError, PostroomError
from postroom.web import forms
from postroom.web.pages import deleting
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
router.include_router(deleting.router)
_OPERATOR_FIELDS = ("id", "name", "email", "reports_to", "language")


def _operators_page(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        operators = pr.operator_store.list(conn)
    return page(
        request,
        "operators.html",
        auth,
        status_code=status_code,
        title="Operators",
        operators=operators,
        v=values or dict.fromkeys(_OPERATOR_FIELDS, ""),
        error=error,
    )


@router.get("/operators")
def list_operators(request: Request, auth: LoggedIn, edit: str = "") -> Response:
    values = None
    if edit:
        pr = postroom_of(request)
        with pr.engine.connect() as conn:
            operator = pr.operator_store.get(conn, edit)
        values = {
            "id": operator.id,
            "name": operator.name,
            "email": operator.email or "",
            "reports_to": operator.reports_to or "",
            "language": operator.language or "",
        }
    return _operators_page(request, auth, values=values)


@router.post("/operators")
def save_operator(request: Request, auth: LoggedIn, form: Form) -> Response:
    values = {f: forms.text(form, f) for f in _OPERATOR_FIELDS}
    record = {k: v for k, v in values.items() if v}
    try:
        # The same validation and write as `postroom apply` of an operators section.
        report = postroom_of(request).apply({"operators": [record]})
    except PostroomError as exc:
        return _operators_page(
            request, auth, values=values, error=forms.problem(exc), status_code=422
        )
    [(_, name, change)] = report.changes
    notice = f"Operator {name}: {change}." + "".join(f" {w}." for w in report.warnings)
    return redirect(request, "/operators", notice)


def case_type_rows(request: Request) -> list[dict[str, Any]]:
    """Each case type with the accounts it tries, in order, and the one it resolves to."""
    pr = postroom_of(request)
    names = {a.name for a in pr.accounts()}
    with pr.engine.connect() as conn:
        types = pr.case_type_store.list(conn)
    rows = []
    for ct in types:
        try:
            found = resolve_account(ct.class_name, names.__contains__, class_group=ct.class_group)
            account, reason = found.account, found.reason
        except NoAccountError as exc:
            account, reason = None, str(exc)
        rows.append(
            {
                "type": ct,
                "tries": candidate_accounts(ct.class_name, ct.class_group),
                "account": account,
                "reason": reason,
            }
        )
    return rows


@router.get("/case-types")
def list_case_types(request: Request, auth: LoggedIn) -> Response:
    return page(request, "case_types.html", auth, title="Case types", rows=case_type_rows(request))


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line text (template bodies), so the YAML reads as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)

NEW_CASE_TYPE = """\
class: MyOrg-Claims-Work-Claim
class_group: MyOrg-Claims-Work
label: Claim
id_prefix: C-
parties:
  Owner: creator
steps:
- name: Notify the owner
  'on': created
  to:
  - party: Owner
  subject: Claim {{ case.id }} registered
  body: <p>Claim {{ case.id }} was registered.</p>
"""


def as_yaml(case_type: CaseType) -> str:
    data = case_type.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def _editor(
    request: Request,
    auth: Auth,
    *,
    text: str,
    class_name: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "case_type_form.html",
        auth,
        title="Edit case type",
        text=text,
        class_name=class_name,
        error=error,
        status_code=status_code,
    )


@router.get("/case-types/edit")
def edit_case_type(request: Request, auth: LoggedIn, class_name: str = "") -> Response:
    if not class_name:
        return _editor(request, auth, text=NEW_CASE_TYPE)
    pr = postroom_of(request)
    with pr.engine.connect() as conn:
        case_type = pr.case_type_store.get(conn, class_name)
    return _editor(request, auth, text=as_yaml(case_type), class_name=case_type.class_name)


@router.post("/case-types")
def save_case_type(request: Request, auth: LoggedIn, form: Form) -> Response:
    text = forms.raw(form, "yaml")
    try:
        try:
            data = parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigurationError("a case type is a mapping of fields (class, steps...)")
        # The same validation and write as `postroom apply` of a case_types section.
        report = postroom_of(request).apply({"case_types": [data]})
    except PostroomError as exc:
        return _editor(request, auth, text=text, error=forms.problem(exc), status_code=422)
    [(_, name, change)] = report.changes
    notice = f"Case type {name}: {change}." + "".join(f" {w}." for w in report.warnings)
    return redirect(request, "/case-types", notice)
