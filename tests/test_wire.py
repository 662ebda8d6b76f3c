"""The message writer read back by the standard library's parser: every value exactly."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

from hypothesis import example, given, settings
from hypothesis import strategies as st

from postroom.correspondence.mime import Attachment, Mailbox, OutgoingEmail, build_message
from postroom.errors import MessageError
from postroom.validation import single_line

# Text a reader gets back exactly: no controls (they are refused or folded before).
text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=120)
names = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def squeeze(name: str) -> str:
    return name if name.isascii() else "".join(name.split())


def build(**fields: object) -> bytes:
    values: dict[str, object] = {
        "sender": Mailbox("sender@example.com", "Sender"),
        "to": (Mailbox("to@example.net", "To"),),
        "subject": "s",
        "html": "<p>h</p>",
        "text": "t",
        "message_id": "<m1@example.com>",
        "date": datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    }
    values.update(fields)
    return build_message(OutgoingEmail(**values))  # type: ignore[arg-type]


def assert_wire_safe(raw: bytes) -> None:
    assert all(b < 0x80 for b in raw)  # 7-bit: S/MIME and DKIM rely on it
    lines = raw.split(b"\r\n")
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    head = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")
    # Lines of encoded words are kept within the recommended 78 characters.
    assert all(len(line) <= 78 for line in head if line.startswith(b" =?utf-8?b?"))


@settings(max_examples=300, deadline=None, database=None)
@given(subject=text, sender=names, to=names, body=text)
@example(
    subject="Hypothèque M-1 créée — ✓ " * 8,
    sender='a "quoted" name, with (specials)',
    to="Zoë",
    body="x",
)
@example(subject="=?utf-8?q?caf=C3=A9?= ok", sender="", to="", body=".\n.\nFrom me\n")
@example(subject=" " * 5, sender="é" * 30, to="x" * 70, body="\r\n\r" + "a" * 200)
def test_every_value_comes_back_exactly(subject: str, sender: str, to: str, body: str) -> None:
    try:
        raw = build(
            subject=subject,
            sender=Mailbox("sender@example.com", sender),
            to=(Mailbox("to@example.net", to),),
            text=body,
            html=f"<p>{body}</p>",
        )
    except MessageError:
        assert "=?" in subject + sender + to  # only an encoded word may be refused
        return
    assert_wire_safe(raw)
    msg = parse(raw)
    expected_subject = single_line(subject)
    if "=?" not in subject:
        assert str(msg["Subject"]) == expected_subject
    [from_box] = msg["From"].addresses
    [to_box] = msg["To"].addresses
    assert (from_box.addr_spec, to_box.addr_spec) == ("sender@example.com", "to@example.net")
    if "=?" not in sender + to:
        # Python's address parser keeps the space between two encoded words (RFC 2047
        # says readers drop it; mail clients do): compare non-ASCII names without spaces.
        assert squeeze(from_box.display_name) == squeeze(sender.strip())
        assert squeeze(to_box.display_name) == squeeze(to.strip())
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None
    assert html is not None

    def normalized(value: str) -> str:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
        return value if value.endswith("\n") else value + "\n"  # a text part ends a line

    assert plain.get_content().replace("\r\n", "\n") == normalized(body)
    assert html.get_content().replace("\r\n", "\n") == normalized(f"<p>{body}</p>")


@settings(max_examples=150, deadline=None, database=None)
@given(filename=names.filter(lambda n: single_line(n) != ""), content=st.binary(max_size=3000))
@example(filename="é" * 200, content=b"\x00" * 10)
@example(filename='quo"te\\d.pdf', content=b"%PDF")
def test_attachments_come_back_byte_for_byte(filename: str, content: bytes) -> None:
    attachment = Attachment(filename, "application/pdf", content)
    try:
        raw = build(attachments=(attachment,))
    except MessageError:
        assert "=?" in filename
        return
    assert_wire_safe(raw)
    msg = parse(raw)
    [part] = list(msg.iter_attachments())
    assert part.get_content() == content
    if "=?" not in filename:
        assert part.get_filename() == single_line(filename)
    assert msg.get_body(("plain",)) is not None


def test_the_shape_is_alternative_inside_mixed_and_7bit() -> None:
    raw = build(
        to=(Mailbox("a@example.net", "A"), Mailbox("b@example.net")),
        cc=(Mailbox("c@example.net", "C c"),),
        bcc=(Mailbox("hidden@example.net"),),
        reply_to="team@example.com",
        headers=(("X-Postroom-Case", "M-1"),),
        attachments=(Attachment("a.txt", "text/plain", b"hello"),),
    )
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/mixed"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["multipart/alternative", "text/plain"]
    assert str(msg["To"]) == "A <a@example.net>, b@example.net"
    assert str(msg["Reply-To"]) == "team@example.com"
    assert str(msg["X-Postroom-Case"]) == "M-1"
    assert b"hidden@example.net" not in raw  # Bcc is the envelope's business only
    assert raw.count(b"MIME-Version") == 1
