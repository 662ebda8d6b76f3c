"""Reviews through the REST API and the CLI, and an approval sealed with S/MIME."""

from __future__ import annotations

import asyncio
import email
import email.policy
import getpass
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.outbox import OutboxStatus
from tests.apikit import PREFIX, issue_tokens, mounted
from tests.conftest import TEST_KEY, make_settings
from tests.fakes import smtp_server
from tests.smimekit import Signer
from tests.test_reviews import CUSTOMER, open_case, review_records
from tests.test_signing import needs_openssl, openssl_verify
from tests.test_signing_delivery import (
    ADDRESS,
    dkim_keys,  # noqa: F401 - a fixture
    point_example_at,
    signer,  # noqa: F401 - a fixture
    signing_overlay,
)


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
        postroom.apply(review_records(2525))
        yield postroom


def test_the_api_lists_shows_approves_and_rejects(pr: Postroom) -> None:
    tokens = issue_tokens(pr)
    first, second = open_case(pr), open_case(pr)
    client = TestClient(mounted(pr))
    listed = client.get(f"{PREFIX}/reviews?state=pending&reviewer=carol", headers=tokens.admin)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert [i["case_id"] for i in items] == [second, first]  # newest first
    assert client.get(f"{PREFIX}/reviews", headers=tokens.send).status_code == 403
    one = client.get(f"{PREFIX}/reviews?limit=1", headers=tokens.admin).json()
    assert one["next"] is not None
    review_id = items[1]["id"]
    shown = client.get(f"{PREFIX}/reviews/{review_id}", headers=tokens.admin).json()
    assert shown["state"] == "pending"
    assert shown["to"] == [CUSTOMER]
    assert shown["reviewer"]["description"] == "CaseManager (operator carol)"
    assert shown["preview"]["subject"] == f"Welcome to case {first}"
    assert client.get(f"{PREFIX}/reviews/999", headers=tokens.admin).status_code == 404

    bad = client.post(
        f"{PREFIX}/reviews/{review_id}/approve", headers=tokens.admin, json={"subject": "a\nb"}
    )
    assert bad.status_code == 422, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["body.subject"]
    approved = client.post(
        f"{PREFIX}/reviews/{review_id}/approve",
        headers=tokens.admin,
        json={"html": "<p>Changed by the API</p>"},
    )
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["state"], body["decided_by"], body["edited"]) == ("approved", "api:admin", True)
    assert body["preview"]["text"] == "Changed by the API\n"
    assert "+<p>Changed by the API</p>" in body["diff"]
    again = client.post(
        f"{PREFIX}/reviews/{review_id}/reject", headers=tokens.admin, json={"reason": "x"}
    )
    assert again.status_code == 409
    assert "approved already by api:admin" in again.json()["detail"]

    other = items[0]["id"]
    empty = client.post(
        f"{PREFIX}/reviews/{other}/reject", headers=tokens.admin, json={"reason": "  "}
    )
    assert empty.status_code == 422
    assert [e["field"] for e in empty.json()["errors"]] == ["body.reason"]
    rejected = client.post(
        f"{PREFIX}/reviews/{other}/reject", headers=tokens.admin, json={"reason": "Duplicate"}
    )
    assert rejected.status_code == 200
    assert rejected.json()["reason"] == "Duplicate"
    [outbox_id] = rejected.json()["outbox_ids"]
    assert pr.outbox_entry(outbox_id).status is OutboxStatus.REJECTED
    retried = client.post(f"{PREFIX}/emails/{outbox_id}/retry", headers=tokens.admin)
    assert retried.status_code == 409


def test_the_cli_lists_shows_approves_and_rejects(
    pr: Postroom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    db = ["--database-url", pr.settings.database_url]
    runner = CliRunner()
    first, second = open_case(pr), open_case(pr)
    listed = runner.invoke(app, [*db, "reviews", "list", "--state", "pending", "--json"])
    assert listed.exit_code == 0, listed.output
    ids = {r["case_id"]: r["id"] for r in json.loads(listed.output)}
    shown = runner.invoke(app, [*db, "reviews", "show", str(ids[first])])
    assert f"subject: Welcome to case {first}" in shown.output
    assert f"to: {CUSTOMER}" in shown.output
    (tmp_path / "new.html").write_text("<p>From a file</p>")
    approved = runner.invoke(
        app,
        [*db, "reviews", "approve", str(ids[first]), "--subject", "Edited",
         "--html-file", str(tmp_path / "new.html")],
    )  # fmt: skip
    assert approved.exit_code == 0, approved.output
    assert "approved with your changes" in approved.output
    review = pr.reviews.get(ids[first])
    assert review.decided_by == f"cli:{getpass.getuser()}"
    assert review.edited is not None
    assert review.edited.text == "From a file\n"
    missing = runner.invoke(app, [*db, "reviews", "reject", str(ids[second]), "--reason", "  "])
    assert missing.exit_code == 2  # bad input, as every command answers it
    assert missing.output.startswith("error: reason: give a reason for rejecting")
    late = runner.invoke(app, [*db, "reviews", "reject", str(ids[first]), "--reason", "no"])
    assert late.exit_code != 0
    assert late.output.startswith("error: ")
    assert "approved already" in late.output
    rejected = runner.invoke(app, [*db, "reviews", "reject", str(ids[second]), "--reason", "No"])
    assert rejected.exit_code == 0, rejected.output
    table = runner.invoke(app, [*db, "reviews", "list"])
    assert "rejected" in table.output
    assert "approved" in table.output


@needs_openssl
def test_an_approved_email_is_signed_with_the_accounts_key(
    tmp_path: Path,
    signer: Signer,  # noqa: F811 - the fixture
    dkim_keys: tuple[bytes, bytes],  # noqa: F811 - the fixture
    server_tls: ssl.SSLContext,
    ca_pem: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, _ = dkim_keys
    (tmp_path / "ca.pem").write_text(ca_pem)
    overlay = signing_overlay(tmp_path, signer, private)
    (tmp_path / "secure.yaml").write_text(yaml.safe_dump(overlay))
    records = review_records(0)
    records["accounts"] = []
    records["case_types"][0]["class_group"] = "MyOrg-Mortgage-Work"
    records["case_types"][0]["class"] = "MyOrg-Mortgage-Work-Reviewed"
    with smtp_server(starttls=server_tls, credentials=(ADDRESS, "pw-demo")) as srv:
        point_example_at(monkeypatch, port=srv.port, ca_file=tmp_path / "ca.pem")
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as postroom:
            postroom.apply(tmp_path / "secure.yaml")
            postroom.apply(records)
            case = postroom.cases.create(
                "MyOrg-Mortgage-Work-Reviewed", data={"customer_email": CUSTOMER}, operator="alice"
            )
            [review] = postroom.reviews.search()
            [outbox_id] = review.outbox_ids
            waiting = postroom.outbox_store.message_bytes
            with postroom.engine.connect() as conn:
                unsealed = waiting(conn, outbox_id)
            assert unsealed is not None
            assert b"application/pkcs7-signature" not in unsealed  # sealed when approved
            postroom.reviews.approve(review.id, by="cli:tester", subject="Signed after review")
            asyncio.run(postroom.agent().run(until_idle=True))
            assert postroom.outbox_entry(outbox_id).status is OutboxStatus.SENT
        [received] = srv.sink.received
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Signed after review"
    assert parsed["X-Postroom-Case"] == case.id
    assert parsed.get_content_type() == "multipart/signed"
    result = openssl_verify(raw, signer.ca_pem, tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Verification successful" in result.stderr
