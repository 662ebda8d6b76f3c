"""Received mail read into a ParsedMail: headers, bodies, replies, automatic mail, bad mail."""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime

import pytest

from postroom.inbound import parse_headers
from postroom.inbound.effects import clean_name
from postroom.inbound.parse import MailAttachment, ParsedMail, dedupe_key, parse_mail
from postroom.text import check_body, check_line
from tests import mailsamples as samples


def _headers(*lines: str, body: str = "Hello\r\n") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8", "surrogateescape")


def _assert_safe(mail: ParsedMail) -> None:
    """Every text field fits where Postroom stores and shows it."""
    check_line(mail.subject, field="subject")
    check_line(mail.from_name, field="from_name")
    check_body(mail.text, field="text")
    check_body(mail.full_text, field="full_text")
    for attachment in mail.attachments:
        check_line(attachment.name, field="name")
        assert attachment.name
        assert "/" not in attachment.name
        assert "\\" not in attachment.name
    for defect in mail.defects:
        check_line(defect, field="defect")
        assert "Traceback" not in defect


# --- the contract -------------------------------------------------------------------


def test_reply_headers_are_read() -> None:
    mail = parse_mail(samples.reply(in_reply_to="out-7@acme.example"))
    assert mail.message_id == "reply-1@customer.example"
    assert mail.in_reply_to == ("out-7@acme.example",)
    assert mail.references == ("thread-0@acme.example", "out-7@acme.example")
    assert mail.subject == "Re: Your mortgage request [M-12]"
    assert mail.from_address == "jane@customer.example"
    assert mail.from_name == "Jane Customer"
    assert mail.recipients == ("mortgages@acme.example",)
    assert mail.sent_at == datetime(2025, 12, 1, 9, 15, tzinfo=UTC)
    assert mail.automatic is None
    assert mail.bounce is False
    assert mail.defects == ()
    _assert_safe(mail)


def test_reply_text_has_no_quoted_history_and_full_text_keeps_it() -> None:
    mail = parse_mail(samples.reply())
    assert mail.text == "Yes, the valuation date works for me.\n\nJane"
    assert "could you confirm" in mail.full_text
    assert "wrote:" in mail.full_text
    assert mail.html is not None
    assert "gmail_quote" in mail.html


def test_outlook_quote_header_is_stripped() -> None:
    mail = parse_mail(samples.outlook_reply())
    assert mail.text == "Thank you, I will send the documents tomorrow."
    assert "Sent: Monday" in mail.full_text


def test_outlook_html_only_reply_is_stripped() -> None:
    mail = parse_mail(samples.outlook_html_reply())
    assert mail.text == "Please call me on Tuesday."
    assert "Dear Jane" in mail.full_text
    assert mail.automatic is None


def test_german_quote_header_is_stripped() -> None:
    mail = parse_mail(samples.german_reply())
    assert mail.text.startswith("Ja, der Termin passt mir.")
    assert "schrieb" not in mail.text
    assert "Sehr geehrter" not in mail.text
    assert mail.from_name == "Jörg Müller"


def test_french_quote_header_is_stripped() -> None:
    mail = parse_mail(samples.french_reply())
    assert mail.text.startswith("Oui, la date me convient.")
    assert "a écrit" not in mail.text
    assert mail.subject == "Référence [M-12]"
    assert mail.from_name == "Amélie Dupont"


def test_text_without_quote_is_all_reply() -> None:
    text = "Line one\n   indented line\n\nLast line\n"
    mail = parse_mail(samples.plain(text))
    assert mail.text == text
    assert mail.full_text == text


def test_html_only_mail_gets_text_from_its_html() -> None:
    mail = parse_mail(samples.html_only())
    assert mail.full_text == "Hello there\n\nSecond paragraph\n"
    assert mail.text == mail.full_text
    assert mail.html == "<p>Hello <b>there</b></p><p>Second paragraph</p>"


def test_blank_text_part_gives_way_to_the_html() -> None:
    raw = _headers(
        'Content-Type: multipart/alternative; boundary="a"',
        body=(
            "--a\r\nContent-Type: text/plain\r\n\r\n \r\n"
            "--a\r\nContent-Type: text/html\r\n\r\n<p>Real text</p>\r\n--a--\r\n"
        ),
    )
    assert parse_mail(raw).full_text == "Real text\n"


def test_long_text_is_cut_with_a_defect() -> None:
    mail = parse_mail(samples.plain("word " * 50_000))
    assert len(mail.full_text) == 100_000
    assert len(mail.text) <= 100_000
    assert "the text is longer than 100,000 characters: its end was cut" in mail.defects


def test_hostile_html_is_read_quickly_enough_to_finish() -> None:
    # html.parser alone takes minutes on this; the reduced markup reads in linear time.
    mail = parse_mail(samples.html_only("<a " * 30_000 + "<p>end</p>"))
    assert mail.full_text.endswith("end\n")
    assert mail.html is not None


def test_html_markup_is_reduced_before_html2text() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body><!-- note -->"
        '<p>Hello <b>there</b> &amp; <a href="https://x.example/?a=1&amp;b=2">link</a></p>'
        "<p>1 < 2 > 0</p><script>alert(1)</script><ul><li>one<li>two</ul>"
    )
    mail = parse_mail(samples.html_only(html))
    assert mail.full_text == (
        "Hello there & link <https://x.example/?a=1&b=2>\n\n1 < 2 > 0\n\n- one\n- two\n"
    )


def test_long_lines_do_not_slow_the_reply_parser_and_are_kept_whole() -> None:
    long_line = "On x " * 4_000
    mail = parse_mail(samples.plain(long_line + "\n\nOn Mon, 1 Dec 2025, Acme wrote:\n> old\n"))
    assert mail.text == long_line.rstrip()


def test_dedupe_key_uses_the_message_id_else_the_bytes() -> None:
    raw = samples.plain()
    mail = parse_mail(raw)
    expected = hashlib.sha256(b"plain-1@customer.example").hexdigest()
    assert dedupe_key(mail, raw) == f"mid:{expected}"
    # The same mail delivered again with other bytes (a Received line more) is the same.
    again = b"Received: from relay.example\r\n" + raw
    assert dedupe_key(parse_mail(again), again) == dedupe_key(mail, raw)
    raw = samples.no_message_id()
    mail = parse_mail(raw)
    assert mail.message_id is None
    assert dedupe_key(mail, raw) == "raw:" + hashlib.sha256(raw).hexdigest()
    assert "no Message-ID header" in mail.defects


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b.example>", "a@b.example"),
        ("  <a@b.example>  ", "a@b.example"),
        ("a@b.example", "a@b.example"),
        ("<a b@c.example>", None),
        ("<>", None),
        ("", None),
        ("<" + "x" * 901 + "@b.example>", None),
        ("<a@b.example> <c@d.example>", None),
        ("<a\x01@b.example>", None),
    ],
)
def test_message_id_is_kept_only_when_sane(value: str, expected: str | None) -> None:
    mail = parse_mail(_headers("From: a@b.example", f"Message-ID: {value}"))
    assert mail.message_id == expected
    if expected is None:
        assert any("Message-ID" in defect for defect in mail.defects)


def test_references_keep_the_last_fifty() -> None:
    ids = " ".join(f"<r{i}@x.example>" for i in range(80))
    mail = parse_mail(_headers("Message-ID: <m@x.example>", f"References: {ids}"))
    assert len(mail.references) == 50
    assert mail.references[0] == "r30@x.example"
    assert mail.references[-1] == "r79@x.example"


def test_unusable_ids_in_references_are_ignored() -> None:
    mail = parse_mail(
        _headers("In-Reply-To: <ok@x.example> (comment)", "References: <bad id@x> <ok2@x>")
    )
    assert mail.in_reply_to == ("ok@x.example",)
    assert mail.references == ("ok2@x",)
    assert any("References" in defect for defect in mail.defects)


def test_subject_is_decoded_on_one_line_and_bounded() -> None:
    mail = parse_mail(
        _headers("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n =?utf-8?b?IGF1cw==?= K\u00f6ln\x07x")
    )
    assert mail.subject == "Grüße aus Köln x"
    mail = parse_mail(_headers("Subject: a\u2028b\x00c\x85d"))
    assert mail.subject == "a b c d"
    mail = parse_mail(_headers("Subject: " + "long " * 1000))
    assert len(mail.subject) <= 998
    _assert_safe(mail)


def test_addresses_are_validated_and_recipients_lower_cased() -> None:
    mail = parse_mail(
        _headers(
            'From: "Doe, Jane" <Jane.Doe@Customer.EXAMPLE>',
            "To: Claims <Claims@Acme.Example>, not-an-address, bob@acme.example",
            "Cc: BOB@acme.example, carol@acme.example",
            "Delivered-To: mortgages+M-12@acme.example",
            "X-Original-To: claims@acme.example",
        )
    )
    assert mail.from_address == "Jane.Doe@customer.example"
    assert mail.from_name == "Doe, Jane"
    assert mail.recipients == (
        "claims@acme.example",
        "bob@acme.example",
        "carol@acme.example",
        "mortgages+m-12@acme.example",
    )


def test_invalid_sender_gives_none_and_a_defect() -> None:
    mail = parse_mail(_headers("From: Someone <someone@localhost>"))
    assert mail.from_address is None
    assert mail.from_name == "Someone"
    assert any("sender" in defect for defect in mail.defects)
    mail = parse_mail(_headers("Subject: no sender"))
    assert mail.from_address is None
    assert "no From header" in mail.defects


def test_recipients_are_bounded() -> None:
    to = ", ".join(f"r{i}@acme.example" for i in range(500))
    mail = parse_mail(_headers(f"To: {to}"))
    assert len(mail.recipients) == 100
    assert any("recipients" in defect for defect in mail.defects)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Mon, 01 Dec 2025 10:15:00 +0100", datetime(2025, 12, 1, 9, 15, tzinfo=UTC)),
        ("Mon, 01 Dec 2025 10:15:00 -0000", datetime(2025, 12, 1, 10, 15, tzinfo=UTC)),
        ("1 Dec 2025 10:15 GMT", datetime(2025, 12, 1, 10, 15, tzinfo=UTC)),
        ("yesterday", None),
        ("Mon, 99 Foo 99999 99:99:99 +9999", None),
    ],
)
def test_date_is_aware_utc_or_none(value: str, expected: datetime | None) -> None:
    mail = parse_mail(_headers(f"Date: {value}"))
    assert mail.sent_at == expected
    if expected is None:
        assert any("Date" in defect for defect in mail.defects)


# --- attachments ----------------------------------------------------------------------


def test_attachments_inline_images_and_attached_messages() -> None:
    mail = parse_mail(samples.with_attachments())
    assert [(a.name, a.content_type) for a in mail.attachments] == [
        ("attachment-1.png", "image/png"),
        ("Kontoauszüge 2025.pdf", "application/pdf"),
        ("passwd", "application/octet-stream"),
        ("attachment-4.eml", "message/rfc822"),
    ]
    assert mail.attachments[0].content == samples.PNG
    assert mail.attachments[1].content == samples.PDF
    inner = parse_mail(mail.attachments[3].content)
    assert inner.message_id == "inner-1@customer.example"
    assert inner.full_text == "The forwarded message.\n"
    assert mail.full_text == "See the scan:\n"  # the attached message's text is not the mail's
    assert isinstance(mail.attachments[0], MailAttachment)
    _assert_safe(mail)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ('"C:\\\\Users\\\\x\\\\report.pdf"', "report.pdf"),
        ('"/etc/passwd"', "passwd"),
        ('"..\\u0007.."', "attachment-1.bin"),
        ('"=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="', "Résumé.pdf"),
        ('""', "attachment-1.bin"),
        ('".hidden"', "hidden"),
    ],
)
def test_attachment_names_are_cleaned(filename: str, expected: str) -> None:
    filename = filename.replace("\\u0007", "\x07")
    raw = _headers(
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Disposition: attachment; filename={filename}\r\n\r\ndata\r\n--b--\r\n"
        ),
    )
    mail = parse_mail(raw)
    assert [a.name for a in mail.attachments] == [expected]
    assert mail.full_text == "body"


@pytest.mark.parametrize(
    "param",
    [
        "filename*=utf-8''invoice%E2%80%AEgpj.exe",  # RIGHT-TO-LEFT OVERRIDE
        "filename*=utf-8''invoice%E2%81%A7gpj%E2%81%A9.exe",  # FIRST STRONG ISOLATE, POP
        "filename*=utf-8''%E2%80%8Finvoice%E2%80%8Egpj%E2%80%AA.exe",  # marks, LRE
        'filename="=?utf-8?b?aW52b2ljZeKArmdwai5leGU=?="',  # an encoded word with U+202E
        "filename*=utf-8''invoice%E2%80%8Bgpj%EF%BB%BF.exe",  # ZERO WIDTH SPACE, BOM
    ],
)
def test_attachment_names_lose_format_characters(param: str) -> None:
    raw = _headers(
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Disposition: attachment; {param}\r\n\r\ndata\r\n--b--\r\n"
        ),
    )
    [attachment] = parse_mail(raw).attachments
    assert not any(unicodedata.category(c) == "Cf" for c in attachment.name)
    assert attachment.name.endswith(".exe")  # the real extension, shown as it is
    assert attachment.name == "invoicegpj.exe"


def test_eight_bit_attachment_name_is_read_as_utf8() -> None:
    raw = _headers(
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\r\nContent-Type: application/pdf\r\n"
            'Content-Disposition: attachment; filename="Jörg Müller.pdf"\r\n\r\nx\r\n--b--\r\n'
        ),
    )
    assert [a.name for a in parse_mail(raw).attachments] == ["Jörg Müller.pdf"]


def test_long_attachment_name_keeps_its_extension() -> None:
    raw = _headers(
        'Content-Type: multipart/mixed; boundary="b"',
        body=(
            "--b\r\nContent-Type: application/pdf\r\n"
            f'Content-Disposition: attachment; filename="{"n" * 400}.pdf"\r\n\r\nx\r\n--b--\r\n'
        ),
    )
    (attachment,) = parse_mail(raw).attachments
    assert len(attachment.name) <= 150
    assert attachment.name.endswith(".pdf")


def test_thousand_attachments_keep_the_first_hundred() -> None:
    mail = parse_mail(samples.many_attachments(1_000))
    assert len(mail.attachments) == 100
    assert mail.attachments[0].name == "file-0.txt"
    assert mail.attachments[-1].name == "file-99.txt"
    assert "1,000 attachments: kept the first 100" in mail.defects
    assert mail.full_text == "See attached."


def test_attachments_are_bounded_in_total_size() -> None:
    chunk = b"A" * (6 * 1024 * 1024)
    parts = b"".join(
        b"--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="f%d.bin"\r\n\r\n' % i + chunk + b"\r\n"
        for i in range(5)
    )
    raw = _headers('Content-Type: multipart/mixed; boundary="b"').replace(
        b"Hello\r\n", parts + b"--b--\r\n"
    )
    mail = parse_mail(raw)
    assert [a.name for a in mail.attachments] == ["f0.bin", "f1.bin", "f2.bin", "f3.bin"]
    assert sum(len(a.content) for a in mail.attachments) <= 25 * 1024 * 1024
    assert any("1 attachments left out" in defect for defect in mail.defects)


# --- automatic mail and bounces -------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Auto-Submitted", "auto-replied", "Auto-Submitted: auto-replied"),
        ("Auto-Submitted", "auto-generated", "Auto-Submitted: auto-generated"),
        ("X-Autoreply", "yes", "X-Autoreply"),
        ("X-Autorespond", "vacation", "X-Autorespond"),
        ("Precedence", "bulk", "Precedence: bulk"),
        ("Precedence", "Junk", "Precedence: junk"),
        ("Precedence", "list", "Precedence: list"),
        ("List-Unsubscribe", "<mailto:u@lists.example>", "List-Unsubscribe"),
    ],
)
def test_automatic_mail_is_recognised(header: str, value: str, reason: str) -> None:
    mail = parse_mail(samples.auto_reply(header, value))
    assert mail.automatic == reason
    assert mail.bounce is False


def test_list_message_is_automatic() -> None:
    assert parse_mail(samples.list_message()).automatic == "List-Id"


@pytest.mark.parametrize(
    "raw",
    [
        samples.outlook_normal(),
        samples.auto_reply("Auto-Submitted", "no"),
        samples.auto_reply("Precedence", "first-class"),
        samples.reply(),
        samples.german_reply(),
    ],
    ids=["outlook-suppress", "auto-submitted-no", "precedence-other", "reply", "german"],
)
def test_mail_from_people_is_not_automatic(raw: bytes) -> None:
    mail = parse_mail(raw)
    assert mail.automatic is None
    assert mail.bounce is False


def test_outlook_mail_with_auto_response_suppress_is_a_persons() -> None:
    raw = samples.outlook_normal()
    assert b"X-Auto-Response-Suppress: All" in raw
    assert parse_mail(raw).automatic is None


def test_exchange_auto_reply_is_recognised_by_its_subject() -> None:
    raw = samples.plain(
        "I am away.\n",
        subject="Automatic reply: Your mortgage request [M-12]",
        extra={"X_Auto_Response_Suppress": "All"},
    )
    assert parse_mail(raw).automatic == "X-Auto-Response-Suppress with an auto-reply subject"
    raw = samples.plain("I am away.\n", subject="Automatic reply: Your mortgage request [M-12]")
    assert parse_mail(raw).automatic is None  # the subject alone is a person's choice


def test_rfc3464_report_is_a_bounce() -> None:
    mail = parse_mail(samples.dsn_bounce())
    assert mail.bounce is True
    assert mail.automatic is not None
    assert [a.content_type for a in mail.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert mail.attachments[0].content.startswith(b"Reporting-MTA: dns; mx.acme.example")
    assert b"Status: 5.1.1" in mail.attachments[0].content


@pytest.mark.parametrize(
    "subject",
    [
        "failure notice",
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Undeliverable: Your mortgage request",
        "Mail delivery failed: returning message to sender",
    ],
)
def test_mailer_daemon_bounce_is_a_bounce(subject: str) -> None:
    mail = parse_mail(samples.mailer_daemon_bounce(subject))
    assert mail.bounce is True
    assert mail.automatic is not None


def test_postmaster_mail_without_bounce_subject_is_automatic_but_no_bounce() -> None:
    mail = parse_mail(
        samples.plain(
            "Your mailbox is almost full.\n",
            sender="postmaster@customer.example",
            subject="Quota warning",
        )
    )
    assert mail.bounce is False
    assert mail.automatic == "sent by postmaster"


def test_person_writing_undeliverable_is_not_a_bounce() -> None:
    mail = parse_mail(samples.plain("I got this.\n", subject="Undeliverable: your letter"))
    assert mail.bounce is False
    assert mail.automatic is None


def test_feedback_report_counts_as_a_bounce_kind_report() -> None:
    mail = parse_mail(samples.arf_report())
    assert mail.bounce is True
    assert mail.automatic is not None


# --- bad mail ---------------------------------------------------------------------


def test_broken_mime_is_read_as_far_as_it_parses() -> None:
    mail = parse_mail(samples.broken_mime())
    assert mail.message_id == "broken-1@customer.example"
    assert mail.subject == "broken"
    assert "a multipart part's boundary never appears" in mail.defects
    # Nothing is lost: the unreadable body is kept as a file.
    assert len(mail.attachments) == 1
    assert b"not base64" in mail.attachments[0].content
    _assert_safe(mail)


def test_invalid_charsets_fall_back_with_defects() -> None:
    mail = parse_mail(samples.invalid_charsets())
    assert mail.subject.startswith("café and ")
    assert mail.from_name == "Jérôme"
    assert mail.full_text == "Café crème"
    assert mail.html == "<p>résumé</p>"
    assert "the subject has an unknown charset 'x-made-up': read as latin-1" in mail.defects
    assert "the text part has an unknown charset 'x-made-up': read as latin-1" in mail.defects
    assert "the HTML part has an unknown charset 'base64': read as latin-1" in mail.defects
    assert any("not valid utf-8" in defect for defect in mail.defects)
    _assert_safe(mail)


def test_eight_bit_headers_are_read_as_utf8_or_latin1() -> None:
    mail = parse_mail(samples.eight_bit_headers())
    assert mail.subject == "Grüße aus Köln"
    assert mail.from_name == "Jörg Müller"
    assert mail.from_address == "joerg@kunde.example"
    assert "header 'from' holds 8-bit bytes that are not UTF-8: read as latin-1" in mail.defects
    assert mail.full_text == "Hallo ä\n"
    _assert_safe(mail)


@pytest.mark.parametrize("kind", ["multipart", "rfc822"])
def test_nesting_bombs_are_cut(kind: str) -> None:
    mail = parse_mail(samples.nesting_bomb(5_000, kind=kind))
    assert mail.message_id == "bomb@customer.example"
    assert any("nested more than" in defect for defect in mail.defects)
    assert len(mail.attachments) <= 1
    _assert_safe(mail)


def test_moderate_nesting_is_read_to_the_depth_bound() -> None:
    mail = parse_mail(samples.nesting_bomb(20))
    assert "MIME parts nested more than 10 levels deep were not read" in mail.defects
    assert mail.full_text == ""
    mail = parse_mail(samples.nesting_bomb(5))
    assert mail.full_text == "deep inside"
    assert mail.defects == ("no Date header",)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe",
        b"\r\n\r\n",
        b"Subject: only a header",
        b"no colon at all\r\n\r\nbody",
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n",
        b"Content-Type: text/plain; charset=\xff\xfe\r\n\r\nx",
        b"Content-Transfer-Encoding: base64\r\n\r\n====",
        b"From: " + b"<" * 10_000 + b"\r\n\r\n",
        b"Subject: =?utf-8?b?!!!?= =?utf-8?q?=ZZ?=\r\n\r\n",
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    mail = parse_mail(raw)
    _assert_safe(mail)
    assert dedupe_key(mail, raw).startswith(("mid:", "raw:"))


def test_not_bytes_is_a_defect_not_a_crash() -> None:
    mail = parse_mail("text")  # type: ignore[arg-type]
    assert mail.defects


def test_a_field_that_fails_costs_that_field_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(headers: object) -> None:
        raise IndexError("a parser bug met by hostile bytes")

    monkeypatch.setattr(parse_headers, "sent_at", broken)
    mail = parse_mail(samples.reply())
    assert mail.sent_at is None
    assert "the Date could not be read" in mail.defects
    assert mail.subject == "Re: Your mortgage request [M-12]"
    assert mail.text == "Yes, the valuation date works for me.\n\nJane"


def test_case_file_names_lose_format_characters() -> None:
    assert clean_name("invoice\u202egpj.exe") == "invoicegpj.exe"
    assert clean_name("\u2066a\u2069\u200e\u200f.pdf") == "a.pdf"
