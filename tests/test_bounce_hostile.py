"""Delivery reports a stranger can shape: huge or odd mail that looks like a bounce, and real
reports with a quirk (an 8-bit byte, a charset no codec reads, an encoded status part, no
From) that must still be read. Pure: no database, no network."""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest
from flufl.bounce import Recipients

from postroom.bounces import heuristic, reduced, returned
from postroom.bounces.models import ReportKind, ReportOutcome
from postroom.bounces.report import parse_report
from postroom.bounces.verp import new_token, verp_address
from postroom.inbound.automatic import report_type
from tests import bouncesamples as samples

TOKEN = new_token()
VERP = verp_address("bounces@acme.example", TOKEN)
JANE = "jane@customer.example"
MID = "20251204.abc123@acme.example"
HEAD = (
    f"Return-Path: <>\r\nFrom: MAILER-DAEMON@relay.example\r\nTo: {VERP}\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
).encode()
MB = 1_000_000


def _plain(body: bytes, content_type: bytes = b"text/plain") -> bytes:
    return HEAD + b"Content-Type: " + content_type + b"\r\n\r\n" + body


def _addresses(raw: bytes) -> list[str]:
    return [r.address for r in parse_report(raw).recipients]


def _qmail() -> bytes:
    return samples.qmail(recipient=JANE, to=VERP, message_id=MID)


@pytest.mark.parametrize(
    "raw",
    [
        _plain(b"\n" * MB),
        _plain(b"<" * MB, b"text/html"),
        _plain(b" " * MB + b"<a@b.example>"),
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + b"--b\r\n\r\nx\r\n" * 20_000
        + b"--b--\r\n",
        HEAD
        + b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"=\r\n" * 300_000,
    ],
    ids=["blank-lines", "html-lt-flood", "one-long-line", "many-tiny-parts", "qp-soft-breaks"],
)
def test_hostile_mail_that_looks_like_a_bounce_reads_as_naming_nobody(raw: bytes) -> None:
    parsed = parse_report(raw)
    assert parsed.recipients == ()
    assert parsed.tokens == (TOKEN,)


def test_a_bounce_s_text_before_a_flood_is_still_read() -> None:
    # The returned message pasted below the notice is as long as the sender likes.
    raw = _qmail() + b"\r\n" * MB + b"filler line\r\n" * 50_000
    parsed = parse_report(raw)
    assert parsed.kind is ReportKind.HEURISTIC
    assert [r.address for r in parsed.recipients] == [JANE]
    assert parsed.recipients[0].status == "5.1.1"
    assert parsed.message_id == MID


def test_a_non_standard_notice_after_a_huge_text_is_not_read() -> None:
    # Only the start of a report's text is read: a notice a megabyte down is not found.
    raw = _qmail().replace(
        b"\r\n\r\nHi. This is", b"\r\n\r\n" + b"filler\r\n" * 200_000 + b"Hi. This is"
    )
    parsed = parse_report(raw)
    assert parsed.recipients == ()
    assert parsed.kind is ReportKind.NONE


def test_a_delivery_status_part_after_a_huge_text_part_is_still_read() -> None:
    # A standard report's status part is read wherever it is: no text is searched for it.
    raw = samples.postfix_dsn(recipient=JANE, to=VERP, message_id=MID)
    notice = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert notice in raw
    raw = raw.replace(notice, notice + b"padding line\r\n" * 200_000, 1)
    parsed = parse_report(raw)
    assert parsed.kind is ReportKind.DSN
    [one] = parsed.recipients
    assert (one.address, one.status, one.outcome) == (JANE, "5.1.1", ReportOutcome.BOUNCED)


def test_an_8_bit_byte_in_the_top_content_type_still_reads_as_a_dsn() -> None:
    raw = samples.postfix_dsn(recipient=JANE, to=VERP, message_id=MID)
    marked = raw.replace(
        b"report-type=delivery-status;", "report-type=delivery-status; (rapport é);".encode()
    )
    assert marked != raw
    parsed = parse_report(marked)
    assert parsed.kind is ReportKind.DSN
    assert [r.address for r in parsed.recipients] == [JANE]
    header = email.message_from_bytes(marked, policy=email.policy.compat32)["content-type"]
    assert not isinstance(header, str)  # compat32 gives an email.header.Header here
    assert report_type(header) == "delivery-status"


@pytest.mark.parametrize(
    "charset", [b'"utf\x00-8"', b"idna", b"punycode", b"undefined", b"base64", b"x-unknown"]
)
def test_a_text_part_in_a_charset_no_codec_reads_is_read_as_latin_1(charset: bytes) -> None:
    raw = _qmail().replace(
        b"Subject: failure notice",
        b"Content-Type: text/plain; charset=" + charset + b"\r\nSubject: failure notice",
    )
    parsed = parse_report(raw)
    assert parsed.kind is ReportKind.HEURISTIC
    [one] = parsed.recipients
    assert (one.address, one.status) == (JANE, "5.1.1")
    assert parsed.message_id == MID


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_a_transfer_encoded_delivery_status_part_is_read(encoding: str) -> None:
    parsed = parse_report(samples.encoded_dsn(recipient=JANE, to=VERP, encoding=encoding))
    assert parsed.kind is ReportKind.DSN
    [one] = parsed.recipients
    assert (one.address, one.status, one.code) == (JANE, "5.1.1", 550)
    assert "no such user" in one.diagnostic


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"From: MAILER-DAEMON@mx.customer.example\r\n", b""),  # Yale's detector raises
        (
            b"From: MAILER-DAEMON@mx.customer.example",
            "From: Système <MAILER-DAEMON@mx.customer.example>".encode(),  # Sina's raises
        ),
    ],
    ids=["no-from", "8-bit-from"],
)
def test_a_bounce_a_detector_trips_over_is_read_by_the_next(old: bytes, new: bytes) -> None:
    raw = _qmail()
    assert old in raw
    assert _addresses(raw.replace(old, new)) == [JANE]


class _Broken:
    def process(self, msg: email.message.Message) -> tuple[Recipients, Recipients]:
        raise IndexError("list index out of range")


class _Finds:
    def process(self, msg: email.message.Message) -> tuple[Recipients, Recipients]:
        return frozenset({b"soon@customer.example"}), frozenset({b"<gone@customer.example>"})


class _NeverReached:
    def process(self, msg: email.message.Message) -> tuple[Recipients, Recipients]:
        raise AssertionError("a detector after the first that found something ran")


def test_detectors_run_in_order_past_a_broken_one_and_stop_at_the_first_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(heuristic, "_DETECTORS", [_Broken, _Finds, _NeverReached])
    message = email.message_from_bytes(_qmail(), policy=email.policy.compat32)
    assert heuristic.detected(message) == ({"soon@customer.example"}, {"gone@customer.example"})


@pytest.mark.parametrize("build", [samples.qmail, samples.postfix_old])
def test_the_bounded_copy_keeps_what_the_detectors_find(build: samples.Builder) -> None:
    message = email.message_from_bytes(
        build(recipient=JANE, to=VERP, message_id=MID), policy=email.policy.compat32
    )
    copy = reduced.reduced(message)
    assert copy["from"] == message["from"]
    assert heuristic.detected(message) == (set(), {JANE})
    # What the detectors read of the copy is what the report says.
    text = "".join(str(p.get_payload()) for p in copy.walk() if not p.is_multipart())
    assert f"<{JANE}>:" in text


def test_the_bounded_copy_stays_within_its_bounds() -> None:
    raw = (
        HEAD
        + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + (b"--b\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 5_000 + b"\r\n\n\n" * 3_000) * 40
        + b"--b--\r\n"
    )
    copy = reduced.reduced(email.message_from_bytes(raw, policy=email.policy.compat32))
    parts = list(copy.walk())
    assert len(parts) <= reduced.MAX_PARTS
    lines = [
        line
        for p in parts
        if isinstance(p.get_payload(), str)
        for line in str(p.get_payload()).splitlines()
    ]
    assert 0 < len(lines) <= reduced.MAX_LINES
    assert sum(len(line) + 1 for line in lines) <= reduced.MAX_CHARS + reduced.MAX_LINE
    assert max(len(line) for line in lines) <= reduced.MAX_LINE


def test_html_text_loses_its_tags_and_a_flood_of_brackets_is_cut() -> None:
    html = _plain(b"<p>Delivery <b>failed</b>: 550 5.1.1 mailbox unavailable</p>", b"text/html")
    message = email.message_from_bytes(html, policy=email.policy.compat32)
    text = returned.text_of(message)
    assert "<" not in text
    assert "550 5.1.1 mailbox unavailable" in text
    flood = email.message_from_bytes(_plain(b"<" * MB, b"text/html"))
    assert len(returned.text_of(flood)) <= returned.MAX_TEXT
