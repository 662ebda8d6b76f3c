"""Delivery reports as mail servers send them, written from their documented formats.

Each builder returns the raw bytes of one report (CRLF line ends). The keyword
arguments point a report at a test's own email: ``to`` is the address the report is
delivered to (the VERP address, or the account's), ``message_id`` the returned
message's Message-ID (without brackets), ``envid`` the ENVID Postroom sent.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
from typing import Protocol

DATE = "Thu, 04 Dec 2025 09:30:12 +0000"
ORIGINAL_SUBJECT = "Your mortgage request"


def _tag(*parts: str | None) -> str:
    """A report's own Message-ID part, different for each email and recipient it is about
    (a relay's reports about different emails are different messages)."""
    return hashlib.sha256("|".join(p or "" for p in parts).encode()).hexdigest()[:12]


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _returned_headers(message_id: str | None, recipient: str, sender: str) -> str:
    mid = f"Message-ID: <{message_id}>\n" if message_id else ""
    return (
        f"Return-Path: <{sender}>\n"
        f"From: Acme Mortgages <mortgages@acme.example>\n"
        f"To: {recipient}\n"
        f"Subject: {ORIGINAL_SUBJECT}\n"
        f"Date: Thu, 04 Dec 2025 09:29:58 +0000\n"
        f"{mid}"
        "MIME-Version: 1.0\n"
        "Content-Type: text/html; charset=utf-8\n"
    )


def postfix_dsn(
    *,
    recipient: str,
    to: str,
    message_id: str | None,
    envid: str | None = None,
    status: str = "5.1.1",
    diagnostic: str | None = None,
    action: str = "failed",
    also_delivered: str | None = None,
) -> bytes:
    """Postfix's RFC 3464 report: multipart/report with text/rfc822-headers."""
    diagnostic = diagnostic or (
        f"smtp; 550 {status} <{recipient}>: Recipient address rejected: "
        "User unknown in virtual mailbox\n    table"
    )
    envid_line = f"Original-Envelope-Id: {envid}\n" if envid else ""
    delivered = (
        f"\nFinal-Recipient: rfc822; {also_delivered}\n"
        f"Original-Recipient: rfc822;{also_delivered}\n"
        "Action: delivered\nStatus: 2.0.0\n"
        "Remote-MTA: dns; mx.other.example\n"
        "Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as 4QX2\n"
        if also_delivered
        else ""
    )
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
Received: by mail.acme.example (Postfix) id 9C1F23E8B; {DATE}
Date: {DATE}
From: MAILER-DAEMON@mail.acme.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="9C1F23E8B.1764840612/mail.acme.example"
Message-Id: <20251204093012.{_tag(to, recipient, envid, status, action)}@mail.acme.example>

This is a MIME-encapsulated message.

--9C1F23E8B.1764840612/mail.acme.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mail.acme.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

                   The mail system

<{recipient}>: host mx.customer.example[198.51.100.7] said: 550
    {status} <{recipient}>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)

--9C1F23E8B.1764840612/mail.acme.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.acme.example
X-Postfix-Queue-ID: 9C1F23E8B
X-Postfix-Sender: rfc822; {to}
{envid_line}Arrival-Date: Thu,  4 Dec 2025 09:29:58 +0000 (UTC)

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: {diagnostic}
{delivered}
--9C1F23E8B.1764840612/mail.acme.example
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

{_returned_headers(message_id, recipient, to)}
--9C1F23E8B.1764840612/mail.acme.example--
"""
    )


def delayed_dsn(*, recipient: str, to: str, message_id: str | None) -> bytes:
    """Postfix's delay warning: Action delayed, 4.4.7."""
    return postfix_dsn(
        recipient=recipient,
        to=to,
        message_id=message_id,
        action="delayed",
        status="4.4.7",
        diagnostic="X-Postfix; delivery temporarily suspended: connect to\n"
        "    mx.customer.example[198.51.100.7]:25: Connection timed out",
    ).replace(b"Undelivered Mail Returned to Sender", b"Delayed Mail (still being retried)")


def exchange_ndr(*, recipient: str, to: str, message_id: str | None) -> bytes:
    """Exchange Online's non-delivery report: 550 5.1.10 RESOLVER.ADR.RecipientNotFound."""
    user, _, domain = recipient.partition("@")
    return _crlf(
        f"""Received: from DB9PR01MB1234.eurprd01.prod.outlook.com; {DATE}
From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.example>
To: <{to}>
Date: {DATE}
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="0bd1a3c2-1b5e-4d1f-8a44-6c3a1b6ce0e1"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <{_tag(to, recipient, message_id)}@DB9PR01MB1234.eurprd01.prod.outlook.com>
In-Reply-To: <{message_id}>
References: <{message_id}>
Subject: Undeliverable: {ORIGINAL_SUBJECT}
Auto-Submitted: auto-replied
MIME-Version: 1.0

--0bd1a3c2-1b5e-4d1f-8a44-6c3a1b6ce0e1
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="5f4c1f5b-0c7e-4c2b-9a5a-6c1b2a3d4e5f"

--5f4c1f5b-0c7e-4c2b-9a5a-6c1b2a3d4e5f
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Your message to {recipient} couldn't be delivered.
{user} wasn't found at {domain}.
mortgages       Office 365      {user}
Action Required                                 Recipient
Unknown To address

How to Fix It
The address may be misspelled or may not exist. Try one or more of the following:

Diagnostic information for administrators:
Generating server: DB9PR01MB1234.eurprd01.prod.outlook.com
{recipient}
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not =
found by SMTP address lookup'

--5f4c1f5b-0c7e-4c2b-9a5a-6c1b2a3d4e5f
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to <a href=3D"mailto:{recipient}">{recipient}</a>
couldn't be delivered.</p></body></html>

--5f4c1f5b-0c7e-4c2b-9a5a-6c1b2a3d4e5f--

--0bd1a3c2-1b5e-4d1f-8a44-6c3a1b6ce0e1
Content-Type: message/delivery-status

Reporting-MTA: dns;DB9PR01MB1234.eurprd01.prod.outlook.com
Received-From-MTA: dns;DB9PR01MB5678.eurprd01.prod.outlook.com
Arrival-Date: {DATE}

Original-Recipient: rfc822;{recipient}
Final-Recipient: rfc822;{recipient}
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not
 found by SMTP address lookup
X-Display-Name: {recipient}

--0bd1a3c2-1b5e-4d1f-8a44-6c3a1b6ce0e1
Content-Type: message/rfc822

{_returned_headers(message_id, recipient, to)}
<p>Dear customer, we have your request.</p>

--0bd1a3c2-1b5e-4d1f-8a44-6c3a1b6ce0e1--
"""
    )


def gmail_dsn(*, recipient: str, to: str, message_id: str | None) -> bytes:
    """Gmail's report from mailer-daemon@googlemail.com: the account does not exist."""
    return _crlf(
        f"""Delivered-To: {to}
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: {to}
Auto-Submitted: auto-replied
Subject: Delivery Status Notification (Failure)
References: <{message_id}>
In-Reply-To: <{message_id}>
X-Failed-Recipients: {recipient}
Message-ID: <6760a1d2.{_tag(to, recipient, message_id)}@mx.google.com>
Date: {DATE}
MIME-Version: 1.0
Content-Type: multipart/report; boundary="000000000000d0c9a20629b1a2f3"; report-type=delivery-status

--000000000000d0c9a20629b1a2f3
Content-Type: multipart/related; boundary="000000000000d0d1a40629b1a2f8"

--000000000000d0d1a40629b1a2f8
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to {recipient} because the address couldn't be found, or is
unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist. Please try
double-checking the recipient's email address for typos or unnecessary spaces.

--000000000000d0d1a40629b1a2f8--

--000000000000d0c9a20629b1a2f3
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com
Received-From-MTA: dns; mortgages@acme.example
Arrival-Date: {DATE}
X-Original-Message-ID: <{message_id}>

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Remote-MTA: dns; gmail-smtp-in.l.google.com. (142.250.102.27, the server for the
 domain gmail.com.)
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does
 not exist. Please try 550-5.1.1 double-checking the recipient's email address for
 typos or 550-5.1.1 unnecessary spaces. For more information, go to 550 5.1.1
 https://support.google.com/mail/?p=NoSuchUser 5b1f17b1804b1-42f8d3c8a9bsi123456f8.2 - gsmtp
Last-Attempt-Date: {DATE}

--000000000000d0c9a20629b1a2f3
Content-Type: message/rfc822

{_returned_headers(message_id, recipient, to)}
<p>Dear customer, we have your request.</p>

--000000000000d0c9a20629b1a2f3--
"""
    )


def qmail(*, recipient: str, to: str, message_id: str | None) -> bytes:
    """qmail-send's QSBMF bounce: plain text, the returned message pasted below."""
    mid = f"Message-ID: <{message_id}>\n" if message_id else ""
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
Date: {DATE}
From: MAILER-DAEMON@mx.customer.example
To: {to}
Subject: failure notice

Hi. This is the qmail-send program at mx.customer.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <{to}>
Received: (qmail 12345 invoked from network); {DATE}
From: Acme Mortgages <mortgages@acme.example>
To: {recipient}
Subject: {ORIGINAL_SUBJECT}
{mid}
Dear customer, we have your request.
"""
    )


def postfix_old(*, recipient: str, to: str, message_id: str | None) -> bytes:
    """Postfix before RFC 3464 support: multipart/mixed, the notice as text, no status part."""
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
Date: {DATE}
From: MAILER-DAEMON@mail.acme.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="A1B2C3D4.1764840612/mail.acme.example"
Message-Id: <20251204093012.{_tag(to, recipient, message_id)}@mail.acme.example>

--A1B2C3D4.1764840612/mail.acme.example
Content-Description: Notification
Content-Type: text/plain

This is the Postfix program at host mail.acme.example.

I'm sorry to have to inform you that the message returned
below could not be delivered to one or more destinations.

For further assistance, please send mail to <postmaster>

                        The Postfix program

<{recipient}>: host mx.customer.example[198.51.100.7] said: 550 5.1.1
    <{recipient}>: Recipient address rejected: User unknown in local recipient
    table (in reply to RCPT TO command)

--A1B2C3D4.1764840612/mail.acme.example
Content-Description: Undelivered Message
Content-Type: message/rfc822

{_returned_headers(message_id, recipient, to)}
<p>Dear customer, we have your request.</p>

--A1B2C3D4.1764840612/mail.acme.example--
"""
    )


def nameless(*, to: str, text: str = "550 5.1.1 mailbox unavailable") -> bytes:
    """A bounce that names no recipient and returns nothing: only its envelope says whose."""
    return _crlf(
        f"""Return-Path: <>
Delivered-To: {to}
Date: {DATE}
From: MAILER-DAEMON@relay.example
To: {to}
Subject: Returned mail: see transcript for details

The message could not be delivered.
Reason: {text}
"""
    )


def arf(*, recipient: str, to: str, message_id: str | None, rcpt_header: bool = True) -> bytes:
    """An RFC 5965 abuse report (a feedback loop), the original message attached."""
    rcpt = f"Original-Rcpt-To: {recipient}\n" if rcpt_header else ""
    return _crlf(
        f"""Return-Path: <fbl@mail.example>
Delivered-To: {to}
From: <staff@fbl.mail.example>
Date: {DATE}
Subject: FW: {ORIGINAL_SUBJECT}
To: <{to}>
MIME-Version: 1.0
Message-ID: <fbl-{_tag(to, recipient, message_id)}@fbl.mail.example>
Content-Type: multipart/report; report-type=feedback-report;
\tboundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on {DATE}.
For more information about this format please see
http://www.mipassoc.org/arf/.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <{to}>
{rcpt}Arrival-Date: {DATE}
Reported-Domain: acme.example
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

{_returned_headers(message_id, recipient, to)}
<p>Dear customer, we have your request.</p>

--part1_13d.2e68ed54_boundary--
"""
    )


def encoded_dsn(*, recipient: str, to: str, encoding: str) -> bytes:
    """An RFC 3464 report whose delivery-status part is sent base64 or quoted-printable
    (some gateways encode every part they write)."""
    fields = _crlf(
        "Reporting-MTA: dns; gw.customer.example\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: no such user\n"
    )
    if encoding == "base64":
        body = base64.encodebytes(fields).replace(b"\n", b"\r\n")
    else:
        # Long lines broken with soft line breaks, as quoted-printable writers do.
        body = quopri.encodestring(fields.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
        body = body.replace(b"Final-Recipient", b"Final-Rec=\r\nipient")
    head = _crlf(
        f"""From: MAILER-DAEMON@gw.customer.example
To: {to}
Subject: Undeliverable: {ORIGINAL_SUBJECT}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="gw"

--gw
Content-Type: text/plain

Your message could not be delivered.

--gw
Content-Type: message/delivery-status
Content-Transfer-Encoding: {encoding}

"""
    )
    return head + body + b"\r\n--gw--\r\n"


class Builder(Protocol):
    """A report builder that points at one email: ``postfix_dsn``, ``qmail`` ..."""

    def __call__(self, *, recipient: str, to: str, message_id: str | None) -> bytes: ...
