"""REST API end to end: over a real socket, idempotency, paging, metrics, a database down."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from postroom import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from tests.apikit import client, http, issue_tokens, mounted, serve
from tests.conftest import make_settings
from tests.fakes import ServerInfo, smtp_server
from tests.test_delivery import account

EXAMPLES = Path(__file__).parent.parent / "examples"
MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"


@pytest.fixture
def mortgage(
    tmp_path: Path, server_tls: ssl.SSLContext, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Postroom, ServerInfo]]:
    """examples/mortgage.yaml applied, its accounts pointing at a STARTTLS test server."""
    (tmp_path / "ca.pem").write_text(ca_pem)
    with smtp_server(starttls=server_tls, credentials=("mortgages@example.com", "pw-demo")) as srv:
        monkeypatch.setenv("POSTROOM_DEMO_SMTP_PASSWORD", "pw-demo")
        monkeypatch.setenv("POSTROOM_DEMO_SMTP_PORT", str(srv.port))
        monkeypatch.setenv("POSTROOM_DEMO_CA_FILE", str(tmp_path / "ca.pem"))
        with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
            pr.apply(EXAMPLES / "mortgage.yaml")
            yield pr, srv


def test_mortgage_case_over_a_real_socket_is_sent(
    mortgage: tuple[Postroom, ServerInfo],
) -> None:
    pr, srv = mortgage
    tokens = issue_tokens(pr)
    body = {"case_type": MORTGAGE, "data": {"applicant": "Zoë", "amount": 250000},
            "operator": "alice"}  # fmt: skip
    with serve(mounted(pr)) as base, http(base) as c:
        key = {"Idempotency-Key": "mortgage-1"}
        first = c.post("/api/v1/cases", json=body, headers=tokens.send | key)
        assert first.status_code == 201, first.text
        case_id = first.json()["id"]
        assert first.headers["Location"].endswith(f"/api/v1/cases/{case_id}")
        replay = c.post("/api/v1/cases", json=body, headers=tokens.send | key)
        assert replay.status_code == 201
        assert replay.json()["id"] == case_id
        assert replay.headers["Idempotent-Replayed"] == "true"
        other = c.post("/api/v1/cases", json=body | {"data": {}}, headers=tokens.send | key)
        assert other.status_code == 422
        assert other.headers["content-type"] == "application/problem+json"

        emails = c.get(f"/api/v1/emails?case_id={case_id}", headers=tokens.admin).json()
        [email] = emails["items"]
        assert email["status"] == "queued"
        asyncio.run(pr.agent().run(until_idle=True))
        sent = c.get(f"/api/v1/emails/{email['id']}", headers=tokens.send)
        assert sent.status_code == 200
        assert sent.json()["status"] == "sent"
        assert sent.json()["recipients"][0]["address"] == "carol.manager@example.com"
    with pr.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.cases)).scalar() == 1
    [received] = srv.sink.received
    assert received.rcpt_tos == ["carol.manager@example.com"]
    assert case_id in str(received.message["Subject"])


def test_concurrent_requests_with_one_key_create_once(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"}]})
        tokens = issue_tokens(pr)
        headers = tokens.send | {"Idempotency-Key": "same-key"}
        results: list[tuple[int, str]] = []
        barrier = threading.Barrier(6, timeout=10)
        with serve(mounted(pr)) as base:

            def post() -> None:
                with http(base) as c:
                    barrier.wait()
                    r = c.post("/api/v1/cases", json={"case_type": "A-B-C"}, headers=headers)
                    results.append((r.status_code, r.json().get("id", r.text)))

            threads = [threading.Thread(target=post) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert not any(t.is_alive() for t in threads)
        assert len(results) == 6
        assert {status for status, _ in results} == {201}, results
        assert len({case_id for _, case_id in results}) == 1
        with pr.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(tables.cases)).scalar() == 1


def test_emails_page_with_a_next_link_and_steering(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"accounts": [account(1)]})
    tokens = issue_tokens(pr)
    with client(pr) as c:
        ids = []
        for n in range(5):
            r = c.post(
                "/api/v1/emails",
                json={"to": [f"r{n}@example.com"], "subject": f"S{n}", "body": "<p>B</p>",
                      "class_name": "Default"},
                headers=tokens.send | {"Idempotency-Key": f"k{n}"},
            )  # fmt: skip
            assert r.status_code == 201, r.text
            ids.append(r.json()["ids"][0])
        seen: list[int] = []
        url: str | None = "/api/v1/emails?limit=2&status=queued"
        for _ in range(10):  # bounded: 5 emails are 3 pages
            if url is None:
                break
            page = c.get(url, headers=tokens.admin).json()
            seen.extend(e["id"] for e in page["items"])
            url = page["next"]
        assert seen == sorted(ids, reverse=True)
        cancelled = c.post(f"/api/v1/emails/{ids[0]}/cancel", headers=tokens.admin)
        assert cancelled.json()["status"] == "cancelled"
        again = c.post(f"/api/v1/emails/{ids[0]}/cancel", headers=tokens.admin)
        assert again.status_code == 409
        assert (
            c.post(f"/api/v1/emails/{ids[0]}/retry", headers=tokens.admin).json()["status"]
            == "queued"
        )
        assert c.get("/api/v1/emails/999999", headers=tokens.admin).status_code == 404
        bad = c.post(
            "/api/v1/emails",
            json={"to": ["x@example.com\r\nBcc: y@example.com"], "subject": "S", "body": "B"},
            headers=tokens.send,
        )
        assert bad.status_code == 422, bad.text
        unknown = c.post(
            "/api/v1/emails",
            json={"to": ["x@example.com"], "correspondence": "Nope", "class_name": "Default"},
            headers=tokens.send,
        )
        assert unknown.status_code == 422, unknown.text


def test_metrics_agents_and_account_test(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    tokens = issue_tokens(pr)
    with smtp_server() as srv:
        pr.apply({"accounts": [account(srv.port)]})
        pr.send(to=["a@example.com"], subject="S", body="B", class_name="Default")
        stats = asyncio.run(pr.agent().run(until_idle=True))
        del stats
        with client(pr) as c:
            tested = c.post("/api/v1/accounts/Default/test", headers=tokens.admin)
            assert tested.status_code == 200, tested.text
            assert tested.json()["ok"] is True
            metrics = c.get("/api/v1/metrics", headers=tokens.admin)
            assert metrics.headers["content-type"].startswith("text/plain")
            assert 'postroom_outbox_emails{status="sent"} 1.0' in metrics.text
            assert 'postroom_agents{state="stopped"} 1.0' in metrics.text
            [agent] = c.get("/api/v1/agents", headers=tokens.admin).json()
            paused = c.post(f"/api/v1/agents/{agent['id']}/pause", headers=tokens.admin)
            assert paused.json()["paused"] is True
            resumed = c.post(f"/api/v1/agents/{agent['id']}/resume", headers=tokens.admin)
            assert resumed.json()["paused"] is False
            assert c.post("/api/v1/agents/nobody/pause", headers=tokens.admin).status_code == 404


def test_attachments_round_trip(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"}]})
    tokens = issue_tokens(pr)
    with client(pr) as c:
        case_id = c.post("/api/v1/cases", json={"case_type": "A-B-C"}, headers=tokens.send).json()[
            "id"
        ]
        up = c.post(
            f"/api/v1/cases/{case_id}/attachments",
            files={"file": ("contrat signé.pdf", b"%PDF-1.4 data", "application/pdf")},
            headers=tokens.send,
        )
        assert up.status_code == 201, up.text
        [info] = up.json()["attachments"]
        down = c.get(f"/api/v1/cases/{case_id}/attachments/{info['name']}", headers=tokens.send)
        assert down.status_code == 200
        assert down.content == b"%PDF-1.4 data"
        assert down.headers["content-type"] == "application/pdf"
        assert down.headers["content-disposition"].startswith("attachment")
        status = c.post(
            f"/api/v1/cases/{case_id}/status",
            json={"status": "Open", "operator": "ghost"},
            headers=tokens.send,
        )
        assert status.status_code == 422  # the operator named in the body does not exist


def test_database_unavailable_is_503_never_2xx(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    with Postroom(make_settings(f"sqlite:///{folder / 'p.db'}")) as pr:
        pr.apply({"case_types": [{"class": "A-B-C", "class_group": "A-B", "id_prefix": "C-"}]})
        tokens = issue_tokens(pr)
        with serve(mounted(pr)) as base, http(base) as c:
            assert c.get("/api/v1/healthz").status_code == 200
            # The database goes away: no open connection, and its folder is gone.
            pr.engine.dispose()
            folder.rename(tmp_path / "moved")
            health = c.get("/api/v1/healthz")
            assert health.status_code == 503
            assert health.headers["Retry-After"].isdigit()
            body = health.json()
            assert body["status"] == "unavailable"
            assert body["database"]["reachable"] is False
            assert "unable to open database file" in body["database"]["error"]
            requests: tuple[tuple[str, str, dict[str, str]], ...] = (
                ("POST", "/cases", tokens.send),
                ("GET", "/accounts", tokens.admin),
            )
            for method, path, headers in requests:
                r = c.request(
                    method, f"/api/v1{path}", json={"case_type": "A-B-C"}, headers=headers
                )
                assert r.status_code == 503, (path, r.text)
                assert r.headers["Retry-After"].isdigit()
                assert r.headers["content-type"] == "application/problem+json"
            (tmp_path / "moved").rename(folder)
            assert c.get("/api/v1/healthz").status_code == 200
            assert c.get("/api/v1/cases", headers=tokens.admin).json() == []  # nothing created


def test_emails_take_priority_schedule_and_expiry(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [account(2525)]})
        tokens = issue_tokens(pr)
        api = client(pr)
        body = {
            "to": ["a@example.org"], "subject": "s", "body": "<p>b</p>", "priority": "high",
            "send_after": "2099-01-01T09:00:00+01:00", "expires_at": "2099-01-02T09:00:00Z",
        }  # fmt: skip
        created = api.post("/api/v1/emails", json=body, headers=tokens.send)
        assert created.status_code == 201, created.text
        [email] = created.json()["emails"]
        assert email["priority"] == "high"
        assert email["next_attempt_at"].startswith("2099-01-01T08:00:00")
        assert email["expires_at"].startswith("2099-01-02T09:00:00")
        naive = api.post(
            "/api/v1/emails",
            json={**body, "expires_at": "2099-01-02T09:00:00"},
            headers=tokens.send,
        )
        assert naive.status_code == 422
        assert naive.json()["errors"][0]["field"].endswith("expires_at")
        late = api.post(
            "/api/v1/emails",
            json={**body, "send_after": "2099-01-03T00:00:00Z"},
            headers=tokens.send,
        )
        assert late.status_code == 422
        assert "must come before expires_at" in late.json()["detail"]


def test_idempotency_keys_are_kept_a_day(tmp_path: Path) -> None:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        pr.apply({"accounts": [account(2525)]})
        tokens = issue_tokens(pr)
        api = client(pr)
        body = {"to": ["a@example.org"], "subject": "s", "body": "<p>b</p>"}

        def post(key: str) -> int:
            got = api.post(
                "/api/v1/emails", json=body, headers={**tokens.send, "Idempotency-Key": key}
            )
            assert got.status_code == 201, got.text
            return int(got.json()["ids"][0])

        first = post("k1")
        assert post("k1") == first  # replayed
        keys = tables.idempotency_keys
        with pr.engine.begin() as conn:
            conn.execute(keys.update().values(created_at=utcnow() - timedelta(hours=25)))
        post("k2")  # recording a key sweeps the ones older than a day
        with pr.engine.connect() as conn:
            assert conn.execute(select(keys.c.key)).scalars().all() == ["k2"]
        assert post("k1") != first  # a day later the key is new again
