"""Connectivity test of an SMTP account: each stage of a session, explained when it fails.

Stages run in the order a session takes them and stop at the first failure.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import aiosmtplib
from cryptography import x509
from cryptography.x509.oid import NameOID

from postroom.accounts.advanced import parse_advanced
from postroom.accounts.models import EmailAccount
from postroom.accounts.presets import Security
from postroom.auth.tokens import AccessToken
from postroom.outbox.classify import EXPLANATIONS, classify_reply, split_enhanced
from postroom.transports.smtp import AUTH_PREFERENCE
from postroom.transports.smtp_errors import connection_error
from postroom.transports.tls import client_context

EXPIRY_WARNING_DAYS = 30
# What OpenSSL reports when the peer answers a ClientHello in plain text.
_PLAINTEXT_PEER = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"}
)
_FAILURES = (aiosmtplib.SMTPException, OSError, TimeoutError)
_E = TypeVar("_E", bound=BaseException)


@dataclass(frozen=True, slots=True)
class Step:
    """One stage of the test: what happened and, on failure, what to do about it."""

    name: str
    ok: bool
    detail: str
    explanation: str = ""


@dataclass(frozen=True, slots=True)
class ConnectivityReport:
    """The stages of one test, in order, up to and including the first failure."""

    steps: tuple[Step, ...]

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)


async def check_connectivity(
    account: EmailAccount,
    *,
    timeout: float,
    oauth: Callable[[], Awaitable[tuple[Step, AccessToken | None]]] | None = None,
) -> ConnectivityReport:
    """Open a session to the account's server stage by stage, as the sender agent would.

    ``oauth`` gets the access token for XOAUTH2 (as a step) when the account names a profile.
    """
    probe = _Probe(account, timeout=timeout, oauth=oauth)
    try:
        await probe.run()
    except _StopError:
        pass
    finally:
        await probe.quit()
    return ConnectivityReport(tuple(probe.steps))


class _StopError(Exception):
    """A failed stage is recorded; the later ones cannot run."""


class _Probe:
    def __init__(
        self,
        account: EmailAccount,
        *,
        timeout: float,
        oauth: Callable[[], Awaitable[tuple[Step, AccessToken | None]]] | None,
    ) -> None:
        self.oauth = oauth
        assert account.host, "an SMTP account always has a host"
        self.account = account
        self.host = account.host
        self.where = f"{account.host}:{account.port}"
        self.options = parse_advanced(account.advanced)
        self.read_timeout = self.options.read_timeout or timeout
        self.connect_timeout = self.options.connect_timeout or self.read_timeout
        self.context = client_context(account) if account.security is not Security.NONE else None
        self.secret = account.password.get_secret_value() if account.password else ""
        self.steps: list[Step] = []
        self.smtp: aiosmtplib.SMTP | None = None

    def passed(self, name: str, detail: str) -> None:
        self.steps.append(Step(name, True, self._scrub(detail)))

    def fail(self, name: str, detail: str, *, explanation: str) -> NoReturn:
        self.steps.append(Step(name, False, self._scrub(detail), self._scrub(explanation)))
        raise _StopError

    def _scrub(self, text: str) -> str:
        # Server replies are echoed into the report, and a server could echo the secret.
        return text.replace(self.secret, "••••••") if self.secret else text

    async def run(self) -> None:
        await self.resolve()
        smtp = await self.connect()
        if self.account.security is Security.TLS:
            self.tls(smtp)
        await self.ehlo(smtp)
        if self.account.security is Security.STARTTLS:
            await self.starttls(smtp)
            self.tls(smtp)
            # RFC 3207: what the server offered before TLS no longer counts.
            await self.ehlo(smtp)
        if self.oauth is not None:
            await self.authenticate_oauth(smtp)
        elif self.account.password is not None:
            await self.authenticate(smtp)

    async def resolve(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(self.host, self.account.port, type=socket.SOCK_STREAM),
                self.connect_timeout,
            )
        except socket.gaierror as exc:
            self.fail(
                "resolve",
                f"{self.host}: {exc.strerror}",
                explanation="the host name does not resolve: check it for typos, and that this "
                "machine's DNS can resolve it",
            )
        except TimeoutError:
            self.fail(
                "resolve",
                f"no answer for {self.host} in {self.connect_timeout:g} s",
                explanation="DNS did not answer in time: check this machine's DNS settings",
            )
        addresses = dict.fromkeys(str(info[4][0]) for info in infos)
        self.passed("resolve", f"{self.host} → {', '.join(addresses)}")

    async def connect(self) -> aiosmtplib.SMTP:
        tls = self.account.security is Security.TLS
        self.smtp = smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.account.port,
            use_tls=tls,
            start_tls=False,
            tls_context=self.context if tls else None,
            timeout=self.read_timeout,
            # gethostname, not getfqdn: no DNS lookup just to say EHLO.
            local_hostname=self.options.local_hostname or socket.gethostname(),
        )
        try:
            greeting = await smtp.connect(timeout=self.connect_timeout)
        except _FAILURES as exc:
            handshake = _find(exc, ssl.SSLError)
            if handshake is not None:
                # A handshake only starts once TCP is up: the failure belongs to TLS.
                self.passed("connect", f"{self.where} accepted the TCP connection")
                self.tls_failed(handshake)
            self.fail("connect", _short(exc), explanation=self.explain(exc, stage="connect"))
        peer = smtp.get_transport_info("peername")
        banner = greeting.message.splitlines()[0] if greeting.message else ""
        self.passed("connect", f"connected to {peer[0]}:{peer[1]}: {greeting.code} {banner}")
        return smtp

    def tls(self, smtp: aiosmtplib.SMTP) -> None:
        session: ssl.SSLObject | None = smtp.get_transport_info("ssl_object")
        assert session is not None, "called only after a handshake"
        self.passed("TLS", describe_tls(session))

    def tls_failed(self, exc: ssl.SSLError) -> NoReturn:
        if self.account.security is Security.TLS and exc.reason in _PLAINTEXT_PEER:
            explanation = (
                f"the server did not answer in TLS: port {self.account.port} may expect "
                "STARTTLS: set security to starttls (usually port 587)"
            )
        else:
            # Certificates (truststore, host name) and protocol mismatches.
            explanation = connection_error(exc, stage="TLS", account=self.account).text
        self.fail("TLS", f"handshake failed: {_short(exc)}", explanation=explanation)

    async def ehlo(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.ehlo()
        except _FAILURES as exc:
            self.fail("EHLO", _short(exc), explanation=self.explain(exc, stage="EHLO"))
        offered = ", ".join(
            f"{name.upper()} {params}".strip() for name, params in smtp.esmtp_extensions.items()
        )
        detail = f"offered: {offered}" if offered else "the server offered no extensions"
        if self.account.security is Security.NONE and smtp.supports_extension("starttls"):
            detail += "; the server offers STARTTLS: set security to starttls to encrypt"
        self.passed("EHLO", detail)

    async def starttls(self, smtp: aiosmtplib.SMTP) -> None:
        if not smtp.supports_extension("starttls"):
            never = (
                "the server does not offer STARTTLS: Postroom never continues unencrypted; "
                f"set security to 'tls' if port {self.account.port} uses implicit TLS"
            )
            self.fail("STARTTLS", f"{self.host} does not offer STARTTLS", explanation=never)
        try:
            reply = await smtp.starttls(tls_context=self.context)
        except ssl.SSLError as exc:
            # The server said 220 (the handshake began): STARTTLS itself worked.
            self.passed("STARTTLS", "the server accepted STARTTLS")
            self.tls_failed(exc)
        except _FAILURES as exc:
            self.fail("STARTTLS", _short(exc), explanation=self.explain(exc, stage="STARTTLS"))
        self.passed("STARTTLS", f"{reply.code} {reply.message}")

    async def authenticate(self, smtp: aiosmtplib.SMTP) -> None:
        a = self.account
        assert a.password is not None
        if smtp.get_transport_info("sslcontext") is None and not a.allow_insecure_auth:
            never = "Postroom never sends a password unencrypted: set security to starttls"
            self.fail("AUTH", "not attempted: the connection is not encrypted", explanation=never)
        offered = [m.lower() for m in smtp.server_auth_methods]
        usable = [
            m for m in AUTH_PREFERENCE if m in offered and m not in self.options.disabled_auth
        ]
        if not offered:
            self.fail(
                "AUTH",
                f"{self.host} offers no AUTH mechanism",
                explanation="the account has a password but the server asks for none here: "
                "check the port (submission is usually 587 or 465), or remove the password",
            )
        if not usable:
            self.fail(
                "AUTH",
                f"{self.host} offers AUTH {' '.join(offered).upper()}",
                explanation="none of these mechanisms is enabled for this account: review "
                "its advanced parameters (mail.smtp.auth.*.disable)",
            )
        mechanism = usable[0]
        method: Any = getattr(smtp, f"auth_{mechanism.replace('-', '')}")
        try:
            reply: aiosmtplib.SMTPResponse = await method(a.login, a.password.get_secret_value())
        except _FAILURES as exc:
            explanation = self.explain(exc, stage="AUTH")
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 535:
                enhanced, _ = split_enhanced(exc.message)
                if (535, enhanced or "") not in EXPLANATIONS:
                    explanation += f": check the user ID ({a.login}) and the password"
            self.fail("AUTH", _short(exc), explanation=explanation)
        self.passed(
            "AUTH", f"{mechanism.upper()} accepted for {a.login}: {reply.code} {reply.message}"
        )

    async def authenticate_oauth(self, smtp: aiosmtplib.SMTP) -> None:
        assert self.oauth is not None
        if smtp.get_transport_info("sslcontext") is None and not self.account.allow_insecure_auth:
            never = "Postroom never sends a token unencrypted: set security to starttls"
            self.fail("AUTH", "not attempted: the connection is not encrypted", explanation=never)
        if "xoauth2" not in [m.lower() for m in smtp.server_auth_methods]:
            self.fail(
                "AUTH",
                f"{self.host} does not offer AUTH XOAUTH2",
                explanation="the server does not take OAuth tokens here: check host and port, "
                "or use a password instead of auth_profile",
            )
        step, token = await self.oauth()
        self.steps.append(step)
        if token is None:
            raise _StopError
        self.secret = token.value  # scrubbed from anything the server echoes
        try:
            reply = await smtp.auth_xoauth2(self.account.login, token.value)
        except _FAILURES as exc:
            explanation = self.explain(exc, stage="AUTH")
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 535:
                explanation += (
                    f": the token was refused for {self.account.login}; check that SMTP AUTH is "
                    "enabled for the mailbox, that the application may send as it, and that "
                    "the profile's scope is https://outlook.office365.com/.default"
                )
            self.fail("AUTH", _short(exc), explanation=explanation)
        self.passed(
            "AUTH", f"XOAUTH2 accepted for {self.account.login}: {reply.code} {reply.message}"
        )

    def explain(self, exc: BaseException, *, stage: str) -> str:
        """Words a user can act on for a failure during ``stage``."""
        port = self.account.port
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            enhanced, _ = split_enhanced(exc.message)
            explanation = classify_reply(exc.code, enhanced).explanation
            return explanation or f"the server refused {stage}: see its reply"
        if _find(exc, ConnectionRefusedError):
            return (
                f"nothing accepts connections on {self.where}: check the host and port, that "
                f"the server is running, and that no firewall blocks port {port}"
            )
        if stage == "connect" and _find(exc, aiosmtplib.SMTPReadTimeoutError):
            # An implicit-TLS server waits for our handshake while we wait for its greeting.
            hint = f"port {port} may expect implicit TLS: set security to tls (usually port 465)"
            if self.account.security is Security.TLS:
                hint = "try again later"
            return f"{self.where} sent no greeting in {self.connect_timeout:g} s: {hint}"
        if _find(exc, TimeoutError):
            if stage == "connect":
                return (
                    f"no answer from {self.where} in {self.connect_timeout:g} s: check the host "
                    f"and port, and that a firewall allows outgoing connections to port {port}"
                )
            return (
                f"the server did not answer {stage} in {self.read_timeout:g} s: try again "
                "later, or raise mail.smtp.timeout"
            )
        if _find(exc, aiosmtplib.SMTPServerDisconnected) or _find(exc, ConnectionResetError):
            return (
                f"the server closed the connection during {stage}: it may be limiting "
                "connections or refusing this machine; try again later"
            )
        return connection_error(exc, stage=stage, account=self.account).text

    async def quit(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit(timeout=min(5.0, self.read_timeout))
        except _FAILURES:
            pass  # the verdict is in the steps already; QUIT is a courtesy
        finally:
            smtp.close()


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` or the first of its causes of ``kind``: aiosmtplib wraps socket errors."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, kind):
            return current
        current = current.__cause__
    return None


def describe_tls(session: ssl.SSLObject | ssl.SSLSocket) -> str:
    """The TLS step's detail: protocol, cipher and the server certificate's names and expiry."""
    der = session.getpeercert(binary_form=True)
    assert der is not None, "a verifying context always has the peer's certificate"
    cipher = session.cipher()
    cert = x509.load_der_x509_certificate(der)
    expires = cert.not_valid_after_utc
    days = (expires - datetime.now(UTC)).days
    detail = (
        f"{session.version()}, {cipher[0] if cipher else 'unknown cipher'}; certificate "
        f"{_name(cert.subject)}, issued by {_name(cert.issuer)}, "
        f"valid until {expires:%Y-%m-%d} ({days} days)"
    )
    if days < EXPIRY_WARNING_DAYS:
        detail += f"; WARNING: the certificate expires in {days} days: have it renewed"
    return detail


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={common[0].value!s}" if common else name.rfc4514_string()


def _short(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}".splitlines()[0]
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
