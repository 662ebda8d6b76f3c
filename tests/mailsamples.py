"""Received mail as it arrives: realistic replies, automatic mail, bounces and broken mail.

Each builder returns the raw bytes of one message (CRLF line ends, as a server gives
them). The keyword arguments let a test thread a sample onto its own case: pass the
Message-ID an outbox row was sent with as ``in_reply_to``, the case's address as ``to``.
"""

from __future__ import annotations

import base64

SENDER = "Jane Customer <jane@customer.example>"
ACCOUNT = "Acme Mortgages <mortgages@acme.example>"
DATE = "Mon, 01 Dec 2025 10:15:00 +0100"


def _headers(**fields: str | None) -> bytes:
    lines = []
    for name, value in fields.items():
        if value is None:
            continue
        lines.append(f"{name.replace('_', '-')}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _base(
    *,
    message_id: str | None,
    subject: str,
    sender: str,
    to: str,
    in_reply_to: str | None = None,
    references: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str | None]:
    fields: dict[str, str | None] = {
        "From": sender,
        "To": to,
        "Subject": subject,
        "Date": DATE,
        "Message_ID": f"<{message_id}>" if message_id else None,
        "In_Reply_To": f"<{in_reply_to}>" if in_reply_to else None,
        "References": references
        if references is not None
        else (f"<{in_reply_to}>" if in_reply_to else None),
        "MIME_Version": "1.0",
    }
    fields.update(extra or {})
    return fields


def plain(
    text: str = "Hello,\n\nplease find my answer below.\n\nJane\n",
    *,
    message_id: str | None = "plain-1@customer.example",
    subject: str = "A question",
    sender: str = SENDER,
    to: str = ACCOUNT,
    in_reply_to: str | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """A plain-text mail from a person."""
    fields = _base(
        message_id=message_id,
        subject=subject,
        sender=sender,
        to=to,
        in_reply_to=in_reply_to,
        extra=extra,
    )
    fields["Content_Type"] = "text/plain; charset=utf-8"
    fields["Content_Transfer_Encoding"] = "8bit"
    return _headers(**fields) + b"\r\n" + _crlf(text)


def reply(
    own: str = "Yes, the valuation date works for me.\n\nJane",
    *,
    message_id: str = "reply-1@customer.example",
    in_reply_to: str = "case-M-12.1@acme.example",
    subject: str = "Re: Your mortgage request [M-12]",
    sender: str = SENDER,
    to: str = ACCOUNT,
) -> bytes:
    """A reply (In-Reply-To, References) quoting the history in its text and HTML parts."""
    quoted_text = (
        f"{own}\n\n"
        "On Mon, 1 Dec 2025 at 09:00, Acme Mortgages <mortgages@acme.example> wrote:\n"
        "> Dear Jane,\n>\n> could you confirm the valuation date?\n>\n> Acme Mortgages\n"
    )
    html_own = own.replace("\n", "<br>")
    quoted_html = (
        f'<html><body><div dir="ltr">{html_own}</div><br>'
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, 1 Dec 2025 at 09:00, Acme '
        "Mortgages &lt;mortgages@acme.example&gt; wrote:</div>"
        "<blockquote>Dear Jane,<br><br>could you confirm the valuation date?</blockquote>"
        "</div></body></html>\n"
    )
    fields = _base(
        message_id=message_id,
        subject=subject,
        sender=sender,
        to=to,
        in_reply_to=in_reply_to,
        references=f"<thread-0@acme.example> <{in_reply_to}>",
    )
    fields["Content_Type"] = 'multipart/alternative; boundary="alt-1"'
    return (
        _headers(**fields)
        + b"\r\n--alt-1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        + b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        + _crlf(quoted_text)
        + b"\r\n--alt-1\r\nContent-Type: text/html; charset=utf-8\r\n"
        + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        + _crlf(quoted_html.replace("=", "=3D"))
        + b"\r\n--alt-1--\r\n"
    )


def outlook_reply(
    own: str = "Thank you, I will send the documents tomorrow.",
    *,
    message_id: str = "AM0PR01MB1234.outlook@customer.example",
    in_reply_to: str | None = "case-M-12.1@acme.example",
    subject: str = "RE: Your mortgage request [M-12]",
    sender: str = "Jane Customer <jane@customer.example>",
    to: str = ACCOUNT,
) -> bytes:
    """An Outlook reply: 'From: ... Sent: ...' quote header, X-Auto-Response-Suppress set."""
    text = (
        f"{own}\n\n"
        "From: Acme Mortgages <mortgages@acme.example>\n"
        "Sent: Monday, December 1, 2025 9:00 AM\n"
        "To: Jane Customer <jane@customer.example>\n"
        "Subject: Your mortgage request [M-12]\n\n"
        "Dear Jane,\n\nplease send us your documents.\n"
    )
    extra = {
        "X_Auto_Response_Suppress": "All",
        "X_MS_Has_Attach": "",
        "Thread_Index": "AQHZ1234567890abcdef==",
        "Content_Language": "en-US",
    }
    return plain(
        text,
        message_id=message_id,
        subject=subject,
        sender=sender,
        to=to,
        in_reply_to=in_reply_to,
        extra=extra,
    )


def outlook_html_reply(
    own: str = "Please call me on Tuesday.",
    *,
    message_id: str = "AM0PR01MB5678.outlook@customer.example",
    in_reply_to: str = "case-M-12.1@acme.example",
) -> bytes:
    """An Outlook reply in HTML only, its quote header in bold labels under a rule."""
    html = (
        '<html><head><style>p.MsoNormal{margin:0}</style></head><body lang="EN-US">'
        f'<div class="WordSection1"><p class="MsoNormal">{own}</p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
        '<p class="MsoNormal"><b>From:</b> Acme Mortgages &lt;mortgages@acme.example&gt;<br>'
        "<b>Sent:</b> Monday, December 1, 2025 9:00 AM<br>"
        "<b>To:</b> Jane Customer &lt;jane@customer.example&gt;<br>"
        "<b>Subject:</b> Your mortgage request [M-12]</p></div>"
        '<p class="MsoNormal">Dear Jane, please call us.</p></div></body></html>'
    )
    fields = _base(
        message_id=message_id,
        subject="RE: Your mortgage request [M-12]",
        sender=SENDER,
        to=ACCOUNT,
        in_reply_to=in_reply_to,
        extra={"X_Auto_Response_Suppress": "All", "Thread_Topic": "Your mortgage request"},
    )
    fields["Content_Type"] = "text/html; charset=utf-8"
    return _headers(**fields) + b"\r\n" + _crlf(html)


def german_reply(in_reply_to: str = "case-M-12.1@acme.example") -> bytes:
    """A reply with a German quote header ('Am ... schrieb ...:')."""
    text = (
        "Ja, der Termin passt mir.\n\nViele Grüße\nJörg\n\n"
        "Am Mo., 1. Dez. 2025 um 09:00 Uhr schrieb Acme Mortgages <mortgages@acme.example>:\n"
        "> Sehr geehrter Herr Müller,\n> passt Ihnen der Termin?\n"
    )
    return plain(
        text,
        message_id="de-1@kunde.example",
        subject="AW: Ihr Antrag [M-12]",
        sender="=?utf-8?q?J=C3=B6rg_M=C3=BCller?= <joerg@kunde.example>",
        in_reply_to=in_reply_to,
    )


def french_reply(in_reply_to: str = "case-M-12.1@acme.example") -> bytes:
    """A reply with a French quote header ('Le ... a écrit :')."""
    text = (
        "Oui, la date me convient.\n\nCordialement,\nAmélie\n\n"
        "Le lun. 1 déc. 2025 à 09:00, Acme Mortgages <mortgages@acme.example> a écrit :\n"
        "> Bonjour Madame,\n> la date vous convient-elle ?\n"
    )
    return plain(
        text,
        message_id="fr-1@client.example",
        subject="=?utf-8?q?R=C3=A9f=C3=A9rence_=5BM-12=5D?=",
        sender="=?iso-8859-1?q?Am=E9lie_Dupont?= <amelie@client.example>",
        in_reply_to=in_reply_to,
    )


def auto_reply(header: str = "Auto-Submitted", value: str = "auto-replied") -> bytes:
    """An out-of-office answer marked automatic by ``header: value``."""
    return plain(
        "I am out of the office until Monday.\n",
        message_id="ooo-1@customer.example",
        subject="Automatic reply: Your mortgage request [M-12]",
        in_reply_to="case-M-12.1@acme.example",
        extra={header.replace("-", "_"): value},
    )


def outlook_normal() -> bytes:
    """An ordinary Outlook mail: X-Auto-Response-Suppress is set, yet a person wrote it."""
    return outlook_reply()


def list_message() -> bytes:
    """A mailing-list message (List-Id, List-Unsubscribe, Precedence: list)."""
    return plain(
        "This week's newsletter.\n",
        message_id="news-1@lists.example",
        subject="[news] Weekly digest",
        sender="News <news@lists.example>",
        extra={
            "List_Id": "News <news.lists.example>",
            "List_Unsubscribe": "<mailto:unsubscribe@lists.example>",
        },
    )


def dsn_bounce(original_id: str = "case-M-12.1@acme.example") -> bytes:
    """An RFC 3464 delivery status notification (multipart/report; delivery-status)."""
    fields = _base(
        message_id="dsn-1@mx.acme.example",
        subject="Undelivered Mail Returned to Sender",
        sender="MAILER-DAEMON@mx.acme.example (Mail Delivery System)",
        to="mortgages@acme.example",
        extra={"Auto_Submitted": "auto-replied"},
    )
    fields["Content_Type"] = 'multipart/report; report-type=delivery-status; boundary="dsn-b"'
    return (
        _headers(**fields)
        + b"\r\n--dsn-b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        + b"Your message could not be delivered to nobody@customer.example.\r\n"
        + b"\r\n--dsn-b\r\nContent-Type: message/delivery-status\r\n\r\n"
        + b"Reporting-MTA: dns; mx.acme.example\r\n\r\n"
        + b"Final-Recipient: rfc822; nobody@customer.example\r\nAction: failed\r\n"
        + b"Status: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        + b"\r\n--dsn-b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + f"Message-ID: <{original_id}>\r\nSubject: Your mortgage request [M-12]\r\n".encode()
        + b"\r\n--dsn-b--\r\n"
    )


def mailer_daemon_bounce(subject: str = "failure notice") -> bytes:
    """A bounce without the RFC 3464 structure, as qmail and many others send them."""
    return plain(
        "Hi. This is the qmail-send program at mx.customer.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "<nobody@customer.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n",
        message_id="qmail-1@mx.customer.example",
        subject=subject,
        sender="MAILER-DAEMON@mx.customer.example",
        to="mortgages@acme.example",
    )


def arf_report() -> bytes:
    """An abuse feedback report (RFC 5965, report-type=feedback-report)."""
    fields = _base(
        message_id="arf-1@fbl.example",
        subject="FW: Your mortgage request",
        sender="Feedback Loop <fbl@isp.example>",
        to="mortgages@acme.example",
    )
    fields["Content_Type"] = 'multipart/report; report-type=feedback-report; boundary="arf"'
    return (
        _headers(**fields)
        + b"\r\n--arf\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        + b"\r\n--arf\r\nContent-Type: message/feedback-report\r\n\r\n"
        + b"Feedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\nVersion: 1\r\n"
        + b"\r\n--arf--\r\n"
    )


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def with_attachments() -> bytes:
    """A mail with a PDF (RFC 2231 name), an inline image and an attached message."""
    inner = plain("The forwarded message.\n", message_id="inner-1@customer.example")
    fields = _base(
        message_id="att-1@customer.example",
        subject="Documents",
        sender=SENDER,
        to=ACCOUNT,
    )
    fields["Content_Type"] = 'multipart/mixed; boundary="mix"'
    return (
        _headers(**fields)
        + b"\r\n--mix\r\nContent-Type: multipart/related; boundary=rel\r\n\r\n"
        + b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + b'<p>See the scan: <img src="cid:img1"></p>\r\n'
        + b"--rel\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\n"
        + b"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(PNG).replace(b"\n", b"\r\n")
        + b"--rel--\r\n"
        + b"\r\n--mix\r\nContent-Type: application/pdf\r\n"
        + b"Content-Disposition: attachment; filename*=utf-8''Kontoausz%C3%BCge%202025.pdf\r\n"
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(PDF).replace(b"\n", b"\r\n")
        + b"\r\n--mix\r\nContent-Type: application/octet-stream\r\n"
        + b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\n'
        + b"not really\r\n"
        + b"\r\n--mix\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--mix--\r\n"
    )


def no_message_id() -> bytes:
    """A mail without a Message-ID header."""
    return plain("No id here.\n", message_id=None, subject="No id")


def broken_mime() -> bytes:
    """A multipart whose boundary never appears, with bad base64 and a truncated end."""
    return (
        b"From: jane@customer.example\r\nTo: mortgages@acme.example\r\n"
        b"Subject: broken\r\nMessage-ID: <broken-1@customer.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="never"\r\n\r\n'
        b"--nope\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not base64***\r\n--nope\r\nContent-Type: text/html"
    )


def invalid_charsets() -> bytes:
    """A subject and a body in charsets that do not exist, and bytes invalid in UTF-8."""
    return (
        b"From: =?x-made-up?q?J=E9r=F4me?= <jerome@customer.example>\r\n"
        b"To: mortgages@acme.example\r\n"
        b"Subject: =?x-made-up?q?caf=E9?= and =?utf-8?q?=FF=FE?=\r\n"
        b"Message-ID: <charset-1@customer.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=x-made-up\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me\r\n"
        b"--b\r\nContent-Type: text/html; charset=base64\r\n\r\n<p>r\xe9sum\xe9</p>\r\n"
        b"--b--\r\n"
    )


def eight_bit_headers() -> bytes:
    """Raw 8-bit header bytes: UTF-8 in the subject, latin-1 in the sender's name."""
    return (
        b"From: J\xf6rg M\xfcller <joerg@kunde.example>\r\n"
        b"To: mortgages@acme.example\r\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
        b"Message-ID: <8bit-1@kunde.example>\r\n"
        b"Content-Type: text/plain\r\n\r\nHallo \xc3\xa4\r\n"
    )


def nesting_bomb(depth: int = 5_000, *, kind: str = "multipart") -> bytes:
    """Parts nested ``depth`` levels deep: ``multipart`` or ``message/rfc822``."""
    top = b"From: jane@customer.example\r\nSubject: bomb\r\nMessage-ID: <bomb@customer.example>\r\n"
    if kind == "multipart":
        head = b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
            for i in range(depth)
        )
        tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
        return top + head + b"Content-Type: text/plain\r\n\r\ndeep inside" + tail
    inner = b"Subject: inner\r\n\r\ndeep inside\r\n"
    return top + b"Content-Type: message/rfc822\r\n\r\n" * depth + inner


def many_attachments(count: int = 1_000) -> bytes:
    """A mail with ``count`` small attachments."""
    parts = b"".join(
        b"--m\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="file-%d.txt"\r\n\r\nfile %d\r\n' % (i, i)
        for i in range(count)
    )
    return (
        b"From: jane@customer.example\r\nTo: mortgages@acme.example\r\n"
        b"Subject: many files\r\nMessage-ID: <many@customer.example>\r\n"
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        b"--m\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" + parts + b"--m--\r\n"
    )


def html_only(html: str = "<p>Hello <b>there</b></p><p>Second paragraph</p>") -> bytes:
    """A mail whose only body is HTML."""
    fields = _base(message_id="html-1@customer.example", subject="HTML", sender=SENDER, to=ACCOUNT)
    fields["Content_Type"] = "text/html; charset=utf-8"
    return _headers(**fields) + b"\r\n" + _crlf(html)
