"""Text that is not valid Unicode, and control characters, at every entry point, fuzzed.

Lone surrogates (what Python makes of undecodable argv bytes and of ``"\\ud800"``
escapes), bytes that are not UTF-8, and control characters go in through the Python
API, apply files, the CLI (in process and as a real process with bytes argv), the REST
API over a real HTTP server, and the Studio's forms and uploads. Each input is either
refused with a one-line Postroom error naming its field, or accepted and written safely:
the queued message is 7-bit and parses back with the standard library to the text given.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cases.emails import EmailRequest
from postroom.cli import app as cli_app
from postroom.errors import InvalidTextError, PostroomError
from postroom.validation import single_line
from postroom.web import create_studio
from tests.apikit import http, issue_tokens, mounted, serve
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import ADMIN, PASSWORD, log_in

T = TypeVar("T")
CASE_TYPE = "A-B-C"
RECORDS: dict[str, Any] = {
    "accounts": [
        {
            "name": "Default",
            "address": "noreply@example.com",
            "host": "127.0.0.1",
            "port": 2525,
            "security": "none",
        }
    ],
    "case_types": [{"class": CASE_TYPE, "class_group": "A-B", "id_prefix": "C-"}],
}

FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Lone surrogates (U+DC80-U+DCFF is surrogateescape's mark of an undecodable byte), every
# kind of control and line break, and text that is fine: non-ASCII, a BOM, U+FFFF.
PIECES = [
    "\ud800", "\udbff", "\udc80", "\udcff", "\udfff",
    "\x00", "\x01", "\x08", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1b", "\x1f",
    "\x7f", "\x85", "\u2028", "\u2029",
    "\ufeff", "\ufffd", "\uffff", "é", "日本", "😀", " ", "  ", "a", "<b>", "&",
]  # fmt: skip
# Braces are left out: subjects and bodies are templates, and "{{" is their syntax.
hostile = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.text(st.characters(codec="utf-8", exclude_characters="{}"), max_size=4),
    ),
    max_size=8,
).map("".join)
# Argument bytes, as a shell passes them: some valid UTF-8, some not.
raw_bytes = st.lists(
    st.one_of(
        st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\x80", b"ok", b" "]),
        hostile.filter(lambda s: "\x00" not in s).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
    min_size=1,
    max_size=5,
).map(b"".join)

_SURROGATE = re.compile("[\ud800-\udfff]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_BODY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def line_ok(value: str) -> bool:
    """What a subject, name or address may be: valid Unicode, one line, no controls."""
    return not _SURROGATE.search(value) and not _LINE_CONTROL.search(value)


def body_ok(value: str) -> bool:
    """What a body may be: valid Unicode; tab, CR and LF its only controls."""
    return not _SURROGATE.search(value) and not _BODY_CONTROL.search(value)


def stored_ok(value: str) -> bool:
    """What any stored text may be: valid Unicode without NUL."""
    return not _SURROGATE.search(value) and "\x00" not in value


def attempt(call: Callable[[], T]) -> T | Exception:
    try:
        return call()
    except PostroomError as exc:
        return exc


def assert_one_line(message: str) -> None:
    assert message.strip(), "an empty message"
    assert len(message.splitlines()) == 1, repr(message)
    message.encode("utf-8")  # printable anywhere: no lone surrogate in it


def assert_refused(outcome: object, *fields: str) -> None:
    """``outcome`` is a Postroom error on one line naming one of ``fields``."""
    assert isinstance(outcome, PostroomError), repr(outcome)
    assert_one_line(str(outcome))
    assert any(f in str(outcome) for f in fields), (str(outcome), fields)
    if isinstance(outcome, InvalidTextError):
        assert outcome.field
        assert outcome.field in str(outcome)


def parse(raw: bytes) -> EmailMessage:
    raw.decode("ascii")  # 7-bit throughout: nothing left for a server to misread
    assert b"\r\n\r\n" in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def queued_message(postroom: Postroom, outbox_id: int) -> EmailMessage:
    with postroom.engine.connect() as conn:
        raw = postroom.outbox_store.message_bytes(conn, outbox_id)
    assert raw is not None
    return parse(raw)


def lines(text: str) -> str:
    """Text as the template engine and the message give it back: LF line ends, no last one."""
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n")


def assert_sent_intact(postroom: Postroom, outbox_id: int, subject: str, body: str) -> None:
    msg = queued_message(postroom, outbox_id)
    assert msg.defects == []
    assert str(msg["Subject"]) == single_line(subject)
    html = msg.get_body(("html",))
    assert html is not None
    assert lines(html.get_content()) == lines(body)


def queued_count(postroom: Postroom) -> int:
    return sum(postroom.outbox_counts().values())


@pytest.fixture
def edge(database_url: str) -> Iterator[Postroom]:
    """Postroom with a Default account and a case type, on SQLite and PostgreSQL."""
    pr = Postroom(make_settings(database_url))
    try:
        pr.apply(RECORDS)
        yield pr
    finally:
        pr.close()


# --- the Python API ---------------------------------------------------------------------


@FUZZ
@given(subject=hostile, body=hostile)
@example(subject="\udcff", body="ok")
@example(subject="ok", body="\ud800")
@example(subject="a\x00b", body="ok")
@example(subject="ok", body="tab\tcr\rlf\nend")
def test_send_refuses_or_queues_intact(edge: Postroom, subject: str, body: str) -> None:
    before = queued_count(edge)
    sent = attempt(lambda: edge.send(to=["a@example.com"], subject=subject, body=body))
    bad = [f for f, ok in (("subject", line_ok(subject)), ("body", body_ok(body))) if not ok]
    if bad:
        assert_refused(sent, *bad)
        assert queued_count(edge) == before
    elif isinstance(sent, int):
        assert_sent_intact(edge, sent, subject, body)
    else:  # valid text refused for another reason (an empty subject): never as text
        assert not isinstance(sent, InvalidTextError), sent


@FUZZ
@given(subject=hostile, number=st.integers(0, 2))
def test_send_many_names_the_email(edge: Postroom, subject: str, number: int) -> None:
    requests = [
        EmailRequest.addressed(to=["a@example.com"], subject="fine", body="b") for _ in range(3)
    ]
    requests[number] = EmailRequest.addressed(to=["a@example.com"], subject=subject, body="b")
    sent = attempt(lambda: edge.send_many(requests))
    if not line_ok(subject):
        assert_refused(sent, f"emails.{number}.subject")
    elif isinstance(sent, list):
        assert_sent_intact(edge, sent[number], subject, "b")


@FUZZ
@given(key=st.sampled_from(["note", "\ud800", "k\x00"]), value=hostile, case_type=hostile)
@example(key="note", value="\udcff", case_type=CASE_TYPE)
@example(key="note", value="nul\x00", case_type=CASE_TYPE)
def test_create_case_refuses_or_stores_intact(
    edge: Postroom, key: str, value: str, case_type: str
) -> None:
    case_type = case_type if not line_ok(case_type) else CASE_TYPE
    created = attempt(lambda: edge.cases.create(case_type, data={key: value}))
    if not line_ok(case_type):
        assert_refused(created, "case_type")
    elif not stored_ok(key) or not stored_ok(value):
        assert_refused(created, "data")
    else:
        assert not isinstance(created, Exception), created
        assert edge.cases.get(created.id).data == {key: value}


@FUZZ
@given(name=hostile, html=hostile)
@example(name="Car\ud800l", html="ok")
@example(name="ok", html="<p>\x00</p>")
def test_apply_mapping_refuses_or_stores_intact(edge: Postroom, name: str, html: str) -> None:
    records = {
        "operators": [{"id": "op", "name": name or "x", "email": "op@example.com"}],
        "correspondence": [{"name": "Letter", "subject": "s", "html": html or "x"}],
    }
    applied = attempt(lambda: edge.apply(records))
    if not stored_ok(name or "x"):
        assert_refused(applied, "operators[0].name")
    elif not stored_ok(html or "x"):
        assert_refused(applied, "correspondence[0].html")
    elif not line_ok(name or "x"):
        assert_refused(applied, "operator name")  # the model's own rule for names
    else:
        assert not isinstance(applied, Exception), applied


# --- apply files: YAML and JSON ---------------------------------------------------------


def first_bad_byte(data: bytes, *, errors: str = "strict") -> int | None:
    try:
        data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        return exc.start
    return None


@FUZZ
@given(name=raw_bytes, escaped=hostile, as_json=st.booleans())
@example(name="Carél".encode("latin-1"), escaped="ok", as_json=False)
@example(name=b"ok", escaped="\ud800", as_json=True)
@example(name=b"ok", escaped="a\x00", as_json=False)
@example(name=b"ok", escaped="\U0001f600 \u00e9", as_json=True)  # JSON's pair of escapes
def test_apply_file_refuses_with_path_line_and_offset(
    edge: Postroom, tmp_path: Path, name: bytes, escaped: str, as_json: bool
) -> None:
    # The name is written raw (bytes that may not be UTF-8); the subject as escapes
    # (JSON's \uXXXX, which YAML reads too), which can spell a lone surrogate or NUL.
    subject = json.dumps(escaped).encode()
    if as_json:
        text = b'{"operators": [{"id": "op", "email": "op@example.com",\n "name": "%s"}],\n'
        text += b' "correspondence": [{"name": "L", "html": "x", "subject": %s}]}\n'
    else:
        text = b'operators:\n  - {id: op, email: op@example.com,\n     name: "%s"}\n'
        text += b"correspondence:\n  - {name: L, html: x, subject: %s}\n"
    path = tmp_path / ("records.json" if as_json else "records.yaml")
    # Controls and quotes are kept out of the raw name: YAML refuses those itself.
    name = bytes(c for c in name if c >= 0x20 and c not in b'"\\\x7f')
    path.write_bytes(text % (name, subject))
    applied = attempt(lambda: edge.apply(path))
    offset = first_bad_byte(path.read_bytes())
    if offset is not None:
        assert_refused(applied, str(path))
        line = path.read_bytes()[:offset].count(b"\n") + 1
        assert f"line {line}, byte offset {offset}:" in str(applied)
    elif not stored_ok(escaped) and "not valid YAML" not in str(applied):
        assert_refused(applied, "correspondence[0].subject")
    elif isinstance(applied, Exception):
        # Valid UTF-8 that is not a valid file (a control character YAML refuses, a bad
        # name): a one-line Postroom error, never one about text encoding.
        assert_one_line(str(applied))
        assert not isinstance(applied, InvalidTextError) or "name" in applied.field
    else:
        with edge.engine.connect() as conn:
            assert edge.correspondence_store.all(conn)["L"].subject == escaped


# --- the CLI ----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str]:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(RECORDS)
    return CliRunner(), url


def argv(data: bytes) -> str:
    """An argument as Python receives it: undecodable bytes as lone surrogates."""
    return os.fsdecode(data)


def assert_cli_refused(result: Any, *flags: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: "), line
    assert any(f in line for f in flags), (line, flags)


@FUZZ
@given(subject=raw_bytes, body=raw_bytes)
@example(subject=b"\xff", body=b"ok")
@example(subject=b"ok", body=b"a\r\nb\x01")
@example(subject=b"Plain {{ 7*7 }} text", body=b"<p>ok</p>")  # queued: the id is read back
def test_cli_send_refuses_or_queues_intact(
    cli: tuple[CliRunner, str], subject: bytes, body: bytes
) -> None:
    runner, url = cli
    s, b = argv(subject), argv(body)
    result = runner.invoke(
        cli_app, ["-d", url, "send", "--to", "a@example.com", "--subject", s, "--body", b]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if _SURROGATE.search(s) or _SURROGATE.search(b):
        assert_cli_refused(result, "--subject" if _SURROGATE.search(s) else "--body")
    elif not line_ok(s) or not body_ok(b):
        assert_cli_refused(result, "subject" if not line_ok(s) else "body")
    elif result.exit_code == 0:
        queued = re.search(r"queued as outbox #(\d+)", result.output)
        assert queued is not None, result.output
        outbox_id = int(queued[1])
        with Postroom(make_settings(url)) as pr:
            assert_sent_intact(pr, outbox_id, s, b)
    else:
        [line] = result.output.strip().splitlines()  # valid text refused otherwise
        assert line.startswith("error: ")


@FUZZ
@given(value=raw_bytes, file_name=raw_bytes)
@example(value=b"\xff", file_name=b"f.txt")
@example(value=b"ok", file_name=b"f\xff.txt")
def test_cli_cases_refuse_or_store_intact(
    cli: tuple[CliRunner, str], tmp_path: Path, value: bytes, file_name: bytes
) -> None:
    runner, url = cli
    created = runner.invoke(
        cli_app, ["-d", url, "cases", "create", CASE_TYPE, "--data", argv(b"note=" + value)]
    )
    if _SURROGATE.search(argv(value)):
        assert_cli_refused(created, "--data")
        return
    assert created.exit_code == 0, created.output
    case_id = created.output.split()[0]
    clean = b"f" + file_name.replace(b"/", b"_")
    path = tmp_path / os.fsdecode(clean)
    path.write_bytes(b"content")
    attached = runner.invoke(cli_app, ["-d", url, "cases", "attach", case_id, str(path)])
    if _SURROGATE.search(os.fsdecode(clean)):
        assert_cli_refused(attached, "attachment name")
    elif attached.exit_code != 0:
        [line] = attached.output.strip().splitlines()  # a name refused for another reason
        assert line.startswith("error: ")


def test_the_real_cli_reports_bytes_argv_and_latin1_files_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply(RECORDS)
        case_id = pr.cases.create(CASE_TYPE).id
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(
        "operators:\n  - {id: op, name: Carél, email: op@example.com}\n".encode("latin-1")
    )
    offset = latin.read_bytes().index(b"\xe9")
    odd = tmp_path.joinpath(os.fsdecode(b"f\xff.txt"))
    odd.write_bytes(b"content")
    env = {**os.environ, "POSTROOM_SECRET_KEY": TEST_KEY, "LC_ALL": "C.UTF-8"}
    postroom: list[str | bytes] = [sys.executable, "-m", "postroom", "-d", url]
    for args, expected in [
        ([b"send", b"--to", b"a@example.com", b"--subject", b"\xff", b"--body", b"b"], "--subject"),
        ([b"cases", b"create", CASE_TYPE.encode(), b"--data", b"note=\xe9"], "--data"),
        ([b"cases", b"show", b"C-\xff"], "CASE_ID"),
        ([b"apply", str(latin).encode()], f"line 2, byte offset {offset}:"),
        ([b"cases", b"attach", case_id.encode(), os.fsencode(odd)], "attachment name"),
    ]:
        done = subprocess.run(
            [*postroom, *args], check=False, capture_output=True, env=env, timeout=60
        )
        stderr = done.stderr.decode("utf-8", "backslashreplace")
        assert done.returncode == 2, stderr
        assert "Traceback" not in stderr
        [line] = stderr.strip().splitlines()
        assert line.startswith("error: "), line
        assert expected in line, line


# --- the REST API over HTTP -------------------------------------------------------------


@pytest.fixture
def api(edge: Postroom) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    tokens = issue_tokens(edge)
    with serve(mounted(edge)) as base, http(base) as client:
        yield client, {**tokens.send, "Content-Type": "application/json"}


def json_text(value: str | bytes) -> bytes:
    """A JSON string: text as escapes (``\\ud800`` for a lone surrogate), bytes raw."""
    if isinstance(value, bytes):
        return b'"' + value.replace(b"\\", b"").replace(b'"', b"") + b'"'
    return json.dumps(value).encode()


def multipart_safe(value: bytes) -> bytes:
    """Bytes that stay inside one multipart header or part: no quote, CR or LF."""
    return value.replace(b'"', b"").replace(b"\r", b"").replace(b"\n", b"")


def assert_problem(got: httpx.Response, status: int, *fields: str) -> None:
    assert got.status_code == status, got.text
    assert got.headers["content-type"] == "application/problem+json"
    problem = got.json()
    assert_one_line(problem["detail"])
    [field] = problem["errors"]
    assert any(f in field["field"] for f in fields), (field, fields)


@FUZZ
@given(subject=hostile | raw_bytes, body=hostile | raw_bytes)
@example(subject="\ud800", body="ok")
@example(subject="ok", body=b"\xff")
@example(subject="ok", body="\x00")
def test_rest_emails_refuse_or_queue_intact(
    edge: Postroom, api: tuple[httpx.Client, dict[str, str]], subject: Any, body: Any
) -> None:
    client, headers = api
    content = b'{"to": ["a@example.com"], "subject": %s,\n"body": %s}' % (
        json_text(subject),
        json_text(body),
    )
    got = client.post("/api/v1/emails", content=content, headers=headers)
    assert got.status_code != 500, got.text
    # JSON is decoded with surrogatepass: encoded surrogates (ED A0 80) are lone surrogates.
    if (offset := first_bad_byte(content, errors="surrogatepass")) is not None:
        assert_problem(got, 400, "body")
        assert f"byte offset {offset}" in got.json()["detail"]
        return
    try:
        parsed = json.loads(content)
    except ValueError:  # a raw control character in a string: not JSON, so malformed
        assert_problem(got, 400, "body")
        return
    s, b = parsed["subject"], parsed["body"]
    if not stored_ok(s) or not stored_ok(b):
        assert_problem(got, 422, "body.subject" if not stored_ok(s) else "body.body")
    elif not line_ok(s) or not body_ok(b):
        assert_problem(got, 422, "subject" if not line_ok(s) else "body")
    elif got.status_code == 201:
        assert_sent_intact(edge, got.json()["ids"][0], s, b)
    else:
        assert got.status_code == 422, got.text


@FUZZ
@given(value=hostile, file_name=raw_bytes, name=st.one_of(st.none(), raw_bytes))
@example(value="\udcff", file_name=b"f.txt", name=None)
@example(value="ok", file_name=b"f\xff\x00.txt", name=b"n\r\nx")
def test_rest_cases_and_uploads_refuse_or_store(
    edge: Postroom,
    api: tuple[httpx.Client, dict[str, str]],
    value: str,
    file_name: bytes,
    name: bytes | None,
) -> None:
    client, headers = api
    content = b'{"case_type": "%s", "data": {"note": %s}}' % (CASE_TYPE.encode(), json_text(value))
    got = client.post("/api/v1/cases", content=content, headers=headers)
    if not stored_ok(value):
        assert_problem(got, 422, "body.data.note")
        return
    assert got.status_code == 201, got.text
    assert got.json()["data"] == {"note": value}
    # Multipart, written by hand: the file name and the name field as raw bytes.
    parts = [
        b'Content-Disposition: form-data; name="file"; filename="%s"\r\n'
        b"Content-Type: text/plain\r\n\r\ncontent" % multipart_safe(file_name)
    ]
    if name is not None:
        parts.append(b'Content-Disposition: form-data; name="name"\r\n\r\n' + multipart_safe(name))
    upload = b"".join(b"--B\r\n" + p + b"\r\n" for p in parts) + b"--B--\r\n"
    attached = client.post(
        f"/api/v1/cases/{got.json()['id']}/attachments",
        content=upload,
        headers={**headers, "Content-Type": "multipart/form-data; boundary=B"},
    )
    # Multipart text is read as UTF-8, or Latin-1 when it is not: always valid Unicode.
    assert attached.status_code in (201, 422), attached.text
    if attached.status_code == 201:
        for a in attached.json()["attachments"]:
            assert line_ok(a["name"]), a["name"]
    else:
        assert_one_line(attached.json()["detail"])


# --- the Studio -------------------------------------------------------------------------


@pytest.fixture
def studio(edge: Postroom) -> Iterator[tuple[TestClient, str]]:
    edge.identity.create_admin(username=ADMIN, password=PASSWORD)
    with TestClient(create_studio(edge), base_url="https://testserver") as client:
        yield client, log_in(client)


def form(csrf: str, **fields: bytes) -> bytes:
    """A urlencoded form whose values are raw bytes (percent-encoded, not necessarily UTF-8)."""
    pairs = [b"csrf_token=" + csrf.encode()]
    pairs += [k.encode() + b"=" + quote_from_bytes(v).encode() for k, v in fields.items()]
    return b"&".join(pairs)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@FUZZ
@given(subject=raw_bytes, html=raw_bytes, value=raw_bytes)
@example(subject=b"\xff", html=b"<p>\x00</p>", value=b"\x00")
@example(subject=b"ok", html=b"ok", value=b"\xed\xa0\x80")
def test_studio_forms_refuse_on_the_form_or_save(
    edge: Postroom, studio: tuple[TestClient, str], subject: bytes, html: bytes, value: bytes
) -> None:
    client, csrf = studio
    saved = client.post(
        "/correspondence",
        content=form(csrf, name=b"Letter", subject=subject, html=html or b"x"),
        headers=FORM,
        follow_redirects=False,
    )
    assert saved.status_code in (303, 422), saved.text[:500]
    if saved.status_code == 422:
        assert 'id="form-error"' in saved.text
    created = client.post(
        "/cases",
        content=form(csrf, case_type=CASE_TYPE.encode(), data=b"note = " + value),
        headers=FORM,
        follow_redirects=False,
    )
    assert created.status_code in (303, 422), created.text[:500]
    # Bytes that are not UTF-8 are refused naming the field, never saved as U+FFFD.
    if first_bad_byte(subject) is not None:
        assert saved.status_code == 422
        assert "subject is not valid Unicode at character" in saved.text
    elif first_bad_byte(html) is not None:
        assert saved.status_code == 422
        assert "html is not valid Unicode at character" in saved.text
    elif b"\x00" in html:
        assert saved.status_code == 422
        assert "U+0000" in saved.text
    if first_bad_byte(value) is not None:
        assert created.status_code == 422
        assert "data is not valid Unicode at character" in created.text
    if value == b"\x00":
        assert created.status_code == 422
        assert "data.note contains control character U+0000" in created.text


@FUZZ
@given(file_name=raw_bytes)
@example(file_name=b"f\xff.txt")
@example(file_name=b"a\x00b.txt")
def test_studio_upload_names_are_refused_or_stored_valid(
    edge: Postroom, studio: tuple[TestClient, str], file_name: bytes
) -> None:
    client, csrf = studio
    case = edge.cases.create(CASE_TYPE)
    clean = multipart_safe(file_name)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n%s\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
        b"Content-Type: text/plain\r\n\r\ncontent\r\n--B--\r\n"
    ) % (csrf.encode(), clean)
    got = client.post(
        f"/cases/{case.id}/attachments",
        content=body,
        headers={"Content-Type": "multipart/form-data; boundary=B"},
        follow_redirects=False,
    )
    assert got.status_code == 303, got.text[:500]
    for a in edge.cases.get(case.id).attachments:
        assert stored_ok(a.name), a.name
        assert line_ok(a.name), a.name


def test_studio_case_type_yaml_with_a_surrogate_escape_is_refused_on_the_form(
    studio: tuple[TestClient, str],
) -> None:
    client, csrf = studio
    typed = 'class: A-B-D\nclass_group: A-B\nid_prefix: D-\nlabel: "Loan \\udcff"\n'
    refused = client.post("/case-types", data={"csrf_token": csrf, "yaml": typed})
    assert refused.status_code == 422
    assert 'id="form-error"' in refused.text
    assert "label is not valid Unicode at character 6: byte 0xFF is not UTF-8" in refused.text


def test_environment_values_in_apply_files_are_checked_and_never_shown(
    edge: Postroom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the environment holds for bytes that are not UTF-8 (os.environ's surrogateescape).
    monkeypatch.setenv("EDGE_SMTP_PASSWORD", os.fsdecode(b"s3cr\xffet-value"))
    path = tmp_path / "env.yaml"
    path.write_text(
        "accounts:\n  - {name: Default, address: noreply@example.com, host: 127.0.0.1,\n"
        "     security: none, password: '${EDGE_SMTP_PASSWORD}'}\n"
    )
    refused = attempt(lambda: edge.apply(path))
    assert_refused(refused, "accounts[0] (Default): ${EDGE_SMTP_PASSWORD}")
    assert "s3cr" not in str(refused)
