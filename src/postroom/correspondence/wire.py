"""Writing a message's bytes directly: RFC 5322 headers, RFC 2047 words, MIME parts.

The standard library's ``EmailMessage`` spends most of a composition in its header
registry, folding and generator. The messages Postroom sends have one fixed shape
(text and HTML alternatives, then attachments), so they are written here in one pass,
7-bit and CRLF throughout: quoted-printable text, base64 attachments, encoded words
for non-ASCII header text, RFC 2231 for file names.

Encoded words found in the input (``=?utf-8?q?...?=``) are decoded first, as a reader
would decode them, and refused when that gives a line break or control character;
what is written is the decoded text, encoded again where it needs to be.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Sequence
from email.header import decode_header
from urllib.parse import quote

from postroom.errors import MessageError

CRLF = b"\r\n"
LINE = 78  # recommended line length (RFC 5322 2.1.1); encoded words stay within it
_UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ATOM_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_WORD_BYTES = 45  # 45 bytes of UTF-8 make 60 base64 characters: a 72-character word


def unsafe_header(name: str) -> MessageError:
    return MessageError(
        f"the {name} header would contain a line break or control character "
        "(an RFC 2047 encoded word in a subject, name or file name?)"
    )


def decoded(value: str, *, header: str) -> str:
    """``value`` as a reader shows it: its encoded words decoded; refused if unsafe."""
    if "=?" in value:
        parts = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, str):
                parts.append(chunk)
                continue
            try:
                parts.append(chunk.decode(charset or "ascii", "replace"))
            except LookupError:
                parts.append(chunk.decode("latin-1"))
        value = "".join(parts)
    if _UNSAFE.search(value):
        raise unsafe_header(header)
    return value


def _encoded_words(text: str) -> list[str]:
    """``text`` as base64 encoded words, never splitting a character between two."""
    words, chunk = [], b""
    for char in text:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    if chunk or not words:
        words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(w).decode()}?=" for w in words]


def _plain(text: str) -> bool:
    # Written as is only when a reader would read it back unchanged.
    return text.isascii() and "=?" not in text and text == " ".join(text.split())


def unstructured(name: str, value: str) -> bytes:
    """An unstructured header (Subject, X-...): plain ASCII folded, else encoded words."""
    text = decoded(value, header=name)
    if _plain(text) and all(len(w) < LINE - len(name) - 2 for w in text.split()):
        return fold(name, text.split(" "), separator=" ")
    return fold(name, _encoded_words(text), separator=" ")


def _display_name(name: str, *, header: str) -> list[str]:
    text = decoded(name, header=header)
    if not text:
        return []
    if _plain(text) and len(text) < 900:
        if _ATOM_SPECIALS.search(text) or any(len(w) >= LINE // 2 for w in text.split()):
            # One quoted string: it may pass 78 characters, never 998.
            return ['"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"']
        return text.split(" ")
    return _encoded_words(text)


def addresses(name: str, boxes: Sequence[tuple[str, str]]) -> bytes:
    """An address list header from (display name, address) pairs, folded between them."""
    tokens: list[str] = []
    for i, (display, address) in enumerate(boxes):
        words = _display_name(display, header=name)
        tail = "," if i < len(boxes) - 1 else ""
        if words:
            tokens.extend(words)
            tokens.append(f"<{address}>{tail}")
        else:
            tokens.append(f"{address}{tail}")
    return fold(name, tokens, separator=" ")


def fold(name: str, tokens: Iterable[str], *, separator: str) -> bytes:
    """``Name: tokens`` with lines broken before a token once they would pass 78 characters."""
    if not _HEADER_NAME.fullmatch(name):
        raise MessageError(f"{name!r} is not a header name")
    lines: list[str] = []
    current = f"{name}:"
    for token in tokens:
        if not token:
            continue
        if len(current) + 1 + len(token) > LINE and current != f"{name}:":
            lines.append(current)
            current = " " + token
        else:
            current = f"{current}{separator}{token}"
    lines.append(current)
    out = "\r\n".join(lines).encode("ascii")
    if any(len(line) > 998 for line in out.split(CRLF)):
        raise MessageError(f"the {name} header has a word too long for one line")
    return out


def quoted_printable(text: str) -> bytes:
    """UTF-8 text as quoted-printable with CRLF line ends (lines of at most 76)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(lines, istext=True).replace(b"\n", CRLF)


def base64_lines(content: bytes) -> bytes:
    return base64.encodebytes(content).replace(b"\n", CRLF)


def filename_parameters(filename: str) -> list[str]:
    """``filename="x"`` for short plain names, else RFC 2231 (``filename*0*=utf-8''...``).

    An ASCII name is read by mail clients with its encoded words decoded, so it is
    checked that way; a non-ASCII one is percent-encoded and arrives literally.
    """
    if filename.isascii():
        text = decoded(filename, header="Content-Disposition")
    elif _UNSAFE.search(filename):
        raise unsafe_header("Content-Disposition")
    else:
        text = filename
    if _plain(text) and len(text) < 60 and '"' not in text and "\\" not in text:
        return [f'filename="{text}"']
    encoded = quote(text, safe="")
    # Continuations of at most 60 characters, never cutting a %XX escape in two.
    pieces, start = [], 0
    while start < len(encoded):
        end = min(start + 60, len(encoded))
        while end < len(encoded) and "%" in encoded[end - 2 : end]:
            end -= 1
        pieces.append(encoded[start:end])
        start = end
    first = f"filename*0*=utf-8''{pieces[0]}" if pieces else "filename*=utf-8''"
    return [first] + [f"filename*{i}*={piece}" for i, piece in enumerate(pieces[1:], start=1)]


def new_boundary() -> bytes:
    # "=_" cannot occur in quoted-printable or base64 output (RFC 2045 6.7, 6.8).
    return f"=_postroom_{secrets.token_hex(12)}".encode()
