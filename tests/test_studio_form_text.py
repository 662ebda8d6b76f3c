"""Studio forms over a real socket: text that is not UTF-8 is refused by field, big fields pass.

Starlette's form parser replaces bytes that are not UTF-8 with U+FFFD and answers a
field over 1 MB with a bare 400; the Studio reads urlencoded forms itself and refuses
such text on a 422 page naming the field, and lets a field be as large as the body.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from postroom import Postroom
from postroom.web import create_studio
from tests.apikit import http, serve
from tests.conftest import make_settings
from tests.studiokit import ADMIN, PASSWORD, csrf_of

LIMIT = 4 * 1024 * 1024
CASE_TYPE = "A-B-C"
RECORDS = {"case_types": [{"class": CASE_TYPE, "class_group": "A-B", "id_prefix": "C-"}]}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Studio:
    """A running Studio, a logged-in client and its session's CSRF token."""

    postroom: Postroom
    web: httpx.Client
    csrf: str


@pytest.fixture
def studio(database_url: str) -> Iterator[Studio]:
    with Postroom(make_settings(database_url, max_request_bytes=LIMIT)) as pr:
        pr.apply(RECORDS)
        pr.identity.create_admin(username=ADMIN, password=PASSWORD)
        with serve(create_studio(pr)) as base, http(base) as web:
            login = web.get("/login")
            fields = {"csrf_token": csrf_of(login.text), "username": ADMIN, "password": PASSWORD}
            assert web.post("/login", data=fields).status_code == 303
            yield Studio(pr, web, csrf_of(web.get("/").text))


def post(studio: Studio, path: str, fields: str) -> httpx.Response:
    """POST a urlencoded body written by hand (percent-escapes as given)."""
    body = f"csrf_token={studio.csrf}&{fields}".encode()
    return studio.web.post(path, content=body, headers=FORM, follow_redirects=False)


def assert_refused(got: httpx.Response, message: str) -> None:
    assert got.status_code == 422, got.text[:500]
    assert got.headers["content-type"].startswith("text/html")
    assert 'id="form-error"' in got.text
    assert message in got.text, got.text[-800:]
    assert "\ufffd" not in got.text


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        (
            "/operators",
            "id=zoro&name=Z%FFro",
            "name is not valid Unicode at character 2: byte 0xFF is not UTF-8",
        ),
        (
            "/correspondence",
            "name=C%FF&subject=s&html=x",
            "name is not valid Unicode at character 2: byte 0xFF is not UTF-8",
        ),
        ("/tokens", "name=t%FFx&scope=send", "name is not valid Unicode at character 2"),
        # An encoded surrogate (CESU-8) is not UTF-8 either.
        ("/tokens", "name=t%ED%A0%80x&scope=send", "name is not valid Unicode at character 2"),
        (
            "/cases",
            f"case_type={CASE_TYPE}&data=applicant+%3D+%FF",
            "data is not valid Unicode at character 13",
        ),
    ],
)
def test_urlencoded_text_that_is_not_utf8_is_refused_naming_the_field(
    studio: Studio, path: str, fields: str, message: str
) -> None:
    assert_refused(post(studio, path, fields), message)
    assert not [t for t in studio.postroom.identity.list_tokens() if "\ufffd" in t.name]


def test_valid_text_is_still_saved_and_a_bad_login_name_is_refused(studio: Studio) -> None:
    created = post(studio, "/tokens", "name=Z%C3%A9ro+%F0%9F%98%80&scope=send")
    assert created.status_code == 201, created.text[:500]
    assert "Zéro 😀" in [t.name for t in studio.postroom.identity.list_tokens()]
    with http(str(studio.web.base_url)) as stranger:
        login = stranger.get("/login")
        body = f"csrf_token={csrf_of(login.text)}&username=adm%FFin&password=x".encode()
        refused = stranger.post("/login", content=body, headers=FORM)
    assert_refused(refused, "username is not valid Unicode at character 4")


def test_a_multipart_field_over_one_megabyte_is_read_up_to_the_body_limit(
    studio: Studio,
) -> None:
    html = "<p>" + "x" * (3 * 1024 * 1024) + "</p>"
    fields = {"csrf_token": studio.csrf, "name": "Big", "subject": "s", "html": html}
    saved = studio.web.post(
        "/correspondence", files={"_": ("", b"")}, data=fields, follow_redirects=False
    )
    assert saved.status_code == 303, saved.text[:500]
    assert "Big" in studio.web.get("/correspondence").text
