"""REST API: tokens and scopes on every route, and secrets that never come back out."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from postroom import Postroom
from postroom.identity import Scope
from tests.apikit import (
    MINIMAL_RECORDS,
    PUBLIC,
    SEND_ROUTES,
    api_routes,
    client,
    concrete,
    issue_tokens,
)
from tests.conftest import make_settings
from tests.smimekit import make_signer


# These tests send a hundred bad tokens from one client on purpose: the failure
# throttle (tested in tests/test_door_limits.py) is set out of their way.
@pytest.fixture
def sqlite_postroom(tmp_path: Path) -> Iterator[Postroom]:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'postroom.db'}",
        auth_address_failures=10_000,
        auth_user_failures=10_000,
    )
    with Postroom(settings) as pr:
        yield pr


def test_every_route_needs_a_token(sqlite_postroom: Postroom) -> None:
    routes = [r for r in api_routes(sqlite_postroom) if r not in PUBLIC]
    assert len(routes) > 30  # the enumeration found the API, not an empty list
    with client(sqlite_postroom) as c:
        published = c.get("/api/v1/openapi.json").json()["paths"]
    documented = {(m.upper(), p) for p, ops in published.items() for m in ops} - PUBLIC
    assert documented == set(routes)
    revoked = sqlite_postroom.identity.create_token(name="old", scopes={Scope.ADMIN})
    sqlite_postroom.identity.revoke_token(revoked.token.id)
    with client(sqlite_postroom) as c:
        for method, path in routes:
            for headers in (
                {},
                {"Authorization": "Bearer prt_nope_nope"},
                {"Authorization": f"Bearer {revoked.value}"},
                {"Authorization": "Basic YWRtaW46YWRtaW4="},
            ):
                # A malformed body must not get past authentication either.
                r = c.request(method, concrete(path), headers=headers, content=b"{not json")
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert r.headers["content-type"] == "application/problem+json"
        assert c.get("/api/v1/healthz").status_code == 200
        assert c.get("/api/v1/openapi.json").status_code == 200


def test_a_send_token_is_refused_on_every_admin_route(sqlite_postroom: Postroom) -> None:
    tokens = issue_tokens(sqlite_postroom)
    routes = [r for r in api_routes(sqlite_postroom) if r not in PUBLIC]
    admin_routes = [r for r in routes if r not in SEND_ROUTES]
    assert set(routes) >= SEND_ROUTES
    assert len(admin_routes) > 25
    with client(sqlite_postroom) as c:
        for method, path in admin_routes:
            r = c.request(method, concrete(path), headers=tokens.send)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["status"] == 403
        for method, path in SEND_ROUTES:
            r = c.request(method, concrete(path), headers=tokens.send)
            assert r.status_code != 403, (method, path)


def test_a_send_token_sees_only_what_it_created(sqlite_postroom: Postroom) -> None:
    sqlite_postroom.apply(MINIMAL_RECORDS)
    tokens = issue_tokens(sqlite_postroom)
    other = sqlite_postroom.identity.create_token(name="other", scopes={Scope.SEND}).value
    other_h = {"Authorization": f"Bearer {other}"}
    with client(sqlite_postroom) as c:
        case = c.post("/api/v1/cases", json={"case_type": "A-B-C"}, headers=tokens.send)
        assert case.status_code == 201, case.text
        case_id = case.json()["id"]
        email = c.post(
            "/api/v1/emails",
            json={"to": ["b@example.com"], "subject": "S", "body": "B", "case_id": case_id},
            headers=tokens.send,
        )
        assert email.status_code == 201, email.text
        email_id = email.json()["ids"][0]
        assert c.get(f"/api/v1/cases/{case_id}", headers=tokens.send).status_code == 200
        assert c.get(f"/api/v1/emails/{email_id}", headers=tokens.send).status_code == 200
        assert c.get(f"/api/v1/cases/{case_id}", headers=other_h).status_code == 404
        assert c.get(f"/api/v1/emails/{email_id}", headers=other_h).status_code == 404
        moved = c.post(f"/api/v1/cases/{case_id}/status", json={"status": "Open"}, headers=other_h)
        assert moved.status_code == 404
        assert c.get(f"/api/v1/cases/{case_id}", headers=tokens.admin).json()["status"] == "New"


@pytest.mark.parametrize("level", [logging.DEBUG])
def test_secrets_never_appear_in_responses_or_logs(
    sqlite_postroom: Postroom, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    caplog.set_level(level)
    tokens = issue_tokens(sqlite_postroom)
    dkim = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    signer = make_signer("noreply@example.com")
    pfx = pkcs12.serialize_key_and_certificates(
        b"m", signer.key, signer.certificate, None,
        serialization.BestAvailableEncryption(b"KS-PASS-7c1f"),
    )  # fmt: skip
    content = base64.b64encode(pfx).decode()
    secrets = ["SMTP-PASS-91ab", "CLIENT-SECRET-4d2e", "KS-PASS-7c1f", dkim, content]
    bodies = []
    with client(sqlite_postroom) as c:
        h = tokens.admin
        writes = [
            ("POST", "/api/v1/keystores",
             {"name": "K", "content": content, "password": "KS-PASS-7c1f"}),
            ("POST", "/api/v1/auth-profiles",
             {"name": "p", "client_id": "c", "client_secret": "CLIENT-SECRET-4d2e",
              "tenant_id": "contoso.onmicrosoft.com"}),
            ("POST", "/api/v1/accounts",
             {"name": "Default", "address": "noreply@example.com", "host": "smtp.example.com",
              "password": "SMTP-PASS-91ab", "signing": {"keystore": "K"},
              "dkim": {"domain": "example.com", "selector": "s1", "private_key": dkim}}),
            # Refused writes must not echo the secret either.
            ("POST", "/api/v1/accounts",
             {"name": "Bad", "address": "x@example.com", "host": "h.example.com", "port": 0,
              "password": "SMTP-PASS-91ab"}),
            ("POST", "/api/v1/keystores",
             {"name": "K2", "content": content, "password": "KS-PASS-7c1f-wrong"}),
            ("PUT", "/api/v1/accounts/Default",
             {"name": "Default", "address": "noreply@example.com", "host": "smtp.example.com",
              "dkim": {"domain": "example.com", "selector": "s2"}}),
        ]  # fmt: skip
        for method, path, body in writes:
            r = c.request(method, path, json=body, headers=h)
            assert r.status_code < 500, r.text
            bodies.append(r.text)
        for path in ("/accounts", "/accounts/Default", "/auth-profiles", "/auth-profiles/p",
                     "/keystores", "/keystores/K", "/openapi.json"):  # fmt: skip
            r = c.get(f"/api/v1{path}", headers=h)
            assert r.status_code == 200
            bodies.append(r.text)
    account = sqlite_postroom.account("Default")
    assert account.password is not None
    assert account.dkim is not None
    assert account.dkim.selector == "s2"
    assert account.dkim.private_key.get_secret_value() == dkim
    assert '"password_set":true' in bodies[-6].replace(" ", "")
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in secrets:
        for text in (*bodies, logged):
            assert secret not in text
            assert secret[:40] not in text
