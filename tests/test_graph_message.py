"""Stored message bytes to Microsoft Graph's JSON: fields, recipients, attachments, limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from postroom.correspondence.mime import Attachment, Mailbox, OutgoingEmail, build_message
from postroom.errors import MessageError
from postroom.transports.graph_message import (
    REQUEST_LIMIT,
    SMALL_ATTACHMENT_LIMIT,
    FileAttachment,
    GraphMessage,
    graph_message,
)

SENDER = Mailbox("noreply@example.com", "Case Desk")
DATE = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
HTML = "<p>Your request <b>C-17</b> was approved.</p>"
TEXT = "Your request C-17 was approved."


def outgoing(**changes: Any) -> OutgoingEmail:
    fields: dict[str, Any] = {
        "sender": SENDER,
        "to": (Mailbox("owner@example.com", "Olivia Owner"),),
        "cc": (Mailbox("manager@example.com", "Max Manager"),),
        "bcc": (Mailbox("audit@example.com"),),
        "subject": "Request C-17 approved",
        "html": HTML,
        "text": TEXT,
        "message_id": "<c17.1@example.com>",
        "date": DATE,
        "reply_to": "desk@example.com",
        "headers": (("X-Postroom-Case", "C-17"),),
    }
    fields.update(changes)
    return OutgoingEmail(**fields)


def convert(email: OutgoingEmail, recipients: list[str] | None = None) -> GraphMessage:
    raw = build_message(email)
    return graph_message(
        raw, recipients=email.envelope_recipients if recipients is None else recipients
    )


def box(address: str, name: str = "") -> dict[str, Any]:
    return {"emailAddress": {"address": address, **({"name": name} if name else {})}}


def test_plain_email_becomes_graph_fields() -> None:
    converted = convert(outgoing())
    message = dict(converted.message)
    body = message.pop("body")
    assert body["contentType"] == "HTML"
    assert body["content"].strip() == HTML
    assert message == {
        "subject": "Request C-17 approved",
        "from": box("noreply@example.com", "Case Desk"),
        "toRecipients": [box("owner@example.com", "Olivia Owner")],
        "ccRecipients": [box("manager@example.com", "Max Manager")],
        "bccRecipients": [box("audit@example.com")],
        "replyTo": [box("desk@example.com")],
        "internetMessageId": "<c17.1@example.com>",
        # Date, MIME-Version, Content-Type... stay out: Graph sets only x- headers.
        "internetMessageHeaders": [{"name": "X-Postroom-Case", "value": "C-17"}],
    }
    assert converted.attachments == ()
    assert not converted.needs_draft
    assert converted.send_mail_body(save_to_sent_items=True) == {"message": converted.message}
    assert converted.draft_body() == converted.message


def test_without_html_the_text_is_the_body() -> None:
    raw = (
        b"From: desk@example.com\r\nTo: owner@example.com\r\nSubject: Plain\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 ouvert.\r\n"
    )
    converted = graph_message(raw, recipients=["owner@example.com"])
    assert converted.message["body"]["contentType"] == "Text"
    assert converted.message["body"]["content"].strip() == "Café ouvert."
    assert "internetMessageHeaders" not in converted.message
    assert "internetMessageId" not in converted.message
    assert converted.attachments == ()


def test_non_ascii_subject_and_names_are_decoded() -> None:
    email = outgoing(
        sender=Mailbox("noreply@example.com", "Zoë Ångström"),
        to=(Mailbox("owner@example.com", "Jürgen Müller-Łukasiewicz"),),
        cc=(Mailbox("manager@example.com", "山田 太郎"),),
        subject="Demande n° C-17 approuvée — 承認済み ✓",
    )
    raw = build_message(email)
    assert b"=?utf-8?" in raw  # the header really is RFC 2047 encoded
    message = graph_message(raw, recipients=email.envelope_recipients).message
    assert message["subject"] == "Demande n° C-17 approuvée — 承認済み ✓"
    assert message["from"] == box("noreply@example.com", "Zoë Ångström")
    assert message["toRecipients"] == [box("owner@example.com", "Jürgen Müller-Łukasiewicz")]
    assert message["ccRecipients"] == [box("manager@example.com", "山田 太郎")]


def test_a_retry_sends_only_to_the_recipients_left() -> None:
    converted = convert(outgoing(), recipients=["MANAGER@example.com", "audit@example.com"])
    message = converted.message
    assert "toRecipients" not in message
    assert message["ccRecipients"] == [box("manager@example.com", "Max Manager")]
    assert message["bccRecipients"] == [box("audit@example.com")]


def test_recipients_are_listed_once_in_order() -> None:
    email = outgoing(
        to=(Mailbox("b@example.com", "Bee"), Mailbox("a@example.com", "Ay")),
        cc=(Mailbox("A@example.com", "Ay again"), Mailbox("c@example.com")),
        bcc=(Mailbox("z@example.com"), Mailbox("y@example.com")),
    )
    recipients = ["b@example.com", "a@example.com", "c@example.com", "z@example.com"]
    message = convert(email, [*recipients, "Z@EXAMPLE.COM", "y@example.com"]).message
    assert message["toRecipients"] == [box("b@example.com", "Bee"), box("a@example.com", "Ay")]
    assert message["ccRecipients"] == [box("c@example.com")]
    assert message["bccRecipients"] == [box("z@example.com"), box("y@example.com")]


def test_small_attachments_go_inline_and_round_trip() -> None:
    pdf = bytes(range(256)) * 40
    email = outgoing(
        attachments=(
            Attachment("report.pdf", "application/pdf", pdf),
            Attachment("notes.txt", "text/plain", b"line one\r\nline two\r\n"),
        )
    )
    converted = convert(email)
    assert "attachments" not in converted.message
    assert not converted.needs_draft
    sent = converted.send_mail_body(save_to_sent_items=True)["message"]["attachments"]
    assert [a["name"] for a in sent] == ["report.pdf", "notes.txt"]
    assert sent[0] == {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "report.pdf",
        "contentType": "application/pdf",
        "contentBytes": base64.b64encode(pdf).decode(),
    }
    assert base64.b64decode(sent[0]["contentBytes"]) == pdf
    assert base64.b64decode(sent[1]["contentBytes"]) == b"line one\r\nline two\r\n"
    assert "attachments" not in converted.draft_body()


def test_an_attachment_of_the_small_limit_needs_a_draft() -> None:
    big = b"\x89PNG" + bytes(SMALL_ATTACHMENT_LIMIT - 4)
    email = outgoing(
        attachments=(
            Attachment("scan.png", "image/png", big),
            Attachment("small.txt", "text/plain", b"hi"),
        )
    )
    converted = convert(email)
    assert converted.needs_draft
    with pytest.raises(ValueError, match="too large"):
        converted.send_mail_body(save_to_sent_items=True)
    draft = converted.draft_body()
    assert "attachments" not in draft
    assert draft["subject"] == "Request C-17 approved"
    scan, small = converted.attachments
    assert scan.content == big
    assert scan.upload_item() == {
        "attachmentType": "file",
        "name": "scan.png",
        "size": SMALL_ATTACHMENT_LIMIT,
        "contentType": "image/png",
    }
    assert small.content == b"hi"


def test_several_small_attachments_over_the_request_limit_need_a_draft() -> None:
    part = 800 * 1024  # each well under 3 MB, together over 4 MB once base64-encoded
    files = tuple(
        Attachment(f"part{i}.bin", "application/octet-stream", bytes([i]) * part) for i in range(4)
    )
    converted = convert(outgoing(attachments=files))
    assert all(len(a.content) < SMALL_ATTACHMENT_LIMIT for a in converted.attachments)
    assert converted.needs_draft
    with pytest.raises(ValueError):
        converted.send_mail_body(save_to_sent_items=False)

    two = convert(outgoing(attachments=files[:2]))
    assert not two.needs_draft
    body = two.send_mail_body(save_to_sent_items=False)
    assert len(json.dumps(body).encode()) < REQUEST_LIMIT


def test_the_request_size_counts_escaped_non_ascii() -> None:
    # Under 4 MB as UTF-8, over it once every character is escaped as \uXXXX.
    subject = "承" * (REQUEST_LIMIT // 4)
    converted = GraphMessage(message={"subject": subject}, attachments=())
    assert len(json.dumps({"message": converted.message}, ensure_ascii=False).encode()) < (
        REQUEST_LIMIT
    )
    assert converted.needs_draft


@pytest.mark.parametrize(("save", "expected"), [(True, None), (False, False)])
def test_save_to_sent_items_is_sent_only_when_false(save: bool, expected: bool | None) -> None:
    body = convert(outgoing()).send_mail_body(save_to_sent_items=save)
    assert body.get("saveToSentItems", None) is expected
    assert ("saveToSentItems" in body) is (not save)


RELATED = b"""\
From: Case Desk <desk@example.com>\r
To: owner@example.com\r
Subject: With a logo\r
Message-ID: <logo.1@example.com>\r
MIME-Version: 1.0\r
Content-Type: multipart/mixed; boundary="outer"\r
\r
--outer\r
Content-Type: multipart/alternative; boundary="alt"\r
\r
--alt\r
Content-Type: text/plain; charset=utf-8\r
Content-Disposition: inline\r
\r
See the logo.\r
--alt\r
Content-Type: multipart/related; boundary="rel"\r
\r
--rel\r
Content-Type: text/html; charset=utf-8\r
\r
<p>See <img src="cid:logo.7@example.com"></p>\r
--rel\r
Content-Type: image/png\r
Content-Transfer-Encoding: base64\r
Content-ID: <logo.7@example.com>\r
\r
iVBORw0KGgo=\r
--rel--\r
--alt--\r
--outer\r
Content-Type: application/pdf; name="terms.pdf"\r
Content-Transfer-Encoding: base64\r
Content-Disposition: attachment; filename="terms.pdf"\r
\r
JVBERi0xLjQ=\r
--outer--\r
"""


def test_inline_image_in_multipart_related() -> None:
    converted = graph_message(RELATED, recipients=["owner@example.com"])
    assert converted.message["body"] == {
        "contentType": "HTML",
        "content": '<p>See <img src="cid:logo.7@example.com"></p>',
    }
    logo, terms = converted.attachments  # the plain alternative is the body, not a file
    assert logo == FileAttachment(
        name="attachment.png",
        content_type="image/png",
        content=b"\x89PNG\r\n\x1a\n",
        is_inline=True,
        content_id="logo.7@example.com",
    )
    assert logo.to_json()["isInline"] is True
    assert logo.to_json()["contentId"] == "logo.7@example.com"
    assert logo.upload_item()["contentId"] == "logo.7@example.com"
    assert terms.name == "terms.pdf"
    assert terms.content == b"%PDF-1.4"
    assert not terms.is_inline
    assert "isInline" not in terms.to_json()


def test_an_attached_message_is_an_eml_file() -> None:
    inner = b"From: a@example.com\r\nSubject: Original\r\n\r\nThe first email.\r\n"
    raw = (
        b"From: desk@example.com\r\nTo: owner@example.com\r\nSubject: Fwd\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--b--\r\n"
    )
    (attached,) = graph_message(raw, recipients=["owner@example.com"]).attachments
    assert attached.name == "message.eml"
    assert attached.content_type == "message/rfc822"
    parsed = message_from_bytes(attached.content, policy=policy.default)
    assert parsed["Subject"] == "Original"
    assert attached.content.startswith(b"From: a@example.com\r\n")


def test_encoded_line_breaks_in_headers_become_spaces() -> None:
    raw = (
        b"From: Desk <desk@example.com>\r\nTo: owner@example.com\r\n"
        b"Subject: =?utf-8?q?Hello=0D=0AX-Injected:_1?=\r\n"
        b"X-Postroom-Case: =?utf-8?b?Qy0xCgpDLTI=?=\r\n"
        b"X-Postroom-Note: =?utf-8?q?a=E2=80=A8b?=\r\n"
        b"Content-Type: text/plain\r\n\r\nBody\r\n"
    )
    message = graph_message(raw, recipients=["owner@example.com"]).message
    assert message["subject"] == "Hello X-Injected: 1"
    assert message["internetMessageHeaders"] == [
        {"name": "X-Postroom-Case", "value": "C-1 C-2"},
        {"name": "X-Postroom-Note", "value": "a b"},
    ]


@pytest.mark.parametrize(
    "header",
    [
        b"From: =?utf-8?q?Desk=0D=0ABcc:_x@evil.example?= <desk@example.com>",
        b"To: =?utf-8?b?T3duZXINCg==?= <owner@example.com>",
        b"Subject: =?unicode_escape?q?=5Cud800?=",  # the stdlib cannot decode it
    ],
)
def test_a_header_the_stdlib_refuses_is_refused(header: bytes) -> None:
    raw = b"From: desk@example.com\r\n" if not header.startswith(b"From") else b""
    raw += header + b"\r\nContent-Type: text/plain\r\n\r\nBody\r\n"
    with pytest.raises(MessageError):
        graph_message(raw, recipients=["owner@example.com"])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"not an email at all",
        b"To: owner@example.com\r\nSubject: no sender\r\n\r\nBody\r\n",
        b"From: nobody\r\nTo: owner@example.com\r\n\r\nBody\r\n",
    ],
)
def test_bytes_without_a_sender_are_refused(raw: bytes) -> None:
    with pytest.raises(MessageError):
        graph_message(raw, recipients=["owner@example.com"])


def test_no_recipient_left_is_refused() -> None:
    with pytest.raises(ValueError, match="recipient"):
        graph_message(build_message(outgoing()), recipients=[])


def test_a_recipient_with_a_line_break_is_refused() -> None:
    with pytest.raises(MessageError):
        graph_message(build_message(outgoing()), recipients=["owner@example.com\r\nBcc: x@y.z"])


# --- property: nothing in the JSON spans lines --------------------------------------

ENCODED = [
    "=?utf-8?q?=0D=0A?=",
    "=?utf-8?b?DQo=?=",
    "=?utf-8?q?a=0Ab?=",
    "=?utf-8?q?=E2=80=A8?=",
    "=?utf-8?q?=C2=85?=",
    "=?iso-8859-1?q?caf=E9?=",
    "=?x-unknown?q?x?=",
    "=?utf-8?q?",
    "?=",
]
# Anything a header line may hold; raw non-ASCII is written as 8-bit UTF-8.
LINE_CHARS = st.characters(exclude_characters="\r\n", exclude_categories=["Cs"])
# Display names without address syntax, so the From address itself always parses.
NAME_CHARS = st.characters(exclude_characters='\r\n<>@,;:"\\()[]', exclude_categories=["Cs", "Cc"])


def pieces(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(
        st.one_of(st.text(chars, max_size=12), st.sampled_from(ENCODED)), max_size=6
    ).map(" ".join)


def stdlib_reads_addresses(raw: bytes) -> bool:
    """Whether the stdlib reads the address headers (it refuses names with line breaks)."""
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    try:
        for header in ("From", "To", "Cc", "Reply-To"):
            assert parsed[header].addresses
    except (ValueError, AttributeError, IndexError):  # the stdlib trips over some names
        return False
    return True


def strings(value: Any, *, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from strings(item, path=f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, path=f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=pieces(LINE_CHARS), name=pieces(NAME_CHARS), filename=pieces(NAME_CHARS))
@example(subject="=?utf-8?q?a=0D=0ABcc:_x@y.z?=", name="Zo=?utf-8?q?=C3=AB?=", filename="a\u2028b")
@example(subject="", name="=?utf-8?b?DQo=?=", filename="")  # a name the stdlib refuses
@example(subject="", name=".", filename="")  # a name the stdlib trips over
def test_no_value_in_the_json_spans_lines(subject: str, name: str, filename: str) -> None:
    raw = (
        f"From: {name} <desk@example.com>\r\n"
        f"To: {name} <owner@example.com>, other@example.com\r\n"
        f"Cc: {name} <manager@example.com>\r\n"
        f"Reply-To: {name} <desk@example.com>\r\n"
        f"Subject: {subject}\r\n"
        f"X-Postroom-Case: {subject}\r\n"
        "Message-ID: <prop.1@example.com>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Body\r\nlines</p>\r\n"
        "--b\r\nContent-Type: application/pdf\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-ID: <{subject}>\r\n\r\n%PDF\r\n--b--\r\n"
    ).encode()
    recipients = ["owner@example.com", "manager@example.com", "audit@example.com"]
    if not stdlib_reads_addresses(raw):
        with pytest.raises(MessageError):
            graph_message(raw, recipients=recipients)
        return
    converted = graph_message(raw, recipients=recipients)
    body = converted.send_mail_body(save_to_sent_items=False)
    for where, value in strings(body):
        if where != ".message.body.content":
            assert "\r" not in value, where
            assert "\n" not in value, where
    for item in converted.attachments:
        for value in (*item.upload_item().values(), item.content_id or ""):
            assert "\r" not in str(value)
            assert "\n" not in str(value)
    assert json.loads(json.dumps(body)) == body
    assert json.loads(json.dumps(body, ensure_ascii=False).encode("utf-8")) == body
    assert body["message"]["from"]["emailAddress"]["address"] == "desk@example.com"
    assert [r["emailAddress"]["address"] for r in body["message"]["bccRecipients"]] == [
        "audit@example.com"
    ]


def test_at_most_five_custom_headers_with_postroom_s_own_first() -> None:
    extra = tuple((f"X-Extra-{i}", str(i)) for i in range(6))
    email = outgoing(headers=(*extra, ("X-Postroom-Case", "C-7")))
    headers = convert(email).message["internetMessageHeaders"]
    assert len(headers) == 5  # Graph refuses more
    assert headers[0] == {"name": "X-Postroom-Case", "value": "C-7"}
    assert [h["name"] for h in headers[1:]] == ["X-Extra-0", "X-Extra-1", "X-Extra-2", "X-Extra-3"]
