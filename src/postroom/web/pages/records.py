"""Operators (create and edit) and case types (read-only, with their account resolution)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from postroom.accounts import candidate_accounts, resolve_account
from postroom.errors import NoAccountError, PostroomError
from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
_OPERATOR_FIELDS = ("id", "name", "email", "reports_to")


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
