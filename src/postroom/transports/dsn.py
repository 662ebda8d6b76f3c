"""DSN parameters for MAIL FROM and RCPT TO (RFC 3461), as strings ready for the wire.

Pure: the SMTP transport decides whether the server offers DSN and hands these to
aiosmtplib (one command at a time) or writes them into its pipelined command lines.

``ORCPT`` is given for ASCII addresses only (``rfc822;`` + xtext). An internationalised
address would need RFC 6533's ``utf-8`` address type; Postroom's address validation does
not let such addresses into the outbox, so for one the parameter is left out and the
report names the recipient by its Final-Recipient instead.
"""

from __future__ import annotations

from postroom.transports.base import DsnRequest

ENVID_MAX = 100  # RFC 3461 §4.4: the ENVID value, after encoding
ORCPT_MAX = 500  # RFC 3461 §4.2: the ORCPT value, "rfc822;" included


def xtext(value: str) -> str:
    """``value`` in RFC 3461 §4 xtext: ``+``, ``=``, controls and space as ``+HH``.

    ValueError for a character outside ASCII (xtext encodes bytes of US-ASCII only).
    """
    if not value.isascii():
        raise ValueError("xtext encodes US-ASCII only")
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in value)


def mail_parameters(dsn: DsnRequest | None) -> list[str]:
    """``RET`` and ``ENVID`` for MAIL FROM; nothing without a request."""
    if dsn is None:
        return []
    params = [f"RET={dsn.ret}"]
    if dsn.envid.isascii():
        envid = xtext(dsn.envid)
        if len(envid) <= ENVID_MAX:
            params.append(f"ENVID={envid}")
    return params


def rcpt_parameters(dsn: DsnRequest | None, address: str) -> list[str]:
    """``NOTIFY`` and ``ORCPT`` for one RCPT TO; nothing without a request."""
    if dsn is None:
        return []
    params = [f"NOTIFY={dsn.notify}"]
    if address.isascii():
        original = "rfc822;" + xtext(address)
        if len(original) <= ORCPT_MAX:
            params.append(f"ORCPT={original}")
    return params
