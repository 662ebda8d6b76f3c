"""SMTP transport on aiosmtplib: none, STARTTLS or implicit TLS; never a downgrade.

aiosmtplib's exceptions are translated at this edge, once, into Postroom's own
(`smtp_errors`).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Collection

import aiosmtplib

from postroom.accounts.advanced import parse_advanced
from postroom.accounts.models import EmailAccount
from postroom.accounts.presets import Security
from postroom.auth.endpoints import check_token_host
from postroom.auth.tokens import AccessToken
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    DeliveryError,
    OutcomeUnknownError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from postroom.outbox.classify import Verdict
from postroom.outbox.models import DeliveryReport, Refusal
from postroom.transports.base import DsnRequest, Envelope
from postroom.transports.dsn import mail_parameters, rcpt_parameters
from postroom.transports.pipeline import (
    PipelineError,
    Reply,
    message_reply,
    pipelinable,
    pipelined_transaction,
)
from postroom.transports.smtp_errors import (
    ACCOUNT_LEVEL_CODES,
    connection_error,
    refusal,
    reply_error,
)
from postroom.transports.tls import client_context

AUTH_PREFERENCE = ("plain", "login", "cram-md5")


TokenSource = Callable[[AccessToken | None], Awaitable[AccessToken]]
"""Gives an access token; given the token a server refused, a fresh one."""


class SmtpTransport:
    """One SMTP connection for one account, opened on first use and kept open."""

    def __init__(
        self,
        account: EmailAccount,
        *,
        timeout: float = 30.0,
        tokens: TokenSource | None = None,
        token_hosts: Collection[str] = (),
    ) -> None:
        self.account = account
        self._tokens = tokens
        self._token_hosts = token_hosts
        self._options = parse_advanced(account.advanced)
        self._timeout = self._options.read_timeout or timeout
        self._smtp: aiosmtplib.SMTP | None = None

    async def open(self) -> aiosmtplib.SMTP:
        """Connect, secure and authenticate; raises a :class:`DeliveryError`."""
        a = self.account
        tls = a.security is Security.TLS
        context = client_context(a) if a.security is not Security.NONE else None
        smtp = aiosmtplib.SMTP(
            hostname=a.host,
            port=a.port,
            use_tls=tls,
            start_tls=False,
            tls_context=context if tls else None,
            timeout=self._timeout,
            # gethostname, not getfqdn: no DNS lookup just to say EHLO.
            local_hostname=self._options.local_hostname or socket.gethostname(),
        )
        stage = "connect"
        try:
            await smtp.connect(timeout=self._options.connect_timeout or self._timeout)
            stage = "EHLO"
            await smtp.ehlo()
            if a.security is Security.STARTTLS:
                stage = "STARTTLS"
                if not smtp.supports_extension("starttls"):
                    raise TransientDeliveryError(
                        f"{a.host} does not offer STARTTLS; Postroom will not continue "
                        "unencrypted. Set security to 'tls' if the port uses implicit TLS",
                        stage=stage,
                    )
                await smtp.starttls(tls_context=context)
                await smtp.ehlo()
            if self._tokens is not None:
                stage = "AUTH"
                await self._authenticate_oauth(smtp)
            elif a.password is not None:
                stage = "AUTH"
                await self._authenticate(smtp)
        except DeliveryError:
            smtp.close()
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            smtp.close()
            raise connection_error(exc, stage=stage, account=a) from None
        return smtp

    async def _authenticate(self, smtp: aiosmtplib.SMTP) -> None:
        a = self.account
        assert a.password is not None
        encrypted = smtp.get_transport_info("sslcontext") is not None
        if not encrypted and not a.allow_insecure_auth:
            raise PermanentDeliveryError(
                "refusing to send credentials over an unencrypted connection", stage="AUTH"
            )
        offered = [m.lower() for m in smtp.server_auth_methods]
        usable = [
            m for m in AUTH_PREFERENCE if m in offered and m not in self._options.disabled_auth
        ]
        if not offered:
            raise TransientDeliveryError(
                f"{a.host} does not offer AUTH"
                + ("" if encrypted else " on an unencrypted connection (try STARTTLS)"),
                stage="AUTH",
            )
        if not usable:
            raise TransientDeliveryError(
                f"{a.host} offers AUTH {' '.join(offered).upper()}, but none of them is "
                "enabled for this account (see its advanced parameters)",
                stage="AUTH",
            )
        method = getattr(smtp, f"auth_{usable[0].replace('-', '')}")
        await method(a.login, a.password.get_secret_value())

    async def _authenticate_oauth(self, smtp: aiosmtplib.SMTP) -> None:
        """XOAUTH2 with the profile's token; a refused token is refreshed once."""
        a = self.account
        assert self._tokens is not None
        assert a.host is not None
        encrypted = smtp.get_transport_info("sslcontext") is not None
        if not encrypted and not a.allow_insecure_auth:
            raise PermanentDeliveryError(
                "refusing to send an access token over an unencrypted connection", stage="AUTH"
            )
        try:
            check_token_host(
                a.host, encrypted=encrypted, allowed=self._token_hosts, what="SMTP host"
            )
        except ConfigurationError as exc:
            # The account's settings: it waits, held, until they are fixed.
            raise CredentialsRejectedError(str(exc), stage="AUTH") from None
        if "xoauth2" not in [m.lower() for m in smtp.server_auth_methods]:
            raise TransientDeliveryError(
                f"{a.host} does not offer AUTH XOAUTH2 (offered: "
                f"{' '.join(smtp.server_auth_methods).upper() or 'none'})",
                stage="AUTH",
            )
        token = await self._tokens(None)
        try:
            await smtp.auth_xoauth2(a.login, token.value)
            return
        except aiosmtplib.SMTPAuthenticationError:
            pass  # the token may have expired or been revoked: one fresh one
        token = await self._tokens(token)
        try:
            await smtp.auth_xoauth2(a.login, token.value)
        except aiosmtplib.SMTPAuthenticationError as exc:
            refused = reply_error(exc.code, exc.message, stage="AUTH")
            raise CredentialsRejectedError(
                f"the server refused a fresh access token for {a.login}: {refused.text} "
                "(check that SMTP AUTH is enabled for the mailbox, that the application "
                "may send as it, and that the profile's scope is "
                "https://outlook.office365.com/.default)",
                code=exc.code,
                enhanced=refused.enhanced,
                stage="AUTH",
            ) from None

    async def send(self, envelope: Envelope) -> DeliveryReport:
        reused = self._smtp is not None and self._smtp.is_connected
        if not reused:
            await self._reset()
            self._smtp = await self.open()
        try:
            return await self._attempt(envelope)
        except _StaleConnectionError:
            # A kept-alive connection the server closed meanwhile: nothing was sent yet.
            await self._reset()
            if reused:
                self._smtp = await self.open()
                with contextlib.suppress(_StaleConnectionError):
                    return await self._attempt(envelope)
                await self._reset()
            raise TransientDeliveryError("the server closed the connection", stage="MAIL") from None

    async def _attempt(self, envelope: Envelope) -> DeliveryReport:
        smtp = self._smtp
        assert smtp is not None
        try:
            return await self._transaction(smtp, envelope)
        except (_StaleConnectionError, DeliveryError):
            raise
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self._reset()
            raise connection_error(exc, stage="DATA", account=self.account) from None

    async def _transaction(self, smtp: aiosmtplib.SMTP, envelope: Envelope) -> DeliveryReport:
        recipients = list(envelope.recipients)
        # DSN parameters only where the server offers DSN: elsewhere they would be refused.
        dsn = envelope.dsn if smtp.supports_extension("dsn") else None
        if (
            self._options.pipelining
            and smtp.supports_extension("pipelining")
            and pipelinable(envelope.mail_from, recipients)
        ):
            return await self._pipelined(smtp, envelope, recipients, dsn)
        options = mail_parameters(dsn)
        needs_utf8 = not envelope.mail_from.isascii() or not all(
            r.isascii() for r in envelope.recipients
        )
        if needs_utf8:
            if not smtp.supports_extension("smtputf8"):
                raise PermanentDeliveryError(
                    "an address is internationalised but the server lacks SMTPUTF8",
                    stage="MAIL",
                )
            options.append("SMTPUTF8")
        encoding = "utf-8" if needs_utf8 else "ascii"
        try:
            await smtp.mail(envelope.mail_from, options=options, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as exc:
            await self._rset(smtp)
            raise reply_error(
                exc.code,
                exc.message,
                stage="MAIL FROM",
                transient_anyway=exc.code in ACCOUNT_LEVEL_CODES,
            ) from None
        except aiosmtplib.SMTPServerDisconnected:
            raise _StaleConnectionError from None
        except ValueError as exc:  # aiosmtplib refuses to quote an unsafe address
            await self._rset(smtp)
            raise PermanentDeliveryError(
                f"sender address refused: {exc}", stage="MAIL FROM"
            ) from None

        accepted: list[str] = []
        refused: dict[str, Refusal] = {}
        for rcpt in envelope.recipients:
            try:
                await smtp.rcpt(rcpt, options=rcpt_parameters(dsn, rcpt), encoding=encoding)
            except aiosmtplib.SMTPRecipientRefused as exc:
                refused[rcpt] = refusal(exc.code, exc.message)
            except ValueError as exc:
                # An address aiosmtplib will not put on the wire; a permanent refusal of
                # this recipient, not a crash of the agent.
                refused[rcpt] = Refusal(
                    code=553, text=f"unsafe address: {exc}", verdict=Verdict.PERMANENT
                )
            else:
                accepted.append(rcpt)
        if not accepted:
            await self._rset(smtp)
            return DeliveryReport(refused=refused)
        # DATA and the message apart (not aiosmtplib's data()): a failure after the
        # message went is an unknown outcome, not a plain retry.
        start = await smtp.execute_command(b"DATA", timeout=self._timeout)
        if start.code != 354:
            if start.code // 100 not in (4, 5):
                await self._reset()  # no answer DATA can have: the replies are out of step
                raise TransientDeliveryError(
                    f"the server answered DATA with {start.code} {start.message!r}, out of step",
                    stage="DATA",
                )
            await self._rset(smtp)  # the transaction is still open on the server
            refused.update(dict.fromkeys(accepted, refusal(start.code, start.message)))
            return DeliveryReport(refused=refused)
        final = await self._message_reply(smtp, envelope.message)
        if final.code not in (250, 251):
            refused.update(dict.fromkeys(accepted, refusal(final.code, final.message)))
            return DeliveryReport(refused=refused)
        return DeliveryReport(accepted=tuple(accepted), refused=refused, reply=final.message)

    async def _message_reply(self, smtp: aiosmtplib.SMTP, message: bytes) -> Reply:
        try:
            return await message_reply(smtp, message=message, timeout=self._timeout)
        except PipelineError as exc:
            await self._reset()
            raise _pipeline_failure(exc) from None

    async def _pipelined(
        self,
        smtp: aiosmtplib.SMTP,
        envelope: Envelope,
        recipients: list[str],
        dsn: DsnRequest | None,
    ) -> DeliveryReport:
        try:
            replies = await pipelined_transaction(
                smtp,
                mail_from=envelope.mail_from,
                recipients=recipients,
                message=envelope.message,
                timeout=self._timeout,
                mail_options=mail_parameters(dsn),
                rcpt_options=[rcpt_parameters(dsn, r) for r in recipients],
            )
        except PipelineError as exc:
            await self._reset()  # out of step or gone: never used again
            raise _pipeline_failure(exc) from None
        mail = replies.mail
        if mail.code != 250:
            await self._abandon(smtp, usable=replies.usable)
            raise reply_error(
                mail.code,
                mail.message,
                stage="MAIL FROM",
                transient_anyway=mail.code in ACCOUNT_LEVEL_CODES,
            )
        accepted: list[str] = []
        refused: dict[str, Refusal] = {}
        for rcpt, reply in zip(recipients, replies.rcpt, strict=True):
            if reply.code in (250, 251):
                accepted.append(rcpt)
            else:
                refused[rcpt] = refusal(reply.code, reply.message)
        if not accepted:
            await self._abandon(smtp, usable=replies.usable)
            return DeliveryReport(refused=refused)
        final = replies.data
        if final is None or final.code not in (250, 251):
            if final is None:
                await self._abandon(smtp, usable=replies.usable)
            reply = final or replies.data_start
            refused.update(dict.fromkeys(accepted, refusal(reply.code, reply.message)))
            return DeliveryReport(refused=refused)
        return DeliveryReport(accepted=tuple(accepted), refused=refused, reply=final.message)

    async def _abandon(self, smtp: aiosmtplib.SMTP, *, usable: bool) -> None:
        """End a transaction that sends nothing: RSET, or drop a connection left in DATA."""
        if usable:
            await self._rset(smtp)
        else:
            await self._reset()

    async def _rset(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self._reset()

    async def _reset(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit(timeout=5)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            smtp.close()


class _StaleConnectionError(Exception):
    pass


def _pipeline_failure(exc: PipelineError) -> Exception:
    """What a broken transaction means for the email: unknown once its message went."""
    if exc.after_data:
        return OutcomeUnknownError(f"{exc}: the server may have taken the message", stage="DATA")
    if exc.closed_early:
        return _StaleConnectionError()
    return TransientDeliveryError(str(exc), stage=exc.stage)
