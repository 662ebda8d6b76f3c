"""REST API: records CRUD, write-only secrets, validation shared with ``apply``."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from postroom import Postroom
from postroom.errors import ConfigurationError
from tests.apikit import client, issue_tokens
from tests.smimekit import make_signer

SMTP = {
    "name": "Default",
    "address": "noreply@example.com",
    "host": "smtp.example.com",
    "security": "starttls",
    "password": "first-password-1",
}


def test_account_crud_keeps_omitted_secrets(postroom: Postroom) -> None:
    tokens = issue_tokens(postroom)
    with client(postroom) as c:
        created = c.post("/api/v1/accounts", json=SMTP, headers=tokens.admin)
        assert created.status_code == 201, created.text
        assert created.json()["password_set"] is True
        assert "password" not in created.json()
        assert created.json()["port"] == 587  # filled as apply fills it

        again = c.post("/api/v1/accounts", json=SMTP, headers=tokens.admin)
        assert again.status_code == 409
        assert again.headers["content-type"] == "application/problem+json"

        edit = {k: v for k, v in SMTP.items() if k != "password"} | {"display_name": "Ops"}
        updated = c.put("/api/v1/accounts/Default", json=edit, headers=tokens.admin)
        assert updated.status_code == 200, updated.text
        assert updated.json()["display_name"] == "Ops"
        kept = postroom.account("Default").password
        assert kept is not None
        assert kept.get_secret_value() == "first-password-1"

        cleared = c.put(
            "/api/v1/accounts/Default", json=edit | {"password": None}, headers=tokens.admin
        )
        assert cleared.json()["password_set"] is False
        assert postroom.account("Default").password is None

        listed = c.get("/api/v1/accounts", headers=tokens.admin).json()
        assert [a["name"] for a in listed] == ["Default"]
        assert c.delete("/api/v1/accounts/Default", headers=tokens.admin).status_code == 204
        assert c.get("/api/v1/accounts/Default", headers=tokens.admin).status_code == 404


def test_api_and_apply_refuse_the_same_account(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    bad: dict[str, Any] = SMTP | {"security": "none", "host": "127.0.0.1"}
    with pytest.raises(ConfigurationError, match="without encryption"):
        sqlite_postroom.apply({"accounts": [bad]})
    with client(sqlite_postroom) as c:
        r = c.post("/api/v1/accounts", json=bad, headers=tokens.admin)
    assert r.status_code == 422
    problem = r.json()
    assert problem["status"] == 422
    assert "without encryption" in problem["detail"]
    assert {"type", "title", "status", "detail", "errors"} <= set(problem)


def test_request_validation_is_a_problem_with_field_errors(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    with client(sqlite_postroom) as c:
        r = c.post("/api/v1/accounts", json=SMTP | {"port": 0}, headers=tokens.admin)
        mismatch = c.put("/api/v1/accounts/Other", json=SMTP, headers=tokens.admin)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == "body.port" for e in r.json()["errors"])
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["field"] == "body.name"


def test_profile_secret_is_write_only_and_kept(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    profile = {
        "name": "entra",
        "client_id": "client-1",
        "client_secret": "profile-secret-1",
        "tenant_id": "contoso.onmicrosoft.com",
    }
    with client(sqlite_postroom) as c:
        missing = c.post(
            "/api/v1/auth-profiles",
            json={k: v for k, v in profile.items() if k != "client_secret"},
            headers=tokens.admin,
        )
        assert missing.status_code == 422  # required on creation, as in apply
        assert (
            c.post("/api/v1/auth-profiles", json=profile, headers=tokens.admin).status_code == 201
        )
        edit = {k: v for k, v in profile.items() if k != "client_secret"} | {"client_id": "c2"}
        r = c.put("/api/v1/auth-profiles/entra", json=edit, headers=tokens.admin)
        assert r.status_code == 200, r.text
        assert r.json()["client_secret_set"] is True
        assert r.json()["client_id"] == "c2"
        assert sqlite_postroom.auth_profile("entra").client_secret.get_secret_value() == (
            "profile-secret-1"
        )
        account = {
            "name": "Graph",
            "protocol": "graph",
            "address": "a@contoso.onmicrosoft.com",
            "auth_profile": "entra",
        }
        assert (
            c.put("/api/v1/accounts/Graph", json=account, headers=tokens.admin).status_code == 201
        )
        in_use = c.delete("/api/v1/auth-profiles/entra", headers=tokens.admin)
        assert in_use.status_code == 409


def test_keystore_shows_its_certificate_never_its_secrets(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    signer = make_signer("mortgages@example.com")
    pfx = pkcs12.serialize_key_and_certificates(
        b"m", signer.key, signer.certificate, None,
        serialization.BestAvailableEncryption(b"keystore-pass-1"),
    )  # fmt: skip
    content = base64.b64encode(pfx).decode()
    body = {"name": "Sign", "content": content, "password": "keystore-pass-1"}
    with client(sqlite_postroom) as c:
        wrong = c.post("/api/v1/keystores", json=body | {"password": "nope"}, headers=tokens.admin)
        assert wrong.status_code == 422
        r = c.post("/api/v1/keystores", json=body, headers=tokens.admin)
        assert r.status_code == 201, r.text
        view = r.json()
        assert view["certificate"]["emails"] == ["mortgages@example.com"]
        assert view["certificate"]["key_type"] == "RSA"
        assert view["kind"] == "pkcs12"
        assert view["password_set"] is True
        assert content not in r.text
        assert "keystore-pass-1" not in r.text
        # An edit of the alias only: content and password are kept.
        r = c.put(
            "/api/v1/keystores/Sign", json={"name": "Sign", "alias": "m"}, headers=tokens.admin
        )
        assert r.status_code == 200, r.text
        assert r.json()["certificate"]["alias"] == "m"
        assert c.delete("/api/v1/keystores/Sign", headers=tokens.admin).status_code == 204
        assert c.get("/api/v1/keystores/Sign", headers=tokens.admin).status_code == 404


def test_operators_correspondence_and_case_types(postroom: Postroom) -> None:
    tokens = issue_tokens(postroom)
    h = tokens.admin
    case_type = {
        "class": "A-B-C",
        "class_group": "A-B",
        "id_prefix": "C-",
        "steps": [{"on": "created", "to": [{"operator": "carol"}], "correspondence": "Hello"}],
    }
    with client(postroom) as c:
        refused = c.post("/api/v1/case-types", json=case_type, headers=h)
        assert refused.status_code == 422  # unknown correspondence, as apply says
        assert "Hello" in refused.json()["detail"]
        operator = {"id": "carol", "name": "Carol", "email": "carol@example.com"}
        assert c.post("/api/v1/operators", json=operator, headers=h).status_code == 201
        letter = {"name": "Hello", "subject": "Hi {{ case.id }}", "html": "<p>Hi</p>"}
        assert c.post("/api/v1/correspondence", json=letter, headers=h).status_code == 201
        broken = c.put(
            "/api/v1/correspondence/Broken",
            json={"name": "Broken", "subject": "x", "html": "{% if %}"},
            headers=h,
        )
        assert broken.status_code == 422
        r = c.post("/api/v1/case-types", json=case_type, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["class"] == "A-B-C"
        assert c.get("/api/v1/case-types/A-B-C", headers=h).json()["id_prefix"] == "C-"
        assert c.delete("/api/v1/correspondence/Hello", headers=h).status_code == 409
        assert c.delete("/api/v1/operators/carol", headers=h).status_code == 409
        renamed = c.put("/api/v1/operators/carol", json=operator | {"name": "C. M."}, headers=h)
        assert renamed.status_code == 200
        assert c.get("/api/v1/operators/carol", headers=h).json()["name"] == "C. M."
        assert c.delete("/api/v1/case-types/A-B-C", headers=h).status_code == 204
        assert c.delete("/api/v1/correspondence/Hello", headers=h).status_code == 204
        assert c.get("/api/v1/correspondence", headers=h).json() == []
