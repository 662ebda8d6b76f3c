"""Admin Studio through its ASGI app: login, CSRF, redirects, secrets, forms and pages."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from httpx2 import Response
from sqlalchemy import update
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.db import tables
from postroom.db.types import utcnow
from postroom.identity import Scope
from postroom.outbox import OutboxStatus
from postroom.outbox.activity import activity
from tests.conftest import make_settings
from tests.studiokit import csrf_of, log_in, mortgage_records, studio_client

MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"
SECRET = "Pa55-never-shown-XYZZY"
CLIENT_SECRET = "client-secret-never-shown-PLUGH"


def account_form(csrf: str, **fields: str) -> dict[str, str]:
    values = {
        "csrf_token": csrf,
        "name": "Default",
        "provider": "custom",
        "protocol": "smtp",
        "address": "noreply@example.com",
        "display_name": "Notifications",
        "host": "127.0.0.1",
        "port": "2525",
        "security": "starttls",
        "tls_min_version": "1.2",
        "on_unknown_outcome": "retry",
        "save_to_sent_items": "on",
    }
    values.update(fields)
    return values


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as opened:
        opened.apply(mortgage_records())
        yield opened


@pytest.fixture
def client(pr: Postroom, tmp_path: Path) -> Iterator[TestClient]:
    with studio_client(pr, inbox_dir=tmp_path / "inbox") as c:
        yield c


def page_paths(pr: Postroom) -> list[str]:
    """Every page of the studio, with ids of records that exist in ``pr``."""
    paths = [
        "/", "/?hours=24", "/accounts", "/accounts/new", "/auth-profiles", "/auth-profiles/new",
        "/keystores", "/keystores/new", "/operators", "/operators?edit=alice", "/case-types",
        "/correspondence", "/correspondence/new", "/correspondence/edit?name=Signature",
        "/cases", "/outbox", "/outbox?status=failed", "/agents", "/tokens", "/inbox",
        "/case-types/edit",
    ]  # fmt: skip
    paths += [f"/accounts/{a.name}" for a in pr.accounts()]
    paths += [f"/auth-profiles/{p.name}" for p in pr.auth_profiles()]
    paths += [f"/keystores/{k.name}" for k in pr.keystores()]
    paths += [f"/cases/{c.id}" for c in pr.cases.recent()]
    with pr.engine.connect() as conn:
        types = pr.case_type_store.list(conn)
    paths += [f"/case-types/edit?class_name={t.class_name}" for t in types]
    for entry in pr.outbox():
        paths += [f"/outbox/{entry.id}", f"/outbox/{entry.id}/body"]
    return paths


def test_every_page_without_a_session_redirects_to_login(client: TestClient, pr: Postroom) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.example"}]})
    paths = [*page_paths(pr), "/accounts/Default", "/cases/M-1", "/outbox/1", "/inbox/x"]
    for path in paths:
        got = client.get(path, follow_redirects=False)
        assert got.status_code == 303, path
        assert got.headers["location"].startswith("/login"), path
    # A form post without a session is not performed either.
    posted = client.post("/operators", data={"id": "x", "name": "X"}, follow_redirects=False)
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/login")
    with pr.engine.connect() as conn:
        assert pr.operator_store.find(conn, "x") is None


def log_in_then(client: TestClient, next_url: str) -> Response:
    """The answer to a login form posted with ``next``."""
    form = client.get("/login", params={"next": next_url})
    return client.post(
        "/login",
        data={
            "csrf_token": csrf_of(form.text),
            "username": "admin",
            "password": "correct-horse-battery",
            "next": next_url,
        },
        follow_redirects=False,
    )


def test_login_redirects_back_and_wrong_password_is_refused(client: TestClient) -> None:
    bounced = client.get("/outbox?status=failed", follow_redirects=False)
    assert bounced.headers["location"] == "/login?next=%2Foutbox%3Fstatus%3Dfailed"
    form = client.get(bounced.headers["location"])
    token = csrf_of(form.text)
    wrong = client.post(
        "/login", data={"csrf_token": token, "username": "admin", "password": "nope-nope-nope"}
    )
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    assert "nope-nope-nope" not in wrong.text
    done = log_in_then(client, "/outbox?status=failed")
    assert done.status_code == 303
    assert done.headers["location"] == "/outbox?status=failed"
    cookie = done.headers["set-cookie"]
    assert "postroom_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain http here; see the https test
    assert client.get("/outbox").status_code == 200


def test_login_never_redirects_to_another_site(client: TestClient) -> None:
    done = log_in_then(client, "//evil.example/")
    assert done.headers["location"] == "/"


def test_session_cookie_is_secure_over_https(pr: Postroom, tmp_path: Path) -> None:
    with studio_client(pr, https=True) as c:
        form = c.get("/login")
        done = c.post(
            "/login",
            data={
                "csrf_token": csrf_of(form.text),
                "username": "admin",
                "password": "correct-horse-battery",
            },
            follow_redirects=False,
        )
        assert done.status_code == 303
        assert "Secure" in done.headers["set-cookie"]


def test_login_without_its_csrf_token_is_refused(client: TestClient) -> None:
    client.get("/login")
    refused = client.post("/login", data={"username": "admin", "password": "correct-horse-battery"})
    assert refused.status_code == 403
    assert "postroom_session" not in client.cookies


def test_forms_without_or_with_a_wrong_csrf_token_are_refused(
    client: TestClient, pr: Postroom
) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.x"}]})
    outbox_id = pr.send(to=["a@example.net"], subject="s", body="b", class_name="Default")
    log_in(client)
    attempts = [
        ("/operators", {"id": "mallory", "name": "Mallory"}),
        ("/accounts", account_form("", name="Forged")),
        (f"/outbox/{outbox_id}/cancel", {}),
        ("/outbox/retry-failed", {}),
        ("/cases", {"case_type": MORTGAGE, "data": "applicant = X"}),
        ("/correspondence", {"name": "Forged", "subject": "s", "html": "<p>x</p>"}),
        ("/tokens", {"name": "forged", "scope": "admin"}),
        ("/case-types", {"yaml": "class: A-B-C\nclass_group: A-B\nid_prefix: X-\n"}),
        ("/logout", {}),
    ]
    for path, data in attempts:
        for token in (None, "wrong-token"):
            body = {k: v for k, v in data.items() if k != "csrf_token"}
            if token is not None:
                body["csrf_token"] = token
            got = client.post(path, data=body, follow_redirects=False)
            assert got.status_code == 403, (path, token)
    with pr.engine.connect() as conn:
        assert pr.operator_store.find(conn, "mallory") is None
        assert pr.correspondence_store.find(conn, "Forged") is None
    assert [a.name for a in pr.accounts()] == ["Default"]
    assert pr.outbox_entry(outbox_id).status is OutboxStatus.QUEUED
    assert pr.cases.recent() == []
    assert pr.identity.list_tokens() == []
    with pr.engine.connect() as conn:
        assert "A-B-C" not in {t.class_name for t in pr.case_type_store.list(conn)}
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = log_in(client)
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/", follow_redirects=False).status_code == 303


def test_account_form_validates_and_keeps_what_was_typed_except_the_secret(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    bad = client.post(
        "/accounts",
        data=account_form(
            csrf, address="not-an-address", display_name="Typed Name", password=SECRET
        ),
    )
    assert bad.status_code == 422
    assert "account address" in bad.text
    assert 'value="Typed Name"' in bad.text
    assert 'value="not-an-address"' in bad.text
    assert SECRET not in bad.text
    assert pr.accounts() == []


def test_secrets_set_through_forms_never_come_back(
    client: TestClient, pr: Postroom, tmp_path: Path
) -> None:
    csrf = log_in(client)
    made = client.post(
        "/accounts", data=account_form(csrf, password=SECRET), follow_redirects=False
    )
    assert made.status_code == 303, made.text
    assert pr.account("Default").password is not None
    profile = client.post(
        "/auth-profiles",
        data={
            "csrf_token": csrf,
            "name": "Graph",
            "client_id": "client-1",
            "client_secret": CLIENT_SECRET,
            "tenant_id": "contoso.onmicrosoft.com",
        },
        follow_redirects=False,
    )
    assert profile.status_code == 303, profile.text
    # Saving again with the secret fields empty keeps the stored secrets.
    again = client.post(
        "/accounts/Default",
        data=account_form(csrf, display_name="Renamed", password=""),
        follow_redirects=False,
    )
    assert again.status_code == 303, again.text
    account = pr.account("Default")
    assert account.display_name == "Renamed"
    assert account.password is not None
    assert account.password.get_secret_value() == SECRET
    client.post(
        "/auth-profiles/Graph",
        data={"csrf_token": csrf, "client_id": "client-2", "tenant_id": "contoso.onmicrosoft.com"},
    )
    assert pr.auth_profile("Graph").client_id == "client-2"
    assert pr.auth_profile("Graph").client_secret.get_secret_value() == CLIENT_SECRET
    case = pr.cases.create(
        MORTGAGE, data={"applicant": "Jo", "amount": 1000, "customer_email": "jo@example.net"}
    )
    pr.send(to=["x@example.net"], subject="s", body="b", case_id=case.id)
    shown = 0
    for path in page_paths(pr):
        got = client.get(path)
        assert got.status_code == 200, (path, got.text[:500])
        assert SECRET not in got.text, path
        assert CLIENT_SECRET not in got.text, path
        shown += 1
    assert shown > 20
    page = client.get("/accounts/Default").text
    assert "A value is stored" in page
    assert 'type="password" value=""' in page


def test_operators_are_validated_like_apply(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    bad = client.post(
        "/operators",
        data={"csrf_token": csrf, "id": "bob", "name": "Bob", "email": "not-an-email"},
    )
    assert bad.status_code == 422
    assert "operator email" in bad.text
    assert 'value="Bob"' in bad.text
    ok = client.post(
        "/operators",
        data={"csrf_token": csrf, "id": "bob", "name": "Bob", "email": "bob@example.com"},
    )
    assert ok.status_code == 200
    assert "Operator bob: created." in ok.text
    with pr.engine.connect() as conn:
        assert pr.operator_store.get(conn, "bob").email == "bob@example.com"


def test_case_creation_outbox_steering_and_bulk_retry(client: TestClient, pr: Postroom) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "n@example.com", "host": "h.example"}]})
    csrf = log_in(client)
    made = client.post(
        "/cases",
        data={
            "csrf_token": csrf,
            "case_type": MORTGAGE,
            "operator": "alice",
            "data": "applicant = Jane Doe\namount = 250000\ncustomer_email = jane@example.net",
        },
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text
    case_page = client.get(made.headers["location"])
    assert "Jane Doe" in case_page.text
    assert "carol.manager@example.com" in case_page.text  # the CaseManager work party
    [entry] = pr.outbox()
    assert entry.case_id is not None
    cancelled = client.post(f"/outbox/{entry.id}/cancel", data={"csrf_token": csrf})
    assert "is cancelled" in cancelled.text
    assert pr.outbox_entry(entry.id).status is OutboxStatus.CANCELLED
    retried = client.post(f"/outbox/{entry.id}/retry", data={"csrf_token": csrf})
    assert "is queued" in retried.text
    with pr.engine.begin() as conn:
        conn.execute(update(tables.outbox).values(status="failed"))
    bulk = client.post("/outbox/retry-failed", data={"csrf_token": csrf})
    assert "1 failed emails queued again" in bulk.text
    assert pr.outbox_entry(entry.id).status is OutboxStatus.QUEUED
    shown = client.get(f"/outbox/{entry.id}")
    assert "Mortgage request" in shown.text
    assert "carol.manager@example.com" in shown.text


def test_invalid_case_data_is_shown_with_the_form(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    got = client.post(
        "/cases", data={"csrf_token": csrf, "case_type": MORTGAGE, "data": "no equals sign"}
    )
    assert got.status_code == 422
    assert "write it as name = value" in got.text
    assert "no equals sign" in got.text


def test_correspondence_preview_renders_against_a_case(client: TestClient, pr: Postroom) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "n@example.com", "host": "h.example"}]})
    case = pr.cases.create(
        MORTGAGE, data={"applicant": "<b>Jo</b>", "amount": 1000}, operator="alice"
    )
    csrf = log_in(client)
    got = client.post(
        "/correspondence/preview",
        data={
            "csrf_token": csrf,
            "name": "Mortgage case creation",
            "subject": "About {{ case.id }}",
            "html": "<p>Dear {{ party.name }}, {{ case.data.applicant }}</p>",
            "case_id": case.id,
        },
    )
    assert got.status_code == 200
    assert f"About {case.id}" in got.text
    assert "Dear Carol Case-Manager" in got.text
    assert "&lt;b&gt;Jo&lt;/b&gt;" in got.text  # case data is escaped in HTML bodies
    assert "sandbox" in got.headers["content-security-policy"]
    broken = client.post(
        "/correspondence/preview",
        data={"csrf_token": csrf, "name": "X", "subject": "s", "html": "{% if %}"},
    )
    assert "syntax error" in broken.text
    saved = client.post(
        "/correspondence",
        data={"csrf_token": csrf, "name": "Broken", "subject": "s", "html": "{{ oops"},
    )
    assert saved.status_code == 422
    assert "{{ oops" in saved.text


def test_dev_inbox_lists_and_renders_messages(
    client: TestClient, pr: Postroom, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    raw = (
        b"From: a@example.com\r\nTo: b@example.net\r\nSubject: Hello inbox\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Body <b>here</b></p>\r\n"
    )
    (inbox / "1700000000000000000-000001.eml").write_bytes(raw)
    (inbox / "1700000000000000000-000001.json").write_text(
        '{"mail_from": "a@example.com", "rcpt_tos": ["b@example.net"]}'
    )
    log_in(client)
    listing = client.get("/inbox")
    assert "Hello inbox" in listing.text
    shown = client.get("/inbox/1700000000000000000-000001")
    assert "Hello inbox" in shown.text
    body = client.get("/inbox/1700000000000000000-000001/body")
    assert "<b>here</b>" in body.text
    assert "sandbox" in body.headers["content-security-policy"]
    assert client.get("/inbox/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_activity_counts_sent_and_failed_per_minute(database_url: str) -> None:
    with Postroom(make_settings(database_url)) as pr:
        pr.apply({"accounts": [{"name": "Default", "address": "n@example.com", "host": "h.x"}]})
        ids = [
            pr.send(to=["a@example.net"], subject=str(i), body="b", class_name="Default")
            for i in range(5)
        ]
        now = utcnow().replace(second=30, microsecond=0)
        t = tables.outbox
        with pr.engine.begin() as conn:
            for outbox_id, status, ago in (
                (ids[0], "sent", 0),
                (ids[1], "sent", 0),
                (ids[2], "sent", 2),
                (ids[3], "failed", 2),
                (ids[4], "sent", 500),  # outside the window
            ):
                at = now - timedelta(minutes=ago)
                values = {"status": status, "updated_at": at}
                if status == "sent":
                    values["sent_at"] = at
                conn.execute(update(t).where(t.c.id == outbox_id).values(**values))
            minutes = activity(conn, hours=1, now=now)
        assert len(minutes) == 60
        assert minutes[-1].minute == now.replace(second=0)
        assert (minutes[-1].sent, minutes[-1].failed) == (2, 0)
        assert (minutes[-3].sent, minutes[-3].failed) == (1, 1)
        assert sum(m.sent for m in minutes) == 3
        assert sum(m.failed for m in minutes) == 1


def test_api_tokens_are_created_shown_once_and_revoked(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    bad = client.post("/tokens", data={"csrf_token": csrf, "name": "crm", "scope": "root"})
    assert bad.status_code == 422
    assert "root" in bad.text
    made = client.post("/tokens", data={"csrf_token": csrf, "name": "crm", "scope": "send"})
    assert made.status_code == 201
    assert made.headers["cache-control"] == "no-store"
    [token] = pr.identity.list_tokens()
    value = made.text.split('id="token-value"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert pr.identity.authenticate(value) is not None  # the value shown is the token
    listed = client.get("/tokens")
    assert "crm" in listed.text
    assert value not in listed.text  # shown once, never again
    assert value.rsplit("_", 1)[1] not in listed.text
    asked = client.post(f"/tokens/{token.id}/revoke", data={"csrf_token": csrf})
    assert asked.status_code == 200
    assert pr.identity.authenticate(value) is not None  # only asked, not yet revoked
    revoked = client.post(
        f"/tokens/{token.id}/revoke",
        data={"csrf_token": csrf, "confirm": "1"},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert pr.identity.authenticate(value) is None


def test_case_types_are_edited_as_yaml_and_validated_like_apply(
    client: TestClient, pr: Postroom
) -> None:
    pr.apply(mortgage_records())
    csrf = log_in(client)
    editor = client.get(f"/case-types/edit?class_name={MORTGAGE}")
    text = editor.text.split('name="yaml"', 1)[1].split(">", 1)[1].split("</textarea>", 1)[0]
    text = html.unescape(text)
    assert "Notify the case manager" in text
    edited = text.replace("label: Mortgage Request", "label: Mortgage Application")
    saved = client.post(
        "/case-types", data={"csrf_token": csrf, "yaml": edited}, follow_redirects=False
    )
    assert saved.status_code == 303
    with pr.engine.connect() as conn:
        case_type = pr.case_type_store.get(conn, MORTGAGE)
    assert case_type.label == "Mortgage Application"
    assert [s.name for s in case_type.steps] == ["Notify the case manager", "Tell the customer"]
    broken = edited.replace("correspondence: Mortgage case creation", "correspondence: Nope")
    for bad, message in [
        (broken, "names correspondence &#39;Nope&#39;, which does not exist"),
        ("class: [unclosed", "not valid YAML"),
        ("- just a list", "a mapping of fields"),
    ]:
        refused = client.post("/case-types", data={"csrf_token": csrf, "yaml": bad})
        assert refused.status_code == 422, bad
        assert message in refused.text
        assert html.escape(bad.splitlines()[0]) in refused.text  # what was typed is kept
    with pr.engine.connect() as conn:
        assert pr.case_type_store.get(conn, MORTGAGE).steps[0].correspondence != "Nope"


def test_a_sent_email_offers_no_retry_or_cancel_and_case_data_keeps_types(
    client: TestClient, pr: Postroom
) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.x"}]})
    queued = pr.send(to=["a@example.net"], subject="s", body="b", class_name="Default")
    with pr.engine.begin() as conn:
        conn.execute(
            tables.outbox.update().where(tables.outbox.c.id == queued).values(status="sent")
        )
    csrf = log_in(client)
    page = client.get(f"/outbox/{queued}").text
    assert 'id="retry"' not in page
    assert 'id="cancel"' not in page
    data = "applicant = Jo\namount = 250000\ncustomer_email = jo@example.net"
    client.post("/cases", data={"csrf_token": csrf, "case_type": MORTGAGE, "data": data})
    [case] = pr.cases.recent()
    assert case.data["amount"] == 250000  # a number, as on the command line
    assert case.data["applicant"] == "Jo"


def test_creating_an_account_that_exists_is_refused_and_keeps_it(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    form = account_form(csrf, name="Sales", address="sales@example.com")
    assert client.post("/accounts", data=form, follow_redirects=False).status_code == 303
    clash = account_form(csrf, name="Sales", address="other@example.com")
    refused = client.post("/accounts", data=clash, follow_redirects=False)
    assert refused.status_code == 409
    assert "account Sales exists already: edit it instead" in refused.text
    assert pr.account("Sales").address == "sales@example.com"


def test_outbox_search_sort_and_pages_keep_each_other(client: TestClient, pr: Postroom) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.example"}]})
    for i in range(53):
        pr.send(to=[f"r{i}@example.org"], subject=f"Paged {i:02}", body="b")
    pr.send(to=["other@example.org"], subject="Unrelated", body="b")
    log_in(client)
    first = client.get("/outbox", params={"q": "paged", "sort": "subject", "order": "asc"})
    assert first.status_code == 200
    assert "53 emails, page 1 of 2." in first.text
    assert "Unrelated" not in first.text
    assert first.text.index("Paged 00") < first.text.index("Paged 49")
    assert "Paged 50" not in first.text
    # The next page keeps the search and the order; the current column says how it sorts.
    assert 'href="/outbox?q=paged&amp;sort=subject&amp;order=asc&amp;page=2"' in first.text
    assert 'aria-sort="ascending"' in first.text
    second = client.get(
        "/outbox", params={"q": "paged", "sort": "subject", "order": "asc", "page": 2}
    )
    assert "Paged 52" in second.text
    assert "Paged 49" not in second.text
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text
    # Unknown values fall back to the defaults instead of failing.
    odd = client.get("/outbox", params={"sort": "nonsense", "order": "sideways", "page": 99})
    assert odd.status_code == 200
    assert "page 2 of 2" in odd.text
    missing = client.get("/outbox", params={"q": "50%_"})
    assert "No emails match." in missing.text


def test_studio_notices_keep_their_level(client: TestClient, pr: Postroom) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.example"}]})
    outbox_id = pr.send(to=["a@example.net"], subject="s", body="b")
    csrf = log_in(client)
    with pr.engine.begin() as conn:
        conn.execute(update(tables.outbox).values(status="sent"))
    refused = client.post(f"/outbox/{outbox_id}/retry", data={"csrf_token": csrf})
    assert 'class="notice error"' in refused.text
    assert "Not done" in refused.text
    missing = client.get("/outbox/424242")
    assert missing.status_code == 404
    assert "error-page" in missing.text
    assert 'nav class="side"' in missing.text  # still signed in: the navigation stays


def test_a_live_refresh_leaves_the_notice_to_the_next_page(
    client: TestClient, pr: Postroom
) -> None:
    csrf = log_in(client)
    pr.identity.create_token(name="crm", scopes={Scope.SEND})
    [token] = pr.identity.list_tokens()
    client.post(
        f"/tokens/{token.id}/revoke",
        data={"csrf_token": csrf, "confirm": "1"},
        follow_redirects=False,
    )
    live = client.get("/outbox", headers={"X-Postroom-Live": "1"})
    assert "(crm) revoked." not in live.text
    assert "(crm) revoked." in client.get("/tokens").text


def test_dashboard_chart_has_a_legend_a_time_zone_and_its_data(
    client: TestClient, pr: Postroom
) -> None:
    pr.apply({"accounts": [{"name": "Default", "address": "a@example.com", "host": "h.example"}]})
    sent = pr.send(to=["a@example.net"], subject="Counted", body="b")
    now = utcnow().replace(microsecond=0)
    with pr.engine.begin() as conn:
        t = tables.outbox
        conn.execute(update(t).where(t.c.id == sent).values(status="sent", sent_at=now))
    log_in(client)
    shown = client.get("/").text
    legend = shown.split('class="chart-legend"', 1)[1].split("</ul>", 1)[0]
    assert "Sent" in legend
    assert "Failed" in legend
    assert "Times in UTC" in legend
    assert "time (UTC)" in shown  # the axis
    assert '<desc id="chart-desc">1 sent and 0 failed' in shown
    table = shown.split('class="chart-data"', 1)[1].split("</details>", 1)[0]
    assert f'<td class="nowrap">{now:%Y-%m-%d %H:%M}</td><td>1</td><td>0</td>' in table
    # The recent emails and the counts are refreshed in place by studio.js.
    assert 'id="recent-live" data-live' in shown
    assert 'id="queue-live" data-live' in shown


def test_a_value_of_the_wrong_type_is_a_page_not_framework_json(client: TestClient) -> None:
    csrf = log_in(client)
    for got in (
        client.get("/outbox/abc"),
        client.get("/outbox/abc/body"),
        client.post("/outbox/abc/retry", data={"csrf_token": csrf}),
    ):
        assert got.status_code == 404, got.text
        assert got.headers["content-type"].startswith("text/html")
        assert "There is nothing at /outbox/abc" in got.text
        assert "int_parsing" not in got.text
    paged = client.get("/outbox?page=many")
    assert paged.status_code in (200, 422)
    assert paged.headers["content-type"].startswith("text/html")
