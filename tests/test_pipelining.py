"""SMTP command pipelining (RFC 2920): used when offered, and replies read in order.

A small SMTP server here answers MAIL FROM only after a pause and notes whether the
client's RCPT TO had already arrived by then: with pipelining it has, without it the
client waits for each reply. aiosmtpd (tests/fakes.py) covers the rest of the
delivery suite with PIPELINING offered.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import example, given
from hypothesis import strategies as st

from postroom import Postroom
from postroom.outbox import OutboxStatus
from postroom.outbox.models import OutboxEntry, RecipientState
from postroom.transports.pipeline import PipelineError, data_lines, message_reply, pipelinable
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.test_delivery import account, queue, run_agent

MAIL_PAUSE = 0.3  # long enough that a pipelined RCPT is surely in the server's buffer


@dataclass
class Observed:
    """What the pausing server saw."""

    offer_pipelining: bool = True
    rcpt_before_mail_reply: list[bool] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    messages: list[bytes] = field(default_factory=list)  # only those ended by "."
    verbs: list[bytes] = field(default_factory=list)  # every command's first word, in order
    # Replies a misbehaving server gives instead of its own; SILENT never answers.
    mail_reply: bytes = b"250 2.1.0 OK\r\n"
    data_reply: bytes = b"354 go ahead\r\n"
    final_reply: bytes = b"250 2.0.0 queued\r\n"


SILENT = b""


async def _serve(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Observed
) -> None:
    writer.write(b"220 pausing.test ESMTP\r\n")
    ahead: list[bytes] = []  # a line read early, while MAIL FROM waited for its reply
    while line := (ahead.pop() if ahead else await reader.readline()):
        command = line.strip().upper()
        seen.verbs.append(command.split(b" ", 1)[0].split(b":", 1)[0])
        if command.startswith(b"EHLO"):
            offer = b"250-PIPELINING\r\n" if seen.offer_pipelining else b""
            writer.write(b"250-pausing.test\r\n" + offer + b"250 8BITMIME\r\n")
        elif command.startswith(b"MAIL FROM"):
            # A client that pipelines has sent RCPT TO already; one that does not is
            # waiting for this reply and sends nothing.
            with suppress(TimeoutError):
                ahead.append(await asyncio.wait_for(reader.readline(), MAIL_PAUSE))
            seen.rcpt_before_mail_reply.append(any(a.upper().startswith(b"RCPT TO") for a in ahead))
            writer.write(seen.mail_reply)
        elif command.startswith(b"RCPT TO"):
            address = line.strip()[9:-1].decode().lower()
            ok = address not in seen.refuse
            writer.write(b"250 2.1.5 OK\r\n" if ok else b"550 5.1.1 no such user\r\n")
        elif command == b"DATA":
            writer.write(seen.data_reply)
            await writer.drain()
            if not seen.data_reply.startswith(b"354"):
                continue
            lines = []
            while (data := await reader.readline()) not in (b".\r\n", b""):
                lines.append(data[1:] if data.startswith(b"..") else data)
            if data == b"":
                break  # the client dropped the connection: no message
            seen.messages.append(b"".join(lines))
            writer.write(seen.final_reply)
        elif command == b"QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


@contextmanager
def pausing_server(seen: Observed) -> Iterator[int]:
    """The server above on a loopback port, in a thread of its own."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []
    stop = asyncio.Event()

    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: _serve(r, w, seen), "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        started.set()
        async with server:
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the test server did not start"
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("pipelining", ["offered", "offered but off", "not offered"])
def test_commands_are_pipelined_only_when_offered_and_enabled(
    pipelining: str, sqlite_postroom: Postroom
) -> None:
    seen = Observed(offer_pipelining=pipelining != "not offered")
    seen.refuse.add("gone@example.net")
    advanced = {"mail.smtp.pipelining": "false"} if pipelining == "offered but off" else {}
    with pausing_server(seen) as port:
        sqlite_postroom.apply({"accounts": [account(port, advanced=advanced)]})
        outbox_id = queue(sqlite_postroom, "a@example.net", "gone@example.net", "b@example.net")
        run_agent(sqlite_postroom)
    assert seen.rcpt_before_mail_reply == [pipelining == "offered"]
    entry = sqlite_postroom.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.SENT
    assert {r.address: r.state for r in entry.recipients} == {
        "a@example.net": RecipientState.ACCEPTED,
        "gone@example.net": RecipientState.REFUSED,
        "b@example.net": RecipientState.ACCEPTED,
    }
    (message,) = seen.messages
    assert message_from_bytes(message)["Subject"] == "Hello"


def test_replies_in_order_deliver_many_emails_on_one_connection(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        srv.sink.rcpt_replies["refused@example.net"] = "550 5.1.1 unknown"
        pr.apply({"accounts": [account(srv.port)]})
        ids = [queue(pr, f"user{n}@example.net", subject=f"n{n}") for n in range(40)]
        refused = queue(pr, "refused@example.net", subject="refused")
        run_agent(pr)
        assert all(pr.outbox_entry(i).status is OutboxStatus.SENT for i in ids)
        assert pr.outbox_entry(refused).status is OutboxStatus.FAILED
        got = {str(message_from_bytes(r.raw)["Subject"]): r.rcpt_tos for r in srv.sink.received}
        assert got == {f"n{n}": [f"user{n}@example.net"] for n in range(40)}


def test_a_server_that_drops_the_connection_mid_pipeline_loses_nothing(database_url: str) -> None:
    with smtp_server() as srv, Postroom(make_settings(database_url)) as pr:
        srv.sink.disconnect_on_data = 1
        pr.apply({"accounts": [account(srv.port)]})
        outbox_id = queue(pr, "a@example.net")
        run_agent(pr)
        entry = pr.outbox_entry(outbox_id)
        assert entry.status is OutboxStatus.SENT  # again, on a fresh connection
        assert entry.attempts == 2
        assert len(srv.sink.received) == 1


def test_only_plain_ascii_addresses_are_pipelined() -> None:
    assert pipelinable("a@example.com", ["b.c+d@example.net"])
    assert not pipelinable("a@example.com", ["jörg@example.net"])
    assert not pipelinable("a@example.com", ["x>@example.net"])
    assert not pipelinable("a@example.com", ["x\r\nRCPT TO:<y>@example.net"])
    assert not pipelinable('"a b"@example.com', [])


@given(st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\r").replace(b"y", b"\n")))
@example(b"\r\r\n.\n.")
def test_data_lines_put_on_the_wire_what_aiosmtplib_would(message: bytes) -> None:
    # aiosmtplib's DATA path is the reference for the sequential transaction.
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"
    assert data_lines(message) == expected


def test_data_lines_double_leading_periods_and_end_the_message() -> None:
    assert data_lines(b"a\r\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert data_lines(b"lone\nline\rends") == b"lone\r\nline\r\nends\r\n.\r\n"
    assert data_lines(b".") == b"..\r\n.\r\n"


@pytest.fixture
def waiting(tmp_path: Path) -> Iterator[Postroom]:
    """Postroom whose retries wait a minute, so one agent run leaves a retry as it is."""
    settings = make_settings(f"sqlite:///{tmp_path / 'p.db'}", backoff_base=60, backoff_max=60)
    with Postroom(settings) as postroom:
        yield postroom


def deliver_through(seen: Observed, postroom: Postroom, *to: str, **fields: object) -> int:
    """One email to ``to`` through the scripted server; its outbox id."""
    with pausing_server(seen) as port:
        postroom.apply({"accounts": [account(port, **fields)]})
        outbox_id = queue(postroom, *to)
        run_agent(postroom)
    return outbox_id


def deliver_holding_unknowns(seen: Observed, postroom: Postroom) -> OutboxEntry:
    """One email to a@example.net from an account that holds unknown outcomes (1 s timeout)."""
    outbox_id = deliver_through(
        seen,
        postroom,
        "a@example.net",
        advanced={"mail.smtp.timeout": "1000"},
        on_unknown_outcome="hold",
    )
    return postroom.outbox_entry(outbox_id)


def test_a_reply_that_is_not_smtp_is_retried_and_sends_nothing(waiting: Postroom) -> None:
    seen = Observed(mail_reply=b"OK sender fine\r\n")
    outbox_id = deliver_through(seen, waiting, "a@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.RETRY
    assert "not an SMTP reply: 'OK sender fine'" in (entry.last_error or "")
    assert seen.messages == []  # no message, not even an empty one, was completed


def test_a_reply_changing_its_code_midway_is_out_of_step(waiting: Postroom) -> None:
    seen = Observed(final_reply=b"250-first line\r\n451 4.3.0 second line\r\n")
    outbox_id = deliver_through(seen, waiting, "a@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.RETRY  # never sent on a reply it cannot read
    assert "changed the reply code" in (entry.last_error or "")


def test_data_opened_for_no_recipient_completes_no_message(waiting: Postroom) -> None:
    seen = Observed(refuse={"a@example.net", "b@example.net"})  # and DATA still says 354
    outbox_id = deliver_through(seen, waiting, "a@example.net", "b@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.FAILED
    assert {r.state for r in entry.recipients} == {RecipientState.REFUSED}
    assert seen.messages == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_no_reply_to_the_message_is_an_unknown_outcome(waiting: Postroom, pipelining: bool) -> None:
    seen = Observed(final_reply=SILENT, offer_pipelining=pipelining)
    entry = deliver_holding_unknowns(seen, waiting)
    assert len(seen.messages) == 1  # the server has it, but never said so
    assert entry.status is OutboxStatus.HELD  # a person decides: resending may duplicate
    assert "may have taken the message" in (entry.last_error or "")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_no_reply_to_data_is_retried_as_nothing_went(waiting: Postroom, pipelining: bool) -> None:
    seen = Observed(data_reply=SILENT, offer_pipelining=pipelining)
    entry = deliver_holding_unknowns(seen, waiting)
    assert seen.messages == []
    assert entry.status is OutboxStatus.RETRY  # no message went: sending again is safe
    assert "may have taken" not in (entry.last_error or "")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_a_refused_message_is_refused_for_every_recipient(
    waiting: Postroom, pipelining: bool
) -> None:
    seen = Observed(final_reply=b"554 5.6.0 content rejected\r\n", offer_pipelining=pipelining)
    outbox_id = deliver_through(seen, waiting, "a@example.net", "b@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.FAILED
    assert {r.state for r in entry.recipients} == {RecipientState.REFUSED}
    assert "content rejected" in (entry.last_error or "")


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_refused_data_resets_the_transaction(waiting: Postroom, pipelining: bool) -> None:
    seen = Observed(data_reply=b"451 4.3.0 try later\r\n", offer_pipelining=pipelining)
    outbox_id = deliver_through(seen, waiting, "a@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.RETRY
    assert "try later" in (entry.last_error or "")
    assert seen.verbs[seen.verbs.index(b"DATA") + 1] == b"RSET"  # not left half open
    assert seen.messages == []


@pytest.mark.parametrize(
    ("seen", "closing", "after_data"),
    [
        (Observed(offer_pipelining=False), True, False),
        (Observed(offer_pipelining=False, final_reply=SILENT), False, True),
    ],
    ids=["closing before the message", "silent after it"],
)
def test_a_message_counts_as_sent_only_once_written(
    seen: Observed, closing: bool, after_data: bool
) -> None:
    # Whether a failure may have delivered the message decides retry or unknown outcome.
    async def attempt() -> PipelineError:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5, start_tls=False)
        await smtp.connect()
        try:
            await smtp.mail("s@example.net")
            await smtp.rcpt("a@example.net")
            assert (await smtp.execute_command(b"DATA")).code == 354
            if closing:
                # What a transport does on reading a hang-up: it closes itself, and the
                # connection is gone a loop turn later. A write in between is dropped.
                assert smtp.transport is not None
                smtp.transport.close()
            with pytest.raises(PipelineError) as failed:
                await message_reply(smtp, message=b"Subject: s\r\n\r\nbody\r\n", timeout=0.5)
            return failed.value
        finally:
            smtp.close()

    with pausing_server(seen) as port:
        error = asyncio.run(attempt())
    assert error.after_data is after_data
    assert len(seen.messages) == (1 if after_data else 0)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one by one"])
def test_a_reply_out_of_step_drops_the_connection(waiting: Postroom, pipelining: bool) -> None:
    # As if a stray reply came first.
    seen = Observed(data_reply=b"250 2.1.5 OK\r\n", offer_pipelining=pipelining)
    outbox_id = deliver_through(seen, waiting, "a@example.net")
    entry = waiting.outbox_entry(outbox_id)
    assert entry.status is OutboxStatus.RETRY
    assert "out of step" in (entry.last_error or "")
    assert seen.messages == []
