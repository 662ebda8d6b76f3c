"""Admin Studio: deleting every record type, with a confirmation and the API's refusals."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from starlette.testclient import TestClient

from postroom import Postroom, catalog
from postroom.errors import NotFoundError
from postroom.web.render import NOTICE_COOKIE
from tests.conftest import make_settings
from tests.studiokit import csrf_of, log_in, mortgage_records, studio_client
from tests.test_record_kinds import apply_records, signing_keystore

MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"


@pytest.fixture
def pr(tmp_path: Path) -> Iterator[Postroom]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as opened:
        opened.apply(mortgage_records())
        apply_records(opened)
        opened.apply({"keystores": [signing_keystore("Spare")]})
        yield opened


@pytest.fixture
def client(pr: Postroom) -> Iterator[TestClient]:
    with studio_client(pr) as c:
        yield c


def notice(client: TestClient) -> str:
    """The level and text of the notice the last redirect set."""
    return unquote(client.cookies.get(NOTICE_COOKIE) or "")


def test_delete_asks_first_then_deletes(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    asked = client.post("/operators/frank/delete", data={"csrf_token": csrf})
    assert asked.status_code == 200
    assert "Delete operator frank?" in html.unescape(asked.text)
    assert 'name="confirm" value="1"' in asked.text
    assert catalog.record(pr, catalog.OPERATORS, "frank")  # nothing deleted yet

    done = client.post(
        "/operators/frank/delete", data={"csrf_token": csrf, "confirm": "1"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/operators"
    assert notice(client) == "success:Operator frank deleted."
    with pytest.raises(NotFoundError):
        catalog.record(pr, catalog.OPERATORS, "frank")


@pytest.mark.parametrize(
    ("slug", "key", "reason"),
    [
        ("auth-profiles", "entra", "auth profile entra is still used by account Graph"),
        ("keystores", "Sign", "keystore Sign is still used by account Graph (signing)"),
        ("operators", "carol", "operator carol is still used by operator alice (reports to)"),
        ("correspondence", "Signature", "correspondence 'Signature' is still used by"),
        ("case-types", "A-B-C", "case type A-B-C is still used by case C-1"),
    ],
)
def test_a_record_in_use_is_refused_as_an_error(
    client: TestClient, pr: Postroom, slug: str, key: str, reason: str
) -> None:
    csrf = log_in(client)
    for confirm in ("", "1"):
        r = client.post(
            f"/{slug}/{quote(key, safe='')}/delete",
            data={"csrf_token": csrf, "confirm": confirm},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert r.headers["location"] == f"/{slug}"
        assert notice(client).startswith(f"error:Not deleted: {reason}")
        shown = html.unescape(client.get(f"/{slug}").text)
        assert f'<p class="notice error" role="alert">Not deleted: {reason}' in shown
    catalog.record(pr, catalog.BY_SLUG[slug], key)  # still there


def test_every_record_type_can_be_deleted(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    # Unused records of each type, deleted from their list pages' buttons.
    for slug, key in [
        ("accounts", "Spare"),
        ("auth-profiles", "unused"),
        ("keystores", "Spare"),
        ("operators", "frank"),
        ("correspondence", "Unused letter"),
        ("case-types", "A-B-D"),
    ]:
        listing = client.get(f"/{slug}").text
        url = f"/{slug}/{quote(key, safe='')}/delete"
        assert f'action="{url}"' in listing, slug
        assert "data-sortable" in listing
        assert "data-filter-for" in listing
        r = client.post(url, data={"csrf_token": csrf, "confirm": "1"}, follow_redirects=False)
        assert r.status_code == 303, (slug, r.text)
        assert notice(client).startswith("success:"), slug
        with pytest.raises(NotFoundError):
            catalog.record(pr, catalog.BY_SLUG[slug], key)


def test_delete_needs_the_csrf_token_and_a_record(client: TestClient, pr: Postroom) -> None:
    csrf = log_in(client)
    forged = client.post("/operators/frank/delete", data={"confirm": "1"})
    assert forged.status_code == 403
    catalog.record(pr, catalog.OPERATORS, "frank")
    missing = client.post("/operators/nobody/delete", data={"csrf_token": csrf, "confirm": "1"})
    assert missing.status_code == 404


def test_edit_pages_offer_delete(client: TestClient) -> None:
    log_in(client)
    for path, action in [
        ("/accounts/Spare", "/accounts/Spare/delete"),
        ("/auth-profiles/entra", "/auth-profiles/entra/delete"),
        ("/keystores/Sign", "/keystores/Sign/delete"),
        ("/correspondence/edit?name=Signature", "/correspondence/Signature/delete"),
        (f"/case-types/edit?class_name={MORTGAGE}", f"/case-types/{MORTGAGE}/delete"),
    ]:
        page = client.get(path)
        assert page.status_code == 200, path
        assert f'action="{action}"' in page.text, path
        csrf_of(page.text)


def test_a_name_with_a_slash_is_deleted(client: TestClient, pr: Postroom) -> None:
    pr.apply({"correspondence": [{"name": "Notes/2024 draft", "subject": "s", "html": "<p>x</p>"}]})
    csrf = log_in(client)
    editor = client.get("/correspondence/edit?name=Notes%2F2024%20draft").text
    url = "/correspondence/Notes%2F2024%20draft/delete"
    assert f'action="{url}"' in editor
    asked = client.post(url, data={"csrf_token": csrf})
    assert "Delete correspondence Notes/2024 draft?" in html.unescape(asked.text)
    done = client.post(url, data={"csrf_token": csrf, "confirm": "1"}, follow_redirects=False)
    assert done.status_code == 303
    with pytest.raises(NotFoundError):
        catalog.record(pr, catalog.CORRESPONDENCE, "Notes/2024 draft")
