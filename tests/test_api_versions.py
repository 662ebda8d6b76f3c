"""The REST API's correspondence versions: history, one version, diff, restore, who saved."""

from __future__ import annotations

from postroom import Postroom
from postroom.identity import Scope
from tests.apikit import client, issue_tokens
from tests.test_cases import CLASS
from tests.test_correspondence_versions import CHANGED, PARAGRAPH, with_created_html

V = "/api/v1/correspondence"


def test_history_version_diff_and_restore(postroom: Postroom) -> None:
    tokens = issue_tokens(postroom)
    h = tokens.admin
    postroom.apply(with_created_html(PARAGRAPH))
    first = postroom.cases.create(CLASS, operator="alice")
    with client(postroom) as c:
        body = {"name": "Created", "subject": "Case {{ case.id }} ({{ case.type }})"}
        put = c.put(f"{V}/Created", json=body | {"html": CHANGED}, headers=h)
        assert put.status_code == 200, put.text
        postroom.cases.create(CLASS, operator="alice")

        listed = c.get(f"{V}/Created/versions", headers=h)
        assert listed.status_code == 200, listed.text
        history = listed.json()
        assert (history["current"], history["deleted"], history["updated_by"]) == (
            2,
            False,
            "api:admin",
        )
        assert [(v["number"], v["saved_by"], v["emails"]) for v in history["versions"]] == [
            (2, "api:admin", 1),
            (1, "apply", 1),
        ]

        one = c.get(f"{V}/Created/versions/1", headers=h).json()
        assert one["correspondence"]["html"] == PARAGRAPH
        assert (one["number"], one["emails"], one["current"]) == (1, 1, False)

        diff = c.get(f"{V}/Created/diff", params={"from": 1}, headers=h).json()
        assert (diff["from"], diff["to"], diff["changed"]) == (1, 2, True)
        [html] = diff["parts"]
        assert html["part"] == "html"
        assert {"kind": "added", "text": CHANGED, "old": None, "new": 1} in html["lines"]
        assert f"+{CHANGED}" in diff["unified"]

        restored = c.post(f"{V}/Created/versions/1/restore", headers=h)
        assert restored.status_code == 200, restored.text
        assert restored.json() == {
            "name": "Created",
            "restored": 1,
            "change": "updated",
            "current": 3,
        }
        again = c.post(f"{V}/Created/versions/3/restore", headers=h).json()
        assert (again["change"], again["current"]) == ("unchanged", 3)
        latest = c.get(f"{V}/Created/versions", headers=h).json()["versions"][0]
        assert (latest["saved_by"], latest["note"]) == ("api:admin", "restored from version 1")

        # Each email names what it was rendered from, and the list filters by it.
        email = c.get("/api/v1/emails", params={"case_id": first.id}, headers=h).json()
        [row] = email["items"]
        assert (row["correspondence"], row["correspondence_version"], row["language"]) == (
            "Created",
            1,
            "en",
        )
        used = c.get(
            "/api/v1/emails",
            params={"correspondence": "Created", "correspondence_version": 2},
            headers=h,
        ).json()["items"]
        assert [e["correspondence_version"] for e in used] == [2]
        assert (
            len(
                c.get("/api/v1/emails", params={"correspondence": "Created"}, headers=h).json()[
                    "items"
                ]
            )
            == 2
        )


def test_unknown_and_bad_numbers_are_problems(postroom: Postroom) -> None:
    h = issue_tokens(postroom).admin
    postroom.apply({"correspondence": [{"name": "One", "subject": "S", "html": "<p>x</p>"}]})
    with client(postroom) as c:
        missing = c.get(f"{V}/Nope/versions", headers=h)
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert "Nope" in missing.json()["detail"]
        assert c.get(f"{V}/One/versions/9", headers=h).status_code == 404
        assert c.get(f"{V}/One/diff", params={"from": 1, "to": 9}, headers=h).status_code == 404
        assert c.post(f"{V}/One/versions/9/restore", headers=h).status_code == 404
        for bad in ("0", "-1", "x", str(2**31)):
            r = c.get(f"{V}/One/versions/{bad}", headers=h)
            assert r.status_code == 422, bad
            assert r.json()["errors"][0]["field"].startswith("path.")
        assert c.get(f"{V}/One/diff", headers=h).status_code == 422  # from is required
        assert c.get(f"{V}/One/diff", params={"from": "a"}, headers=h).status_code == 422


def test_reading_and_restoring_need_an_admin_token(postroom: Postroom) -> None:
    send = issue_tokens(postroom).send
    reader = postroom.identity.create_token(name="reader", scopes={Scope.SEND}).value
    postroom.apply({"correspondence": [{"name": "One", "subject": "S", "html": "<p>x</p>"}]})
    with client(postroom) as c:
        assert c.get(f"{V}/One/versions", headers=send).status_code == 403
        auth = {"Authorization": f"Bearer {reader}"}
        assert c.post(f"{V}/One/versions/1/restore", headers=auth).status_code == 403
        assert c.get(f"{V}/One/versions").status_code == 401


def test_restore_refused_by_todays_checks_is_a_422(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    h = issue_tokens(pr).admin
    pr.apply({"correspondence": [{"name": "Base", "html": "<p>base</p>"}]})
    pr.apply({"correspondence": [{"name": "Uses", "subject": "S", "html": "{% include 'Base' %}"}]})
    pr.apply({"correspondence": [{"name": "Uses", "subject": "S", "html": "<p>alone</p>"}]})
    with pr.engine.begin() as conn:
        pr.correspondence_store.delete(conn, "Base")
    with client(pr) as c:
        r = c.post(f"{V}/Uses/versions/1/restore", headers=h)
        assert r.status_code == 422
        assert "Base" in r.json()["detail"]
