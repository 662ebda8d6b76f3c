"""Path and query parameters over a real socket: NUL and bytes that are not UTF-8 are named.

On PostgreSQL a NUL in a looked-up id used to come back as "a value does not fit its
database column", naming nothing; bytes that are not UTF-8 were silently read as U+FFFD.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from postroom import Postroom
from tests.apikit import http, issue_tokens, mounted, serve
from tests.conftest import make_settings


@pytest.fixture
def api(database_url: str) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    with Postroom(make_settings(database_url)) as pr:
        tokens = issue_tokens(pr)
        with serve(mounted(pr)) as base, http(base) as client:
            yield client, tokens.admin


@pytest.mark.parametrize(
    ("url", "field", "message"),
    [
        ("/api/v1/cases/a%00b", "path.case_id", "control character U+0000 at character 2"),
        ("/api/v1/emails?account=a%00b", "query.account", "control character U+0000"),
        ("/api/v1/operators/op%00", "path.operator_id", "control character U+0000"),
        ("/api/v1/cases/a%FFb", "path.case_id", "at character 2: byte 0xFF is not UTF-8"),
        ("/api/v1/emails?account=%ED%A0%80", "query.account", "byte 0xED is not UTF-8"),
        ("/api/v1/emails?account=x&a%FF=1", "a query parameter's name", "byte 0xFF"),
    ],
)
def test_invalid_text_in_the_path_or_query_is_refused_naming_the_parameter(
    api: tuple[httpx.Client, dict[str, str]], url: str, field: str, message: str
) -> None:
    client, headers = api
    got = client.get(url, headers=headers)
    assert got.status_code == 422, got.text
    assert got.headers["content-type"] == "application/problem+json"
    problem = got.json()
    [found] = problem["errors"]
    assert found["field"] == field
    assert problem["detail"].startswith(field), problem["detail"]
    assert message in problem["detail"], problem["detail"]


def test_valid_text_in_the_path_and_query_is_looked_up(
    api: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, headers = api
    # U+FFFD sent as its own UTF-8 is valid text: looked up, not refused.
    assert client.get("/api/v1/cases/a%EF%BF%BDb", headers=headers).status_code == 404
    assert client.get("/api/v1/emails?account=Z%C3%A9ro", headers=headers).status_code == 200
