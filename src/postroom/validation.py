"""Pure validators shared by every record: addresses, names, TLS floors, truststores."""

from __future__ import annotations

import functools
import re

from cryptography import x509
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from postroom.text import check_line, check_unicode

# Reject all C0 controls and DEL: CR/LF/NUL in particular enable header injection.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# C0 controls, DEL and the line breaks (NEL; categories Zl and Zp hold one character
# each, U+2028 and U+2029): the set check_line refuses; a test checks it against
# unicodedata.
_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_SPACE_RUN = re.compile(" {2,}")
# The everyday address: letters, digits and ._+- before the @, a DNS name with an
# alphabetic top-level domain after it. For these the validator's answer is known (the
# domain in lower case), so they skip it; tests check the two agree.
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]{1,64})*)"
    r"@(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63})"
)
_SPECIAL_USE = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_RECORD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
# The TLS floors an account may set, outgoing or incoming (older ones are insecure).
_TLS_VERSIONS = ("1.2", "1.3")


@functools.lru_cache(maxsize=8192)
def check_address(value: str, *, what: str = "address") -> str:
    """A normalised email address, or ``ValueError`` saying why it is not one.

    Pure, so its answers are kept: composing one email checks the sender, the reply-to
    and each recipient, and a batch repeats the same few addresses.
    """
    if (plain := _plain_address(value)) is not None:
        return plain
    check_unicode(value, field=what)  # before the validator, whose message quotes it
    if _CONTROL.search(value):
        raise ValueError(f"{what} contains a control character (line breaks are not allowed)")
    try:
        # No DNS: deliverability is the receiving server's business, and Postroom
        # must not send traffic anywhere but its configured servers.
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{what} {value.strip()!r} is not a valid email address: {exc}") from None
    if not result.normalized.isascii():
        # Headers would need SMTPUTF8 end to end (RFC 6532); until then, refuse clearly
        # rather than write an encoded word where RFC 2047 forbids one.
        raise ValueError(f"{what} {value.strip()!r}: internationalised addresses are not supported")
    return result.normalized


def _plain_address(value: str) -> str | None:
    """``value`` normalised as the validator would, if it is an everyday address."""
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None or len(value) > 254 or len(match["local"]) > 64:
        return None
    domain = match["domain"].lower()
    if "--" in domain or domain.rpartition(".")[2] in _SPECIAL_USE:
        return None  # punycode and reserved names: the validator decides
    return f"{match['local']}@{domain}"


def check_display_name(value: str, *, what: str = "display name") -> str:
    """A display name in valid Unicode without control characters (they could forge headers)."""
    return check_line(value, field=what).strip()


def check_record_name(value: str, *, what: str = "name") -> str:
    """A record name: letters, digits, '.', '_' and '-', as Pega class names are."""
    if not _RECORD_NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must start with a letter or digit and contain only "
            "letters, digits, '.', '_' and '-'"
        )
    return value


def single_line(value: str) -> str:
    """Fold every control character and line separator into a single space."""
    return _SPACE_RUN.sub(" ", _BREAKING.sub(" ", value)).strip()


def check_tls_min_version(value: object, *, what: str = "") -> str:
    """A TLS floor, "1.2" or "1.3" ("TLSv1.2" is read as "1.2"); ``what`` starts the message."""
    version = str(value).removeprefix("TLSv")
    if version not in _TLS_VERSIONS:
        raise ValueError(f"{what} must be 1.2 or 1.3".lstrip())
    return version


def check_truststore(value: str | None, *, what: str = "") -> str | None:
    """A PEM bundle holding at least one certificate, or None for the system's store."""
    if not value:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError(f"{what} must be a PEM bundle of CA certificates".lstrip()) from None
    if not certificates:
        raise ValueError(f"{what} holds no certificate".lstrip())
    return value
