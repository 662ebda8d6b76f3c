"""Connectivity test of an account's inbound side: each stage of an IMAP session, explained.

Stages run in the order the listener takes them (connect, TLS, login, folder, IDLE) and
stop at the first failure. Step names start with ``inbound`` so they read apart from the
SMTP stages in the same report. Graph inbound is tested by ``inbound.graph_check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Collection
from typing import Any, NoReturn

from imapclient import IMAPClient  # type: ignore[import-untyped]

from postroom.accounts.connectivity import Step, describe_tls
from postroom.accounts.graph_check import token_step
from postroom.accounts.models import EmailAccount
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import TokenCache
from postroom.inbound.imap_errors import (
    IMAPClientError,
    LoginError,
    inbound_context,
    short,
    tls_hint,
    where,
)
from postroom.inbound.settings import AfterIngest, InboundProtocol, InboundSecurity, InboundSettings

_LISTED_FOLDERS = 12  # folders named in the explanation when the configured one is missing


async def check_inbound(
    account: EmailAccount,
    profile: AuthProfile | None,
    *,
    tokens: TokenCache,
    allowed_hosts: Collection[str],
    timeout: float,
) -> list[Step]:
    """The inbound stages of ``postroom accounts test``; none when the account reads no mail.

    ``profile`` is the account's inbound profile (XOAUTH2 or Graph), None when it has none
    or when the one it names does not exist.
    """
    inbound = account.inbound
    if inbound is None:
        return []
    name = account.inbound_profile
    if name and profile is None:
        return [
            Step(
                "inbound token",
                False,
                f"auth profile {name} does not exist",
                "create the profile, or correct the inbound auth_profile",
            )
        ]
    if inbound.protocol is InboundProtocol.GRAPH:
        assert profile is not None, "Graph inbound always has a profile"
        # Imported here: the Graph side is optional for an IMAP-only installation's test.
        from postroom.inbound.graph_check import graph_inbound_steps  # noqa: PLC0415

        found = await graph_inbound_steps(
            account, profile, tokens=tokens, allowed_hosts=allowed_hosts, timeout=timeout
        )
        return [_inbound(step) for step in found]
    token: str | None = None
    steps: list[Step] = []
    if profile is not None:
        step, access = await token_step(profile, tokens)
        steps.append(_inbound(step))
        if access is None:
            return steps
        token = access.value
    probe = _Probe(account, inbound, timeout=timeout, token=token)
    await asyncio.to_thread(probe.run)
    return steps + probe.steps


class _StopError(Exception):
    """A failed stage is recorded; the later ones cannot run."""


class _Probe:
    """The IMAP session of the test, stage by stage (blocking: run in a thread)."""

    def __init__(
        self, account: EmailAccount, inbound: InboundSettings, *, timeout: float, token: str | None
    ) -> None:
        assert inbound.host is not None, "IMAP settings always have a host"
        self.inbound = inbound
        self.host = inbound.host
        self.where = where(inbound)
        self.login = account.inbound_login
        self.timeout = timeout
        self.token = token
        password = inbound.password.get_secret_value() if inbound.password else ""
        self.secrets = tuple(s for s in (password, token) if s)
        self.steps: list[Step] = []
        self.client: Any = None

    def passed(self, name: str, detail: str, note: str = "") -> None:
        self.steps.append(Step(f"inbound {name}", True, self._scrub(detail), note))

    def fail(self, name: str, detail: str, *, explanation: str) -> NoReturn:
        step = Step(f"inbound {name}", False, self._scrub(detail), self._scrub(explanation))
        self.steps.append(step)
        raise _StopError

    def _scrub(self, text: str) -> str:
        # Server replies are echoed into the report, and a server could echo a secret.
        for secret in self.secrets:
            text = text.replace(secret, "••••••")
        return text

    def run(self) -> None:
        try:
            self.connect()
            self.protect()
            self.authenticate()
            self.folders()
            self.idle()
        except _StopError:
            pass
        finally:
            self.logout()

    def connect(self) -> None:
        try:
            with socket.create_connection((self.host, self.inbound.port), self.timeout) as sock:
                peer = sock.getpeername()
        except socket.gaierror as exc:
            self.fail(
                "connect",
                f"{self.host}: {exc.strerror}",
                explanation="the inbound host name does not resolve: check it for typos, and "
                "that this machine's DNS can resolve it",
            )
        except ConnectionRefusedError:
            self.fail(
                "connect",
                f"{self.where} refused the connection",
                explanation=f"nothing accepts connections on {self.where}: check the inbound "
                f"host and port, that the server is running, and that no firewall blocks "
                f"port {self.inbound.port}",
            )
        except OSError as exc:
            self.fail(
                "connect",
                f"{self.where}: {short(exc)}",
                explanation=f"no answer from {self.where} in {self.timeout:g} s: check the "
                "inbound host and port, and that a firewall allows connections to it",
            )
        self.passed("connect", f"{self.where} accepted the TCP connection ({peer[0]})")

    def protect(self) -> None:
        security = self.inbound.security
        context = inbound_context(self.inbound) if security is not InboundSecurity.NONE else None
        try:
            self.client = IMAPClient(
                self.host,
                port=self.inbound.port,
                ssl=security is InboundSecurity.TLS,
                ssl_context=context,
                timeout=self.timeout,
            )
        except ssl.SSLError as exc:
            self.tls_failed(exc)
        except (OSError, IMAPClientError) as exc:
            hint = "try again later"
            if security is not InboundSecurity.TLS and isinstance(exc, TimeoutError):
                hint = "the port may expect implicit TLS: set inbound security to tls (port 993)"
            self.fail("greeting", short(exc), explanation=f"no IMAP greeting: {hint}")
        if security is InboundSecurity.NONE:
            note = ""
            if self.client.has_capability("STARTTLS"):
                note = "the server offers STARTTLS: set inbound security to starttls to encrypt"
            self.passed("greeting", "unencrypted (allow_insecure_auth)", note)
            return
        if security is InboundSecurity.STARTTLS:
            if not self.client.has_capability("STARTTLS"):
                self.fail(
                    "STARTTLS",
                    f"{self.where} does not offer STARTTLS",
                    explanation="Postroom never logs in unencrypted: set inbound security to tls "
                    "if the port uses implicit TLS (usually 993)",
                )
            try:
                self.client.starttls(context)
            except ssl.SSLError as exc:
                self.passed("STARTTLS", "the server accepted STARTTLS")
                self.tls_failed(exc)
            except (OSError, IMAPClientError) as exc:
                self.fail("STARTTLS", short(exc), explanation="the server refused STARTTLS")
            self.passed("STARTTLS", "the server accepted STARTTLS")
        self.tls()

    def tls(self) -> None:
        session: ssl.SSLSocket = self.client.socket()
        self.passed("TLS", describe_tls(session))

    def tls_failed(self, exc: ssl.SSLError) -> NoReturn:
        hint = tls_hint(exc, self.inbound) or "the TLS handshake failed: try again later"
        self.fail("TLS", f"handshake failed: {short(exc)}", explanation=hint)

    def authenticate(self) -> None:
        client = self.client
        mechanism = "XOAUTH2" if self.token is not None else "LOGIN"
        try:
            if self.token is not None:
                reply = client.oauth2_login(self.login, self.token)
            else:
                assert self.inbound.password is not None, "settings require a password"
                reply = client.login(self.login, self.inbound.password.get_secret_value())
        except LoginError as exc:
            explanation = (
                f"the server refused the user ID ({self.login}) and password: check both "
                "(inbound user_id and password)"
            )
            if self.token is not None:
                explanation = (
                    f"the token was refused for {self.login}: check that IMAP is enabled for "
                    "the mailbox, that the application may read it, and that the profile's "
                    "scope is https://outlook.office365.com/.default"
                )
            self.fail("login", short(exc), explanation=explanation)
        except (OSError, IMAPClientError) as exc:
            self.fail("login", short(exc), explanation="the server did not complete the login")
        self.passed("login", f"{mechanism} accepted for {self.login}: {_text(reply)}")

    def folders(self) -> None:
        folder = self.inbound.folder
        try:
            info = self.client.select_folder(folder, readonly=True)  # EXAMINE: changes nothing
        except IMAPClientError as exc:
            if self.client.folder_exists(folder):
                self.fail("folder", short(exc), explanation="the server refused the folder")
            self.missing("folder", folder)
        count = int(info.get(b"EXISTS", 0))
        self.passed(
            "folder",
            f"{folder}: {count} message{'' if count == 1 else 's'} "
            f"(UIDVALIDITY {int(info[b'UIDVALIDITY'])})",
        )
        target = self.inbound.move_to
        if self.inbound.after is AfterIngest.MOVE and target:
            if not self.client.folder_exists(target):
                self.missing("move_to", target)
            self.passed("move_to", f"{target} exists: read messages are moved there")

    def missing(self, what: str, folder: str) -> NoReturn:
        names = [_text(name) for _, _, name in self.client.list_folders()][:_LISTED_FOLDERS]
        self.fail(
            what,
            f"{folder!r} does not exist",
            explanation=f"create it, or correct inbound {what}; the mailbox has: "
            + (", ".join(names) or "no folders"),
        )

    def idle(self) -> None:
        if self.client.has_capability("IDLE"):
            self.passed("IDLE", "offered: new mail is read as it arrives")
            return
        self.passed(
            "IDLE",
            "not offered",
            f"the folder is polled every {self.inbound.poll_seconds:g} s (inbound "
            "poll_seconds): replies arrive up to that much later",
        )

    def logout(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # the verdict is in the steps already; LOGOUT is a courtesy
            with contextlib.suppress(Exception):
                client.shutdown()


def _inbound(step: Step) -> Step:
    """The step named apart from the SMTP stages of the same report."""
    if step.name.startswith("inbound"):
        return step
    return Step(f"inbound {step.name}", step.ok, step.detail, step.explanation)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
