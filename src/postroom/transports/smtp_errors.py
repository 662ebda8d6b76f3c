"""SMTP replies and aiosmtplib's failures, translated into Postroom's errors."""

from __future__ import annotations

import ssl

import aiosmtplib

from postroom.accounts.models import EmailAccount
from postroom.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from postroom.outbox.classify import Verdict, classify_reply, split_enhanced
from postroom.outbox.models import Refusal

# Replies about the account (authentication), not the message: fixing the account
# lets the message go, so it waits rather than fails.
ACCOUNT_LEVEL_CODES = frozenset({530, 534, 535, 538})


def reply_error(
    code: int, message: str, *, stage: str, transient_anyway: bool = False
) -> DeliveryError:
    """The error for an SMTP reply; ``transient_anyway`` for account-level stages."""
    enhanced, text = split_enhanced(message)
    verdict = classify_reply(code, enhanced)
    explained = f"{text} ({verdict.explanation})" if verdict.explanation else text
    kind = (
        PermanentDeliveryError
        if verdict.verdict is Verdict.PERMANENT and not transient_anyway
        else TransientDeliveryError
    )
    return kind(explained, code=code, enhanced=enhanced, stage=stage)


def connection_error(exc: BaseException, *, stage: str, account: EmailAccount) -> DeliveryError:
    """Explain a failure to reach or talk to the server; the message itself is fine."""
    # aiosmtplib wraps TLS failures during connect() in SMTPConnectError; the cause
    # says what is wrong (an untrusted certificate, the wrong TLS mode).
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, ssl.SSLError):
        exc = exc.__cause__
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = (
            "the server's certificate is not trusted"
            + (f" ({exc.verify_message})" if exc.verify_message else "")
            + ": add the CA that issued it to the account's truststore"
            + (", or check that host matches the certificate" if "match" in str(exc) else "")
        )
        return TransientDeliveryError(hint, stage=stage)
    if isinstance(exc, ssl.SSLError):
        return TransientDeliveryError(
            f"TLS failed ({exc.reason or exc}): check security ({account.security}) and "
            f"port {account.port}: implicit TLS is usually port 465, STARTTLS port 587",
            stage=stage,
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return reply_error(exc.code, exc.message, stage=stage, transient_anyway=True)
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return TransientDeliveryError(
            f"no answer from {account.host}:{account.port} in time", stage=stage
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return TransientDeliveryError(f"the server closed the connection ({exc})", stage=stage)
    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        return TransientDeliveryError(
            f"cannot connect to {account.host}:{account.port} ({_short(exc)})", stage=stage
        )
    return TransientDeliveryError(f"{type(exc).__name__}: {_short(exc)}", stage=stage)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def refusal(code: int, message: str) -> Refusal:
    """One recipient's refusal, classified."""
    enhanced, text = split_enhanced(message)
    verdict = classify_reply(code, enhanced)
    explained = f"{text} ({verdict.explanation})" if verdict.explanation else text
    return Refusal(code=code, text=explained, verdict=verdict.verdict, enhanced=enhanced)
