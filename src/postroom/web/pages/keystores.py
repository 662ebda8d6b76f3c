"""Keystores: upload a .pfx/.p12/.jks/.pem with its password; certificate details, expiry."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from postroom.errors import PostroomError
from postroom.keystores.inspection import KeystoreInfo, describe
from postroom.keystores.models import Keystore
from postroom.web import forms
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn, postroom_of

router = APIRouter()
MAX_UPLOAD = 10 * 1024 * 1024


def _inspect(keystore: Keystore, address: str | None = None) -> tuple[KeystoreInfo | None, str]:
    """The signing entry's details, or why it cannot be opened."""
    try:
        return describe(keystore.entry(), address=address), ""
    except (PostroomError, ValueError) as exc:
        return None, str(exc)


def _signers(request: Request) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for account in postroom_of(request).accounts():
        if account.signing is not None:
            found.setdefault(account.signing.keystore, []).append(account.address)
    return found


@router.get("/keystores")
def list_keystores(request: Request, auth: LoggedIn) -> Response:
    signers = _signers(request)
    rows = []
    for keystore in postroom_of(request).keystores():
        addresses = signers.get(keystore.name, [])
        info, problem = _inspect(keystore, addresses[0] if addresses else None)
        rows.append({"keystore": keystore, "info": info, "problem": problem, "used_by": addresses})
    return page(request, "keystores.html", auth, title="Keystores", rows=rows)


def _form(
    request: Request,
    auth: Auth,
    *,
    values: dict[str, str],
    existing: Keystore | None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    info, problem = (None, "")
    if existing is not None:
        addresses = _signers(request).get(existing.name, [])
        info, problem = _inspect(existing, addresses[0] if addresses else None)
    return page(
        request,
        "keystore_form.html",
        auth,
        status_code=status_code,
        title=f"Keystore {existing.name}" if existing else "Upload a keystore",
        v=values,
        existing=existing,
        info=info,
        problem=problem,
        error=error,
    )


@router.get("/keystores/new")
def new_keystore(request: Request, auth: LoggedIn) -> Response:
    return _form(request, auth, values={"name": "", "alias": ""}, existing=None)


@router.get("/keystores/{name}")
def show_keystore(request: Request, auth: LoggedIn, name: str) -> Response:
    keystore = postroom_of(request).keystore(name)
    return _form(
        request,
        auth,
        values={"name": keystore.name, "alias": keystore.alias or ""},
        existing=keystore,
    )


async def _read_upload(form: Any) -> bytes | None:
    upload = forms.upload(form, "file")
    if upload is None:
        return None
    content = await upload.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        raise ValueError("the keystore file is larger than 10 MB")
    return content


def _save(
    request: Request, auth: Auth, form: Any, content: bytes | None, existing: Keystore | None
) -> Response:
    values = {"name": forms.text(form, "name"), "alias": forms.text(form, "alias")}
    if existing is not None:
        values["name"] = existing.name
    data: dict[str, Any] = {"name": values["name"], "alias": values["alias"] or None}
    password = forms.raw(form, "password")
    try:
        if content is not None:
            data["content"] = base64.b64encode(content).decode()
        elif existing is not None:
            data["content"] = existing.content
            data["kind"] = existing.kind
        else:
            raise ValueError("choose the keystore file to upload")
        if password:
            data["password"] = password
        elif existing is not None and existing.password is not None:
            data["password"] = existing.password  # empty keeps the stored password
        keystore = Keystore.model_validate(data)
        change = postroom_of(request).put_keystore(keystore)
    except (ValidationError, PostroomError, ValueError) as exc:
        return _form(
            request,
            auth,
            values=values,
            existing=existing,
            error=forms.problem(exc),
            status_code=422,
        )
    return redirect(
        request,
        f"/keystores/{quote(keystore.name, safe='')}",
        f"Keystore {keystore.name}: {change}.",
    )


@router.post("/keystores")
async def create_keystore(request: Request, auth: LoggedIn, form: Form) -> Response:
    try:
        content = await _read_upload(form)
    except ValueError as exc:
        return _form(request, auth, values={"name": "", "alias": ""}, existing=None, error=str(exc))
    return await run_in_threadpool(_save, request, auth, form, content, None)


@router.post("/keystores/{name}")
async def update_keystore(request: Request, auth: LoggedIn, form: Form, name: str) -> Response:
    existing = await run_in_threadpool(postroom_of(request).keystore, name)
    try:
        content = await _read_upload(form)
    except ValueError as exc:
        values = {"name": name, "alias": forms.text(form, "alias")}
        error = str(exc)
        return await run_in_threadpool(
            lambda: _form(request, auth, values=values, existing=existing, error=error)
        )
    return await run_in_threadpool(_save, request, auth, form, content, existing)
