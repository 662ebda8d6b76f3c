"""Reading delivery reports: every fixture's kind, recipients, status, and what names its
email (VERP token, ENVID, returned Message-ID). Pure: no database, no network."""

from __future__ import annotations

import pytest

from postroom.bounces.models import ReportKind, ReportOutcome
from postroom.bounces.report import parse_report
from postroom.bounces.severity import is_soft, parse_diagnostic, text_code
from postroom.bounces.standard import addresses
from postroom.bounces.verp import new_token, verp_address
from tests import bouncesamples as samples

TOKEN = new_token()
VERP = verp_address("bounces@acme.example", TOKEN)
JANE = "Jane.Doe@customer.example"
MID = "20251204.abc123@acme.example"


@pytest.mark.parametrize(
    ("build", "kind", "status", "words"),
    [
        (samples.postfix_dsn, ReportKind.DSN, "5.1.1", "User unknown in virtual mailbox table"),
        (samples.exchange_ndr, ReportKind.DSN, "5.1.10", "RESOLVER.ADR.RecipientNotFound"),
        (samples.gmail_dsn, ReportKind.DSN, "5.1.1", "you tried to reach does not exist"),
        (samples.qmail, ReportKind.HEURISTIC, "5.1.1", "no mailbox here by that name"),
        (samples.postfix_old, ReportKind.HEURISTIC, "5.1.1", "User unknown in local recipient"),
    ],
)
def test_each_bounce_names_its_recipient_status_and_email(
    build: samples.Builder, kind: ReportKind, status: str, words: str
) -> None:
    report = build(recipient=JANE, to=VERP, message_id=MID)
    parsed = parse_report(report)
    assert parsed.kind is kind
    [one] = parsed.recipients
    assert one.address == JANE
    assert one.outcome is ReportOutcome.BOUNCED
    assert one.status == status
    assert words in one.diagnostic
    assert "\n" not in one.diagnostic
    assert one.soft is False  # 5.1.x: the mailbox is not there
    assert parsed.tokens == (TOKEN,)
    assert parsed.message_id == MID


def test_gmail_s_multi_line_diagnostic_reads_as_one_sentence() -> None:
    parsed = parse_report(samples.gmail_dsn(recipient=JANE, to=VERP, message_id=MID))
    [one] = parsed.recipients
    assert one.code == 550
    assert one.diagnostic.startswith("550 5.1.1 The email account that you tried to reach")
    assert "550-5.1.1" not in one.diagnostic  # the continuation codes are folded away
    assert "double-checking the recipient's email address" in one.diagnostic
    assert one.remote_mta == "gmail-smtp-in.l.google.com"


def test_a_delayed_report_is_delayed_and_soft() -> None:
    parsed = parse_report(samples.delayed_dsn(recipient=JANE, to=VERP, message_id=MID))
    [one] = parsed.recipients
    assert (one.outcome, one.status, one.soft) == (ReportOutcome.DELAYED, "4.4.7", True)
    assert "Connection timed out" in one.diagnostic


def test_a_full_mailbox_is_a_soft_bounce_through_the_classification_table() -> None:
    raw = samples.postfix_dsn(
        recipient=JANE,
        to=VERP,
        message_id=MID,
        status="5.2.2",
        diagnostic="smtp; 552 5.2.2 Mailbox full",
    )
    [one] = parse_report(raw).recipients
    assert (one.outcome, one.status, one.code, one.soft) == (
        ReportOutcome.BOUNCED,
        "5.2.2",
        552,
        True,
    )


def test_delivered_recipients_are_not_reported_and_the_envid_is_read() -> None:
    raw = samples.postfix_dsn(
        recipient=JANE, to=VERP, message_id=MID, envid=TOKEN, also_delivered="bob@other.example"
    )
    parsed = parse_report(raw)
    assert parsed.envelope_id == TOKEN
    assert [r.address for r in parsed.recipients] == [JANE]


def test_an_arf_complaint_names_the_original_recipient() -> None:
    parsed = parse_report(samples.arf(recipient=JANE, to=VERP, message_id=MID))
    assert parsed.kind is ReportKind.ARF
    [one] = parsed.recipients
    assert (one.address, one.outcome, one.status) == (JANE, ReportOutcome.COMPLAINED, None)
    assert "Feedback-Type: abuse" in one.diagnostic
    assert parsed.message_id == MID


def test_an_arf_complaint_without_original_rcpt_to_takes_the_returned_to() -> None:
    raw = samples.arf(recipient=JANE, to=VERP, message_id=MID, rcpt_header=False)
    [one] = parse_report(raw).recipients
    assert one.address == JANE


def test_a_report_naming_nobody_keeps_what_its_text_says() -> None:
    parsed = parse_report(samples.nameless(to=VERP))
    assert parsed.kind is ReportKind.HEURISTIC
    assert parsed.recipients == ()
    assert (parsed.status, parsed.soft) == ("5.1.1", False)
    assert "mailbox unavailable" in parsed.diagnostic
    assert parsed.tokens == (TOKEN,)
    vague = parse_report(samples.nameless(to=VERP, text="the message could not be delivered"))
    assert (vague.kind, vague.status, vague.soft) == (ReportKind.NONE, None, True)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x",
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: ;;;\r\nAction: failed\r\n",
        b"From:\r\nTo: <<<>>>\r\nSubject: failure notice\r\n\r\nHi. This is the qmail-send\r\n",
    ],
)
def test_broken_reports_never_raise(raw: bytes) -> None:
    parsed = parse_report(raw)
    assert parsed.kind in set(ReportKind)
    assert all("@" in r.address for r in parsed.recipients)


def test_a_token_counts_only_in_the_report_s_own_recipient_headers() -> None:
    # The token in the text (a forger quoting it) is not the address the report came to.
    raw = samples.qmail(recipient=JANE, to="mortgages@acme.example", message_id=None)
    raw = raw.replace(b"Sorry, no mailbox", f"{VERP} Sorry, no mailbox".encode())
    parsed = parse_report(raw)
    assert parsed.tokens == ()
    assert parsed.message_id is None


def test_addresses_in_report_fields() -> None:
    assert addresses("rfc822; jane@customer.example") == ["jane@customer.example"]
    assert addresses("rfc822;<jane@customer.example>") == ["jane@customer.example"]
    # ORCPT echoed as xtext: the decoded form is offered too.
    assert addresses("rfc822; a+2Bb@x.example") == ["a+2Bb@x.example", "a+b@x.example"]
    assert addresses("utf-8; j\\x{00F6}rg@x.example") == ["jörg@x.example"]
    assert addresses("rfc822; not an address") == []
    assert addresses(None) == []


def test_diagnostics_and_codes() -> None:
    assert parse_diagnostic("smtp; 550 5.1.1 <a@b>: no such user") == (
        550,
        "5.1.1",
        "550 5.1.1 <a@b>: no such user",
    )
    assert parse_diagnostic("X-Postfix; connect timed out") == (None, None, "connect timed out")
    assert text_code("Remote host said: 552 5.2.2 mailbox full") == (552, "5.2.2")
    assert text_code("host 198.51.100.7 said nothing") == (None, None)
    assert is_soft(code=None, status="5.2.2", permanent=True) is True  # the table's exception
    assert is_soft(code=None, status="5.1.1", permanent=False) is False
    assert is_soft(code=None, status=None, permanent=False) is True
    assert is_soft(code=None, status=None, permanent=True) is False
    assert is_soft(code=450, status="4.2.0", permanent=True) is True
