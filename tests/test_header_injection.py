"""Header injection, fuzzed: every hostile subject, name or address is refused or sent intact.

For each generated input Postroom either refuses it with a :class:`PostroomError` and
queues nothing, or a real SMTP server receives a message whose headers are exactly
the expected ones and whose envelope holds exactly the intended recipients.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from postroom import Postroom, validation
from postroom.cli import app as cli_app
from postroom.correspondence.mime import Attachment, Mailbox, OutgoingEmail, build_message
from postroom.errors import ConfigurationError, InvalidTextError, MessageError, PostroomError
from postroom.outbox import OutboxStatus
from postroom.validation import check_address, check_display_name, single_line
from tests.conftest import TEST_KEY
from tests.fakes import Received, ServerInfo

T = TypeVar("T")

CASE_TYPE = "MyOrg-Fuzz-Work-Request"
PLAIN_TYPE = "MyOrg-Fuzz-Work-Plain"
SENDER = "noreply@example.com"
OWNER = "owner@example.com"
CONTACT = "contact@example.com"
AUDIT = "audit@example.com"
ENV_VAR = "POSTROOM_HDR_FUZZ_VALUE"

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Pieces that break headers, or try to: line breaks of every kind, other controls,
# ready-made injections, RFC 2047 encoded words that decode to line breaks, address
# syntax, placeholders and non-ASCII text.
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\x01",
    "\x07",
    "\x08",
    "\t",
    "\x0b",
    "\x0c",
    "\x1b",
    "\x1c",
    "\x1e",
    "\x1f",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\r\nBcc: evil@attacker.example",
    "\nTo: x@y",
    "\rCc: evil@attacker.example",
    "\u2028Bcc: evil@attacker.example",
    "\x85Reply-To: evil@attacker.example",
    "\r\n\r\nInjected body",
    "\r\n Folded",
    " =?utf-8?q?=0D=0ABcc:_evil@attacker.example?= ",
    " =?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?= ",
    " =?utf-8?q?a=00b?= ",
    " =?utf-8?q?x=0D=0A=0D=0Abody?= ",
    "${case.data.title}",
    "${SECRET}",
    "${" + ENV_VAR + "}",
    "{{ 7*7 }}",
    '"',
    "'",
    "\\",
    "<",
    ">",
    ",",
    ";",
    ":",
    "@",
    "(",
    ")",
    "evil@attacker.example",
    "<evil@attacker.example>",
    " ",
    "\xa0",
    "é",
    "日本",
    "😀",
    "\u200b",
]
hostile_text = st.lists(
    st.one_of(
        st.sampled_from(HOSTILE),
        st.text(st.characters(codec="utf-8"), max_size=4),
    ),
    max_size=8,
).map("".join)

# Addresses: a plain one with a hostile piece before, inside or after it.
ADDRESS_HOSTILE = [p for p in HOSTILE if p.isascii() or p in ("\x85", "\u2028", "\u2029")]
LOCALS = ["alice", "bob.smith", "c+tag", "d_e", "x"]


def breaks_lines(value: str) -> bool:
    """A control character or anything ``str.splitlines`` breaks a line at."""
    return bool(re.search(r"[\x00-\x1f\x7f\x85]", value)) or any(
        unicodedata.category(c) in ("Zl", "Zp") for c in value
    )


@st.composite
def hostile_addresses(draw: st.DrawFn) -> str:
    local = draw(st.sampled_from(LOCALS))
    domain = draw(st.sampled_from(["example.com", "Example.ORG", "mail.example.net"]))
    piece = draw(st.sampled_from(ADDRESS_HOSTILE))
    where = draw(st.sampled_from(["none", "before", "local", "domain", "after"]))
    return {
        "none": f"{local}@{domain}",
        "before": f"{piece}{local}@{domain}",
        "local": f"{local}{piece}@{domain}",
        "domain": f"{local}@{domain}{piece}.example",
        "after": f"{local}@{domain}{piece}",
    }[where]


# --- oracles, written independently of postroom.validation ------------------------------


def visible(value: str) -> str:
    """The characters a reader sees: no whitespace, no controls, no line separators."""
    return "".join(
        c for c in value if not c.isspace() and unicodedata.category(c) not in ("Cc", "Zl", "Zp")
    )


def has_break_or_control(value: str) -> bool:
    """A line break of any kind, or a C0 control other than tab, or DEL."""
    return len(f"a{value}b".splitlines()) > 1 or bool(re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value))


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(\.{_ATEXT})*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


def plain_address(value: str) -> bool:
    """An ASCII dot-atom address, once surrounding whitespace is removed."""
    return not re.search(r"[\x00-\x1f\x7f]", value) and bool(
        _PLAIN_ADDRESS.fullmatch(value.strip())
    )


def attempt(call: Callable[[], T], error: type[Exception]) -> T | Exception:
    """The result of ``call``, or the ``error`` it raised."""
    try:
        return call()
    except error as exc:
        return exc


def refuses_nul(create: Callable[[], object], title: str) -> bool:
    """Case data is stored text, which cannot hold NUL (PostgreSQL refuses it): refused."""
    if "\x00" not in title:
        return False
    with pytest.raises(InvalidTextError, match="U\\+0000"):
        create()
    return True


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_names(msg: EmailMessage) -> list[str]:
    return sorted(k.lower() for k in msg)


def mailboxes(msg: EmailMessage, name: str) -> list[tuple[str, str]]:
    values = msg.get_all(name) or []
    assert len(values) <= 1, f"{name} appears {len(values)} times"
    if not values:
        return []
    return [(a.display_name, a.addr_spec.lower()) for a in values[0].addresses]


def raw_header_block(raw: bytes) -> list[bytes]:
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    return head.split(b"\r\n")


def assert_clean_header_block(raw: bytes) -> None:
    for line in raw_header_block(raw):
        assert not re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", line), line
        assert b"\r" not in line
        assert b"\n" not in line


# --- the server and Postroom ------------------------------------------------------------


def base_records(port: int, *, display_name: str = "Fuzz Sender") -> dict[str, Any]:
    return {
        "operators": [{"id": "owner", "name": "Owner Person", "email": OWNER}],
        "accounts": [
            {
                "name": "Default",
                "address": SENDER,
                "display_name": display_name,
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
            }
        ],
        "correspondence": [
            {
                "name": "Fuzz",
                "subject": "Case {{ case.data.title }}",
                "html": "<p>{{ case.data.title }}</p>",
            }
        ],
        "case_types": [
            {
                "class": CASE_TYPE,
                "class_group": "MyOrg-Fuzz-Work",
                "id_prefix": "F-",
                "parties": {"Owner": "creator"},
                "steps": [
                    {
                        "name": "notify",
                        "on": "created",
                        "to": [{"party": "Owner"}],
                        "cc": [{"field": "contact"}],
                        "bcc": [{"address": AUDIT}],
                        "correspondence": "Fuzz",
                    }
                ],
            },
            {"class": PLAIN_TYPE, "class_group": "MyOrg-Fuzz-Work", "id_prefix": "P-"},
        ],
    }


@pytest.fixture
def fuzz_postroom(
    sqlite_postroom: Postroom, server: ServerInfo, monkeypatch: pytest.MonkeyPatch
) -> Postroom:
    monkeypatch.setenv(ENV_VAR, "\r\nBcc: evil@attacker.example")
    monkeypatch.delenv("SECRET", raising=False)
    sqlite_postroom.apply(base_records(server.port))
    return sqlite_postroom


def deliver(postroom: Postroom, server: ServerInfo, before: int) -> list[Received]:
    asyncio.run(postroom.agent().run(until_idle=True))
    return server.sink.received[before:]


def not_queued(postroom: Postroom) -> None:
    counts = postroom.outbox_counts()
    assert counts[OutboxStatus.QUEUED] == 0
    assert counts[OutboxStatus.SENDING] == 0
    assert counts[OutboxStatus.RETRY] == 0


EXPECTED_CASE_HEADERS = sorted(
    [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "x-postroom-case",
        "auto-submitted",  # a step's email is automatic (RFC 3834)
        "x-auto-response-suppress",
        "mime-version",
        "content-type",
        "content-language",  # the language of the text (RFC 3282)
    ]
)


def assert_one_each(msg: EmailMessage) -> None:
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(msg.get_all(name) or []) == 1, name
    assert msg.get_all("Bcc") is None


# --- end to end: case data through a correspondence template ----------------------------


@FUZZ
@given(title=hostile_text)
@example(title="=?utf-8?q?a=0D=0ABcc:_evil@attacker.example?=")
@example(title="x \x85Reply-To: evil@attacker.example")
@example(title="\r\nBcc: evil@attacker.example")
@example(title="\x80 =?utf-8?q?=0D=0ABcc:_evil@attacker.example?= \x80")
def test_subject_from_case_data_is_folded_or_refused(
    fuzz_postroom: Postroom, server: ServerInfo, title: str
) -> None:
    postroom = fuzz_postroom
    before = len(server.sink.received)
    if refuses_nul(lambda: postroom.cases.create(CASE_TYPE, data={"title": title}), title):
        return
    case = postroom.cases.create(
        CASE_TYPE, data={"title": title, "contact": CONTACT}, operator="owner"
    )
    actions = [h.action for h in case.history]
    received = deliver(postroom, server, before)
    not_queued(postroom)

    if "email-failed" in actions:
        # Refusal is only acceptable for encoded words, which the stdlib would decode.
        assert "=?" in title, f"refused a title without an encoded word: {case.history}"
        detail = next(h.detail for h in case.history if h.action == "email-failed")
        assert "header" in detail
        assert received == []
        [failed] = postroom.outbox(case_id=case.id)
        assert failed.status is OutboxStatus.FAILED
        assert failed.last_error
        return

    assert "email-queued" in actions
    [got] = received
    assert got.mail_from == SENDER
    assert [r.lower() for r in got.rcpt_tos] == [OWNER, CONTACT, AUDIT]
    assert_clean_header_block(got.raw)
    msg = got.message
    assert header_names(msg) == EXPECTED_CASE_HEADERS
    assert_one_each(msg)
    assert mailboxes(msg, "To") == [("Owner Person", OWNER)]
    assert mailboxes(msg, "Cc") == [("", CONTACT)]
    assert mailboxes(msg, "From") == [("Fuzz Sender", SENDER)]
    subject = str(msg["Subject"])
    assert not has_break_or_control(subject), repr(subject)
    assert visible(subject) == visible("Case " + title)
    assert str(msg["X-Postroom-Case"]) == case.id
    if "attacker" not in title:
        assert b"attacker" not in got.raw


# --- end to end: operator names and the account's display name --------------------------


@FUZZ
@given(name=hostile_text, display_name=hostile_text)
@example(name="=?utf-8?q?a=0D=0ABcc:_evil@attacker.example?=", display_name="ok")
@example(name="ok", display_name="x =?utf-8?q?a=0D=0ABcc:_evil@attacker.example?= y")
@example(name='Evil <evil@attacker.example>, "x', display_name="${" + ENV_VAR + "}")
@example(name="a\u2029b\x85c", display_name="d\u2029e")
@example(name='é =?utf-8?q?=0D=0ABcc:_evil@attacker.example?= "', display_name="")
def test_display_names_are_refused_or_quoted(
    fuzz_postroom: Postroom, server: ServerInfo, name: str, display_name: str
) -> None:
    postroom = fuzz_postroom
    records = base_records(server.port, display_name=display_name)
    records["operators"][0]["name"] = name
    del records["correspondence"], records["case_types"]
    expanded = display_name.replace("${" + ENV_VAR + "}", os.environ[ENV_VAR])
    unsafe = any(breaks_lines(v) for v in (name, expanded))
    applied = attempt(lambda: postroom.apply(records), ConfigurationError)
    if isinstance(applied, Exception):
        assert unsafe or "${SECRET}" in display_name, f"refused safe names: {applied}"
        text = str(applied)
        assert "control character" in text or "SECRET" in text
        not_queued(postroom)
        return
    assert not unsafe, "accepted a name with a control character or line separator"

    before = len(server.sink.received)
    case = postroom.cases.create(
        CASE_TYPE, data={"title": "names", "contact": CONTACT}, operator="owner"
    )
    actions = [h.action for h in case.history]
    received = deliver(postroom, server, before)
    not_queued(postroom)
    if "email-failed" in actions:
        assert "=?" in name or "=?" in expanded
        assert received == []
        return

    [got] = received
    assert [r.lower() for r in got.rcpt_tos] == [OWNER, CONTACT, AUDIT]
    assert_clean_header_block(got.raw)
    msg = got.message
    assert header_names(msg) == EXPECTED_CASE_HEADERS
    assert_one_each(msg)
    [(to_name, to_addr)] = mailboxes(msg, "To")
    [(from_name, from_addr)] = mailboxes(msg, "From")
    assert (to_addr, from_addr) == (OWNER, SENDER)
    assert mailboxes(msg, "Cc") == [("", CONTACT)]
    assert visible(to_name) == visible(name)
    assert visible(from_name) == visible(expanded)


# --- end to end: recipient addresses and an ad-hoc send ---------------------------------


@FUZZ
@given(to=hostile_addresses(), bcc=hostile_addresses(), title=hostile_text)
@example(to="alice@example.com\r\nBcc: evil@attacker.example", bcc="x@example.com", title="t")
@example(to="alice@example.com", bcc="x@example.com\u2028", title="t")
@example(to="alice@example.com", bcc="x\x85@example.com", title="t")
def test_addresses_are_refused_or_delivered_exactly(
    fuzz_postroom: Postroom, server: ServerInfo, to: str, bcc: str, title: str
) -> None:
    postroom = fuzz_postroom
    if refuses_nul(lambda: postroom.cases.create(PLAIN_TYPE, data={"title": title}), title):
        return
    case = postroom.cases.create(PLAIN_TYPE, data={"title": title})
    queued_before = sum(postroom.outbox_counts().values())
    before = len(server.sink.received)
    sent = attempt(
        lambda: postroom.send(
            to=[to],
            bcc=[bcc],
            subject="Re: {{ case.data.title }}",
            body="<p>{{ case.data.title }}</p>",
            case_id=case.id,
            template=True,
        ),
        PostroomError,
    )
    if isinstance(sent, Exception):
        assert isinstance(sent, MessageError), repr(sent)
        assert sum(postroom.outbox_counts().values()) == queued_before
        assert deliver(postroom, server, before) == []
        if "=?" in title and "header" in str(sent):
            return  # an encoded word in the subject: refused, as it should be
        assert not (plain_address(to) and plain_address(bcc)), f"refused {to!r} / {bcc!r}"
        assert "address" in str(sent)
        return
    assert plain_address(to), to
    assert plain_address(bcc), bcc

    [got] = deliver(postroom, server, before)
    intended = list(dict.fromkeys(a.strip().lower() for a in (to, bcc)))
    assert [r.lower() for r in got.rcpt_tos] == intended
    assert not any(has_break_or_control(r) for r in got.rcpt_tos)
    assert_clean_header_block(got.raw)
    msg = got.message
    assert header_names(msg) == sorted(
        [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "x-postroom-case",
            "mime-version",
            "content-type",
        ]
    )
    assert_one_each(msg)
    assert mailboxes(msg, "To") == [("", to.strip().lower())]
    if bcc.strip().lower() != to.strip().lower():
        assert bcc.strip().lower().encode() not in got.raw.lower()
    assert visible(str(msg["Subject"])) == visible("Re: " + title)


def test_send_refuses_a_bad_address_with_a_postroom_error(fuzz_postroom: Postroom) -> None:
    for bad in ("a@example.com\r\nBcc: evil@attacker.example", "not an address", "a@b\x00.com"):
        with pytest.raises(MessageError) as info:
            fuzz_postroom.send(to=[bad], subject="s", body="b")
        assert "address" in str(info.value)
    assert sum(fuzz_postroom.outbox_counts().values()) == 0


def test_cli_send_reports_a_bad_address_without_a_traceback(
    fuzz_postroom: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    result = CliRunner().invoke(
        cli_app,
        [
            "--database-url",
            fuzz_postroom.settings.database_url,
            "send",
            "--to",
            "a@example.com\nBcc: evil@attacker.example",
            "--subject",
            "s",
            "--body",
            "b",
        ],
    )
    assert result.exit_code not in (0, None)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "control character" in result.output
    assert sum(fuzz_postroom.outbox_counts().values()) == 0


# --- unit level: build_message ----------------------------------------------------------


def outgoing(
    *,
    subject: str = "s",
    sender_name: str = "",
    to: str = "to@example.com",
    to_name: str = "",
    cc: str = "cc@example.com",
    bcc: str = "hidden@example.com",
    filename: str | None = None,
) -> OutgoingEmail:
    return OutgoingEmail(
        sender=Mailbox(SENDER, sender_name),
        to=(Mailbox(to, to_name),),
        cc=(Mailbox(cc),),
        bcc=(Mailbox(bcc),),
        subject=subject,
        html="<p>x</p>",
        text="x\n",
        message_id="<1@example.com>",
        date=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        attachments=(Attachment(filename, "text/plain", b"hi"),) if filename is not None else (),
    )


UNIT_HEADERS = sorted(["from", "to", "cc", "subject", "date", "message-id", "mime-version"])


def check_built(raw: bytes, e: OutgoingEmail) -> EmailMessage:
    for line in raw.split(b"\r\n"):
        assert b"\r" not in line
        assert b"\n" not in line
    assert_clean_header_block(raw)
    msg = parse(raw)
    assert header_names(msg) == sorted([*UNIT_HEADERS, "content-type"])
    assert_one_each(msg)
    assert [a for _, a in mailboxes(msg, "To")] == [e.to[0].address.strip().lower()]
    assert [a for _, a in mailboxes(msg, "Cc")] == [e.cc[0].address.strip().lower()]
    assert [a for _, a in mailboxes(msg, "From")] == [SENDER]
    assert b"hidden@example.com" not in raw
    subject = str(msg["Subject"])
    assert not has_break_or_control(subject)
    assert visible(subject) == visible(e.subject)
    return msg


@settings(max_examples=300, deadline=None, database=None)
@given(subject=hostile_text, sender_name=hostile_text, to_name=hostile_text)
def test_build_message_never_adds_a_header(subject: str, sender_name: str, to_name: str) -> None:
    e = outgoing(subject=subject, sender_name=sender_name, to_name=to_name)
    raw = attempt(lambda: build_message(e), MessageError)
    if isinstance(raw, Exception):
        assert str(raw)
        names_unsafe = any(breaks_lines(n) for n in (sender_name, to_name))
        assert names_unsafe or "=?" in subject + sender_name + to_name, repr(raw)
        return
    msg = check_built(raw, e)
    [(from_name, _)] = mailboxes(msg, "From")
    [(name, _)] = mailboxes(msg, "To")
    assert visible(from_name) == visible(sender_name)
    assert visible(name) == visible(to_name)


@settings(max_examples=200, deadline=None, database=None)
@given(to=hostile_addresses(), cc=hostile_addresses())
def test_build_message_addresses(to: str, cc: str) -> None:
    e = outgoing(to=to, cc=cc)
    raw = attempt(lambda: build_message(e), MessageError)
    if isinstance(raw, Exception):
        assert "address" in str(raw)
        assert not (plain_address(to) and plain_address(cc)), repr(raw)
        return
    check_built(raw, e)


@settings(max_examples=100, deadline=None, database=None)
@given(filename=hostile_text)
@example(filename="x" * 60 + " =?utf-8?q?=0D=0ABcc:_evil@attacker.example?= ")
def test_build_message_attachment_file_names(filename: str) -> None:
    e = outgoing(filename=filename)
    raw = attempt(lambda: build_message(e), MessageError)
    if isinstance(raw, Exception):
        assert "=?" in filename, repr(raw)
        return
    msg = parse(raw)
    assert_clean_header_block(raw)
    [part] = list(msg.iter_attachments())
    got = part.get_filename()
    assert got is not None
    assert not has_break_or_control(got)
    # The reader takes off surrounding quotes or angle brackets.
    assert visible(got) in (visible(filename), visible(filename)[1:-1], "attachment")


ENCODED_WORD_INJECTIONS = [
    "=?utf-8?q?a=0D=0ABcc:_evil@attacker.example?=",
    "x =?utf-8?b?DQpCY2M6IGV2aWxAYXR0YWNrZXIuZXhhbXBsZQ==?= y",
    "=?utf-8?q?a=0D=0AReply-To:_evil@attacker.example?=",
    "=?utf-8?q?a=0D=0A=0D=0Abody?=",
    "=?utf-8?q?a=00b?=",
    "=?utf-8?q?a=0Db?=",
    # Non-ASCII text makes the stdlib encode the decoded line break again.
    'é =?utf-8?q?=0D=0ABcc:_evil@attacker.example?= "',
]


@pytest.mark.parametrize("payload", ENCODED_WORD_INJECTIONS)
@pytest.mark.parametrize("where", ["subject", "sender_name", "to_name", "filename"])
def test_encoded_words_cannot_smuggle_line_breaks(payload: str, where: str) -> None:
    if where == "filename" and not payload.isascii():
        # Written with RFC 2231 percent-encoding: the literal text arrives as it is.
        msg = parse(build_message(outgoing(filename=payload)))
        [part] = list(msg.iter_attachments())
        assert part.get_filename() == payload
        return
    with pytest.raises(MessageError, match="header"):
        build_message(outgoing(**{where: payload}))


def test_encoded_word_without_a_line_break_is_harmless() -> None:
    raw = build_message(outgoing(subject="=?utf-8?q?caf=C3=A9?= ok"))
    msg = parse(raw)
    assert str(msg["Subject"]) == "café ok"
    assert_clean_header_block(raw)


# --- unit level: validation -------------------------------------------------------------


@settings(max_examples=500, deadline=None, database=None)
@given(value=hostile_text)
def test_single_line_gives_a_safe_header_value(value: str) -> None:
    line = single_line(value)
    assert not has_break_or_control(line), repr(line)
    assert line == line.strip(" ")
    assert "  " not in line
    assert single_line(line) == line
    assert visible(line) == visible(value)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = line  # the stdlib refuses anything it would split into lines


@settings(max_examples=500, deadline=None, database=None)
@given(value=hostile_text)
def test_check_display_name(value: str) -> None:
    name = attempt(lambda: check_display_name(value), ValueError)
    if isinstance(name, Exception):
        assert "control character" in str(name)
        assert breaks_lines(value)
        return
    assert not breaks_lines(name)
    assert name == name.strip()


@settings(max_examples=500, deadline=None, database=None)
@given(value=st.one_of(hostile_addresses(), hostile_text))
def test_check_address(value: str) -> None:
    address = attempt(lambda: check_address(value), ValueError)
    if isinstance(address, Exception):
        assert str(address)
        assert not plain_address(value), repr(address)
        return
    assert not has_break_or_control(address), repr(address)
    assert not any(c.isspace() for c in address)
    local, at, domain = address.rpartition("@")
    assert at
    assert local
    assert domain
    assert "@" not in domain
    for bad in ("\r", "\n", "\x00", ",", "<", ">", ";"):
        assert bad not in address


def test_single_line_folds_every_line_separator() -> None:
    for sep in ("\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"):
        assert single_line(f"a{sep}b") == "a b", repr(sep)
    assert single_line("a\u2029b") == "a b"
    assert single_line("a\x00\x01\x7fb") == "a b"


def test_single_line_folds_exactly_the_controls_and_unicode_line_breaks() -> None:
    # single_line's pattern names U+0085, U+2028 and U+2029 itself; this walks every
    # code point so that a Unicode change to categories Zl/Zp would show here.
    breaking = {
        chr(c)
        for c in range(0x110000)
        if c < 0x20 or c == 0x7F or c == 0x85 or unicodedata.category(chr(c)) in ("Zl", "Zp")
    }
    folded = {chr(c) for c in range(0x110000) if single_line(f"a{chr(c)}b") == "a b"}
    assert folded - {" "} == breaking


_EVERYDAY = st.from_regex(validation._PLAIN_ADDRESS, fullmatch=True)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(address=_EVERYDAY | st.text(alphabet="aZ09._+-@x.-", max_size=40))
@example(address="User.Name+tag@Example.COM")
@example(address="a@x.local")
@example(address="a@xn--bcher-kva.example")
@example(address="a" * 65 + "@example.com")
def test_everyday_addresses_skip_the_validator_with_its_answer(address: str) -> None:
    # check_address answers everyday addresses itself; whatever it accepts that way, the
    # validator must accept with the same normalised form.
    fast = validation._plain_address(address)
    if fast is None:
        return
    assert fast == validate_email(address, check_deliverability=False).normalized
