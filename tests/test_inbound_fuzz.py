"""Malformed mail, generated: parse_mail never raises and every field stays bounded.

Random header names and values (8-bit bytes, encoded words in made-up charsets, broken
folding), random MIME trees (wrong and missing boundaries, bad transfer encodings,
attached messages, deep nesting) and truncated bytes. A stranger chooses these bytes,
so whatever they are, the listener must record the mail and go on.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postroom.inbound.parse import ParsedMail, dedupe_key, parse_mail
from postroom.text import check_body, check_line

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HEADER_NAMES = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Delivered-To",
    "X-Original-To",
    "Auto-Submitted",
    "X-Autoreply",
    "Precedence",
    "List-Id",
    "Return-Path",
    "Content-Type",
    "Content-Disposition",
    "Content-Transfer-Encoding",
    "MIME-Version",
]
CHARSETS = ["utf-8", "iso-8859-1", "x-made-up", "base64", "utf-7", "utf-16", "", "rot13", "\xff"]
PIECES = [
    b"=?",
    b"?=",
    b"=?utf-8?q?",
    b"=?x-bad?b?",
    b"<",
    b">",
    b"@",
    b'"',
    b"(",
    b")",
    b",",
    b";",
    b"\\",
    b"\r\n",
    b"\r\n ",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xe2\x80\xa8",
    b"boundary=",
    b"--",
    b"a@b.example",
    b"<id@x.example>",
    b"MAILER-DAEMON",
    b"multipart/report; report-type=delivery-status",
]

raw_value = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=12)), max_size=12).map(
    b"".join
)
encoded_word = st.builds(
    lambda charset, kind, text: f"=?{charset}?{kind}?{text}?=".encode("latin-1", "replace"),
    st.sampled_from(CHARSETS),
    st.sampled_from(["q", "b", "Q", "B", "x"]),
    st.text(alphabet="=ABCabc0123456789+/_?", max_size=16),
)
header_value = st.one_of(raw_value, encoded_word, st.text(max_size=40).map(str.encode))
known_name = st.sampled_from(HEADER_NAMES)
# Mostly headers Postroom reads, sometimes names that are not names at all.
header_name = st.one_of(
    known_name, known_name, known_name, st.text(alphabet="ABCXyz-:_ \t", min_size=1, max_size=12)
)


def _header_block(pairs: list[tuple[str, bytes]]) -> bytes:
    return b"".join(name.encode("latin-1") + b": " + value + b"\r\n" for name, value in pairs)


headers = st.lists(st.tuples(header_name, header_value), max_size=10).map(_header_block)
content_type = st.one_of(
    st.sampled_from(
        [
            "text/plain",
            "text/html",
            "image/png",
            "application/octet-stream",
            "message/delivery-status",
            "text/rfc822-headers",
            "bogus",
            "",
        ]
    ),
    st.text(max_size=20),
)
cte = st.sampled_from(["base64", "quoted-printable", "8bit", "7bit", "x-uuencode", "garbage", ""])


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    ctype = draw(content_type)
    charset = draw(st.sampled_from(CHARSETS))
    head = f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {draw(cte)}\r\n"
    if draw(st.booleans()):
        name = draw(st.text(max_size=30))
        head += f'Content-Disposition: attachment; filename="{name}"\r\n'
    body = draw(st.one_of(st.binary(max_size=200), raw_value))
    return head.encode("utf-8", "surrogatepass") + draw(headers) + b"\r\n" + body


def multipart(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        boundary = draw(st.text(alphabet="abc-=_'\" ", min_size=0, max_size=6))
        wrong = draw(st.sampled_from([None, "x", boundary + "-"]))
        parts = draw(st.lists(children, max_size=4))
        sep = (wrong if wrong is not None else boundary).encode()
        subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "digest"]))
        out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
        for part in parts:
            out += b"--" + sep + b"\r\n" + part + b"\r\n"
        if draw(st.booleans()):
            out += b"--" + sep + b"--\r\n"
        return out

    return build()


def embedded(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.tuples(headers, children).map(
        lambda pair: b"Content-Type: message/rfc822\r\n\r\n" + pair[0] + pair[1]
    )


tree = st.recursive(
    leaf(), lambda children: st.one_of(multipart(children), embedded(children)), max_leaves=12
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    raw = draw(headers) + draw(tree)
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=400))
    kinds = draw(st.lists(st.sampled_from(["multipart", "rfc822"]), min_size=1, max_size=3))
    out = b"Subject: deep\r\n"
    for level in range(depth):
        if kinds[level % len(kinds)] == "multipart":
            out += b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n' % level
            out += b"--n%d\r\n" % level
        else:
            out += b"Content-Type: message/rfc822\r\n\r\nSubject: level\r\n"
    return out + b"Content-Type: text/plain\r\n\r\ninside\r\n"


def _check_bounded(mail: ParsedMail, raw: bytes) -> None:
    assert len(mail.subject) <= 998
    check_line(mail.subject, field="subject")
    check_line(mail.from_name, field="from_name")
    assert len(mail.from_name) <= 200
    assert len(mail.text) <= 100_000
    assert len(mail.full_text) <= 100_000
    check_body(mail.text, field="text")
    check_body(mail.full_text, field="full_text")
    if mail.html is not None:
        assert len(mail.html) <= 2 * 1024 * 1024
        assert "\x00" not in mail.html
        mail.html.encode("utf-8")
    assert mail.message_id is None or 0 < len(mail.message_id) <= 900
    for identifier in (mail.message_id, *mail.in_reply_to, *mail.references):
        if identifier is not None:
            check_line(identifier, field="id")
            assert " " not in identifier
    assert len(mail.references) <= 50
    assert len(mail.in_reply_to) <= 10
    assert len(mail.recipients) <= 100
    for address in mail.recipients:
        assert address == address.lower()
        check_line(address, field="recipient")
    if mail.from_address is not None:
        check_line(mail.from_address, field="from_address")
    if mail.sent_at is not None:
        assert mail.sent_at.utcoffset() == timedelta(0)
    assert len(mail.attachments) <= 100
    assert sum(len(a.content) for a in mail.attachments) <= 25 * 1024 * 1024
    for attachment in mail.attachments:
        assert attachment.name
        assert len(attachment.name) <= 150
        assert "/" not in attachment.name
        assert "\\" not in attachment.name
        check_line(attachment.name, field="name")
        check_line(attachment.content_type, field="content_type")
    assert len(mail.defects) <= 51
    for defect in mail.defects:
        check_line(defect, field="defect")
    assert isinstance(mail.bounce, bool)
    if mail.bounce:
        assert mail.automatic is not None
    if mail.automatic is not None:
        check_line(mail.automatic, field="automatic")
    key = dedupe_key(mail, raw)
    assert key == dedupe_key(parse_mail(raw), raw)  # the same bytes, the same key
    assert key.startswith(("mid:", "raw:"))
    assert len(key) == 4 + 64


@FUZZ
@given(messages())
def test_generated_messages_never_raise(raw: bytes) -> None:
    _check_bounded(parse_mail(raw), raw)


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    _check_bounded(parse_mail(raw), raw)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nested())
def test_deep_nesting_never_raises(raw: bytes) -> None:
    mail = parse_mail(raw)
    _check_bounded(mail, raw)
    if raw.count(b"Content-Type:") > 13:
        assert any("nested more than" in defect for defect in mail.defects)
