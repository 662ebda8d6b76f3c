"""The IMAP side's TLS context, and imapclient's, ssl's and socket's failures in our words."""

from __future__ import annotations

import imaplib
import socket
import ssl

from imapclient import exceptions as imap_exceptions  # type: ignore[import-untyped]

from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    PostroomError,
    TransientDeliveryError,
)
from postroom.inbound.settings import InboundSettings
from postroom.transports.tls import verifying_context

# What OpenSSL reports when the peer answers a ClientHello in plain text.
PLAINTEXT_PEER = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)
_PROTOCOL_MISMATCH = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"}
)

LoginError = imap_exceptions.LoginError
IMAPClientError = imap_exceptions.IMAPClientError


def inbound_context(inbound: InboundSettings) -> ssl.SSLContext:
    """A verifying client context: the inbound truststore, else the system CAs."""
    return verifying_context(inbound.truststore, tls_min_version=inbound.tls_min_version)


def where(inbound: InboundSettings) -> str:
    return f"{inbound.host}:{inbound.port}"


def certificate_hint(exc: ssl.SSLCertVerificationError) -> str:
    """Why a certificate was refused, and what to do, in one line."""
    hint = "the IMAP server's certificate is not trusted"
    if exc.verify_message:
        hint += f" ({exc.verify_message})"
    hint += ": add the CA that issued it to the inbound truststore"
    if "match" in str(exc):
        hint += ", or check that the inbound host matches the certificate"
    return hint


def tls_hint(exc: ssl.SSLError, inbound: InboundSettings) -> str | None:
    """A configuration mistake behind a failed handshake, or None when it may pass."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return certificate_hint(exc)
    if exc.reason in PLAINTEXT_PEER:
        return (
            f"the server did not answer in TLS: port {inbound.port} may expect STARTTLS "
            "(usually port 143): set inbound security to starttls"
        )
    if exc.reason in _PROTOCOL_MISMATCH:
        return (
            f"no TLS version both sides accept (inbound tls_min_version is "
            f"{inbound.tls_min_version}): {exc.reason}"
        )
    return None


def translate(
    exc: BaseException,
    *,
    inbound: InboundSettings,
    stage: str,
    login: str = "",
    secrets: tuple[str, ...] = (),
) -> PostroomError:
    """The one Postroom error for a failure of ``stage`` (connect, login, select, fetch...)."""
    if isinstance(exc, PostroomError):
        return exc
    text = _scrub(short(exc), secrets)
    if isinstance(exc, LoginError):
        return CredentialsRejectedError(
            f"the IMAP server refused the login of {login or 'the account'}: {text}"
        )
    if isinstance(exc, ssl.SSLError):
        hint = tls_hint(exc, inbound)
        if hint is not None:
            return ConfigurationError(f"inbound {where(inbound)}: {hint}")
        return TransientDeliveryError(f"TLS failed with {where(inbound)}: {text}", stage=stage)
    if isinstance(exc, ConnectionRefusedError):
        return TransientDeliveryError(
            f"nothing accepts connections on {where(inbound)}", stage=stage
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientDeliveryError(f"no answer from {where(inbound)} in time", stage=stage)
    if isinstance(exc, imap_exceptions.IMAPClientAbortError | imaplib.IMAP4.abort):
        return TransientDeliveryError(f"the IMAP server ended the connection ({text})", stage=stage)
    if isinstance(exc, OSError):
        return TransientDeliveryError(f"cannot talk to {where(inbound)} ({text})", stage=stage)
    if isinstance(exc, IMAPClientError | imaplib.IMAP4.error):
        return TransientDeliveryError(f"the IMAP server refused a command: {text}", stage=stage)
    return TransientDeliveryError(f"{type(exc).__name__}: {text}", stage=stage)


def short(exc: BaseException) -> str:
    """The first line of an error, without imaplib's quoting of the server's bytes."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # imaplib quotes the server's bytes: b'[AUTHENTICATIONFAILED] ...'
    if text.startswith(("b'", 'b"')) and text.endswith(text[1]):
        text = text[2:-1]
    return text[:300]


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    # A server may echo what it was sent: never let a password or token through.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "••••••")
    return text
