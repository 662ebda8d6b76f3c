"""DKIM signatures (RFC 6376) with dkimpy, applied last, over the final bytes.

relaxed/simple canonicalisation: header whitespace may be refolded by relays, the
body may not change (it is 7-bit and CRLF, so nothing has a reason to change it).
"""

from __future__ import annotations

import dkim as dkimpy

from postroom.errors import MessageError

# Signed when present; From is required by RFC 6376 §5.4.
SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id",
    b"mime-version", b"content-type", b"content-transfer-encoding",
)  # fmt: skip


def sign_dkim(raw: bytes, *, domain: str, selector: str, private_key_pem: bytes) -> bytes:
    """``raw`` with a ``DKIM-Signature`` header in front."""
    try:
        header = dkimpy.sign(
            raw,
            selector.encode("ascii"),
            domain.encode("ascii"),
            private_key_pem,
            canonicalize=(b"relaxed", b"simple"),
            include_headers=list(SIGNED_HEADERS),
        )
    except (dkimpy.DKIMException, ValueError, UnicodeError) as exc:
        raise MessageError(f"DKIM signing for {domain} failed: {exc}") from None
    return bytes(header) + raw
