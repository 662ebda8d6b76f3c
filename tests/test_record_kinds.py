"""The record descriptions (postroom.catalog): what refuses a delete, views without secrets."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from postroom import Postroom, catalog
from postroom.catalog import InUseError
from postroom.errors import NotFoundError, StateError
from tests.apikit import client, issue_tokens
from tests.smimekit import make_signer

PROFILE_SECRET = "profile-secret-never-shown-1"
KEYSTORE_PASSWORD = "keystore-pass-never-shown-1"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-secret-never-shown-1").decode()


def signing_keystore(name: str, address: str = "graph@example.com") -> dict[str, Any]:
    """A PKCS#12 keystore record for ``address``, as apply takes it."""
    signer = make_signer(address)
    pfx = pkcs12.serialize_key_and_certificates(
        b"k", signer.key, signer.certificate, None,
        serialization.BestAvailableEncryption(KEYSTORE_PASSWORD.encode()),
    )  # fmt: skip
    return {"name": name, "content": base64.b64encode(pfx).decode(), "password": KEYSTORE_PASSWORD}


# Records of every type beside the mortgage example: one used and one unused of each.
RECORDS: dict[str, Any] = {
    "operators": [{"id": "bob", "name": "Bob", "email": "bob@example.com"}],
    "auth_profiles": [
        {"name": "entra", "client_id": "c1", "client_secret": PROFILE_SECRET, "tenant_id": "t"},
        {"name": "unused", "client_id": "c2", "client_secret": PROFILE_SECRET, "tenant_id": "t"},
    ],
    "keystores": [signing_keystore("Sign")],
    "accounts": [
        {"name": "Graph", "protocol": "graph", "address": "graph@example.com",
         "auth_profile": "entra", "signing": {"keystore": "Sign"}},
        {"name": "Spare", "address": "spare@example.com", "host": "127.0.0.1", "port": 2525,
         "security": "none"},
    ],
    "correspondence": [
        {"name": "Fragment", "html": "<p>Regards</p>"},
        {"name": "Letter", "subject": "Hi", "html": "<p>Hi</p>{% include 'Fragment' %}"},
        {"name": "Unused letter", "subject": "Hi", "html": "<p>Hi</p>"},
    ],
    "case_types": [
        {"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"},
        {"class": "A-B-D", "class_group": "A-B", "id_prefix": "D-",
         "parties": {"Boss": "operator:dave"},
         "steps": [{"on": "created", "to": [{"operator": "erin"}], "correspondence": "Letter"}]},
    ],
    "webhooks": [
        {"name": "crm", "url": "https://crm.example.com/events", "events": ["case.created"],
         "secret": WEBHOOK_SECRET},
    ],
}  # fmt: skip
EXTRA_OPERATORS = [
    {"id": "dave", "name": "Dave"},
    {"id": "erin", "name": "Erin", "email": "erin@example.com"},
    {"id": "frank", "name": "Frank", "reports_to": "bob"},
]
REFUSALS = [
    (catalog.AUTH_PROFILES, "entra", "auth profile entra is still used by account Graph"),
    (catalog.KEYSTORES, "Sign", "keystore Sign is still used by account Graph (signing)"),
    (catalog.OPERATORS, "dave", "operator dave is still used by case type A-B-D"),
    (catalog.OPERATORS, "erin", "operator erin is still used by case type A-B-D"),
    (catalog.OPERATORS, "bob", "operator bob is still used by operator frank (reports to)"),
    (catalog.CORRESPONDENCE, "Letter", "correspondence 'Letter' is still used by case type A-B-D"),
    (
        catalog.CORRESPONDENCE,
        "Fragment",
        "correspondence 'Fragment' is still used by correspondence 'Letter'",
    ),
    (catalog.CASE_TYPES, "A-B-C", "case type A-B-C is still used by case C-1"),
]


def apply_records(pr: Postroom) -> None:
    """RECORDS and the operators they name, in an order apply accepts; case C-1."""
    pr.apply({"operators": EXTRA_OPERATORS[:2]})
    pr.apply(RECORDS)
    pr.apply({"operators": EXTRA_OPERATORS[2:]})
    pr.cases.create("A-B-C")


@pytest.fixture
def pr(sqlite_postroom: Postroom) -> Postroom:
    apply_records(sqlite_postroom)
    return sqlite_postroom


def test_every_record_type_is_described_once() -> None:
    assert [k.slug for k in catalog.KINDS] == [
        "accounts", "auth-profiles", "keystores", "operators", "correspondence", "case-types",
        "webhooks",
    ]  # fmt: skip
    assert len({k.section for k in catalog.KINDS}) == len(catalog.KINDS)
    for kind in catalog.KINDS:
        assert catalog.BY_SLUG[kind.slug] is kind
        for secret in kind.secrets:
            assert secret.split(".")[-1] not in kind.view.model_fields


@pytest.mark.parametrize(("kind", "key", "reason"), REFUSALS)
def test_a_record_in_use_is_refused_with_its_user(
    pr: Postroom, kind: catalog.RecordKind, key: str, reason: str
) -> None:
    assert catalog.refusal(pr, kind, key) == reason
    with pytest.raises(InUseError) as refused:
        catalog.delete(pr, kind, key)
    assert str(refused.value) == reason
    assert isinstance(refused.value, StateError)
    catalog.record(pr, kind, key)  # still there


def test_an_account_with_waiting_emails_is_refused(pr: Postroom) -> None:
    outbox_id = pr.send(to=["x@example.com"], subject="s", body="b", class_name="Spare")
    reason = catalog.refusal(pr, catalog.ACCOUNTS, "Spare")
    assert reason == (
        f"account Spare still has emails waiting to be sent (outbox #{outbox_id}); "
        "cancel or send them first"
    )
    pr.cancel(outbox_id)
    catalog.delete(pr, catalog.ACCOUNTS, "Spare")
    with pytest.raises(NotFoundError):
        catalog.record(pr, catalog.ACCOUNTS, "Spare")


def test_unused_records_are_deleted(pr: Postroom) -> None:
    for kind, key in [
        (catalog.AUTH_PROFILES, "unused"),
        (catalog.OPERATORS, "frank"),
        (catalog.CORRESPONDENCE, "Unused letter"),
        (catalog.CASE_TYPES, "A-B-D"),
    ]:
        assert catalog.refusal(pr, kind, key) is None
        catalog.delete(pr, kind, key)
        with pytest.raises(NotFoundError):
            catalog.delete(pr, kind, key)
    # Their users gone, the records they used can go too.
    for kind, key in [
        (catalog.OPERATORS, "bob"),
        (catalog.OPERATORS, "dave"),
        (catalog.CORRESPONDENCE, "Letter"),
        (catalog.CORRESPONDENCE, "Fragment"),
    ]:
        catalog.delete(pr, kind, key)


def test_views_show_secrets_only_as_flags(pr: Postroom) -> None:
    for kind in catalog.KINDS:
        for record in catalog.records(pr, kind):
            data = kind.as_json(record)
            text = json.dumps(data)
            assert PROFILE_SECRET not in text
            assert KEYSTORE_PASSWORD not in text
            assert WEBHOOK_SECRET not in text
            assert kind.key in data
            assert data[kind.key] == kind.key_of(record)
    graph = catalog.record(pr, catalog.ACCOUNTS, "Graph")
    data = catalog.ACCOUNTS.as_json(graph)
    assert data["password_set"] is False
    assert "password" not in data
    [profile] = catalog.records(pr, catalog.AUTH_PROFILES)[:1]
    assert catalog.AUTH_PROFILES.as_json(profile)["client_secret_set"] is True
    [keystore] = catalog.records(pr, catalog.KEYSTORES)
    shown = catalog.KEYSTORES.as_json(keystore)
    assert shown["password_set"] is True
    assert shown["content_set"] is True
    assert "content" not in shown
    assert "password" not in shown


@pytest.mark.parametrize(("kind", "key", "reason"), REFUSALS)
def test_the_api_refuses_with_the_same_message(
    pr: Postroom, kind: catalog.RecordKind, key: str, reason: str
) -> None:
    tokens = issue_tokens(pr)
    with client(pr) as c:
        r = c.delete(f"/api/v1/{kind.slug}/{key}", headers=tokens.admin)
    assert r.status_code == 409
    problem = r.json()
    assert problem["type"].endswith("/in-use")
    assert problem["detail"] == reason


def test_the_api_lists_and_deletes_every_type_from_its_description(pr: Postroom) -> None:
    tokens = issue_tokens(pr)
    with client(pr) as c:
        for kind in catalog.KINDS:
            listed = c.get(f"/api/v1/{kind.slug}", headers=tokens.admin)
            assert listed.status_code == 200
            expected = [kind.as_json(r) for r in catalog.records(pr, kind)]
            assert listed.json() == expected, kind.slug
        gone = c.delete("/api/v1/operators/frank", headers=tokens.admin)
        assert gone.status_code == 204
        assert c.delete("/api/v1/operators/frank", headers=tokens.admin).status_code == 404
