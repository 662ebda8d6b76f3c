"""The IMAP source against a real Dovecot: cursors, resync, size limit, settle, IDLE, TLS."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trustme

from postroom.accounts.models import EmailAccount
from postroom.auth.models import AuthProfile
from postroom.auth.tokens import TokenCache
from postroom.errors import ConfigurationError, CredentialsRejectedError, TransientDeliveryError
from postroom.inbound.imap import ImapSource
from postroom.inbound.models import Cursor, FetchedMessage
from postroom.inbound.sources import token_getter
from tests.dovecotkit import (
    PASSWORD,
    Dovecot,
    Mailbox,
    dovecot_fixture,
    introspection_server,
    mailbox_fixture,
    message,
    raws,
)
from tests.fake_microsoft import CLIENT_ID, CLIENT_SECRET, SMTP_RESOURCE, microsoft_server

pytestmark = pytest.mark.dovecot

dovecot = dovecot_fixture()
dovecot_no_idle = dovecot_fixture(idle=False)
mailbox = mailbox_fixture()
poll_mailbox = mailbox_fixture(server="dovecot_no_idle")

_T = TypeVar("_T")


def run(work: Callable[[ImapSource], Awaitable[_T]], account: EmailAccount, **kw: Any) -> _T:
    """Open a source on ``account``, run ``work`` with it, close it."""

    async def go() -> _T:
        source = ImapSource(account, token=None, timeout=20, **kw)
        await source.open()
        try:
            return await work(source)
        finally:
            await source.close()

    return asyncio.run(go())


async def read_all(source: ImapSource, cursor: Cursor, batch: int = 50) -> list[FetchedMessage]:
    found: list[FetchedMessage] = []
    async for items in source.fetch(cursor, batch=batch):
        assert 0 < len(items) <= batch
        found.extend(items)
    return found


def subjects(items: list[FetchedMessage]) -> list[str]:
    out = []
    for item in items:
        assert item.raw is not None
        line = next(x for x in item.raw.split(b"\r\n") if x.startswith(b"Subject: "))
        out.append(line.removeprefix(b"Subject: ").decode())
    return out


def test_the_test_server_keeps_what_is_appended(mailbox: Mailbox) -> None:
    first = mailbox.append(message("one"))
    second = mailbox.append(message("two"))
    assert mailbox.uids() == [first, second]
    assert mailbox.flags(first) == set()
    assert b"Subject: two" in mailbox.folder_messages()[second]
    before = mailbox.uidvalidity()
    assert mailbox.change_uidvalidity() != before
    assert mailbox.uidvalidity() != before
    mailbox.create_folder("Archive")
    assert mailbox.append_many([message(str(i)) for i in range(30)], "Archive") == 30
    assert len(mailbox.uids("Archive")) == 30


def test_fetch_reads_what_is_after_the_cursor_oldest_first(mailbox: Mailbox) -> None:
    uids = [mailbox.append(message(f"m{i}")) for i in range(3)]
    validity = str(mailbox.uidvalidity())

    async def work(source: ImapSource) -> tuple[list[FetchedMessage], ...]:
        everything = await read_all(source, Cursor(), batch=2)
        after_first = await read_all(source, everything[0].cursor or Cursor())
        # "UID n:*" matches the highest message even when n is past it: nothing is new.
        after_last = await read_all(source, everything[-1].cursor or Cursor())
        return everything, after_first, after_last

    everything, after_first, after_last = run(work, mailbox.account())
    assert subjects(everything) == ["m0", "m1", "m2"]
    assert [m.key for m in everything] == [str(u) for u in uids]
    assert [m.cursor for m in everything] == [Cursor(validity, str(u)) for u in uids]
    assert subjects(after_first) == ["m1", "m2"]
    assert after_last == []
    # Read with BODY.PEEK: nothing is flagged until the message is settled.
    assert all(mailbox.flags(u) == set() for u in uids)


def test_a_restart_from_the_saved_cursor_neither_rereads_nor_skips(mailbox: Mailbox) -> None:
    mailbox.append_many(raws(4, prefix="early"))
    account = mailbox.account()
    first = run(lambda s: read_all(s, Cursor()), account)
    saved = first[-1].cursor
    assert saved is not None
    mailbox.append_many(raws(3, prefix="late"))
    second = run(lambda s: read_all(s, saved), account)
    assert subjects(second) == ["late 0", "late 1", "late 2"]
    keys = [m.key for m in first + second]
    assert len(set(keys)) == 7
    assert [int(k) for k in keys] == mailbox.uids()


def test_a_new_uidvalidity_reads_the_folder_again(mailbox: Mailbox) -> None:
    mailbox.append_many(raws(3))
    account = mailbox.account()
    first = run(lambda s: read_all(s, Cursor()), account)
    new = mailbox.change_uidvalidity()
    again = run(lambda s: read_all(s, first[-1].cursor or Cursor()), account)
    assert subjects(again) == subjects(first)
    assert {m.cursor.validity for m in again if m.cursor} == {str(new)}


def test_a_too_large_message_is_handed_over_unread_and_left_unflagged(mailbox: Mailbox) -> None:
    small = mailbox.append(message("small"))
    large = mailbox.append(message("large", body="x" * 8000))
    items = run(lambda s: read_all(s, Cursor()), mailbox.account(), max_message_bytes=4096)
    by_key = {m.key: m for m in items}
    assert by_key[str(small)].raw is not None
    assert by_key[str(large)].raw is None
    assert by_key[str(large)].size > 8000
    assert by_key[str(large)].cursor == Cursor(str(mailbox.uidvalidity()), str(large))
    assert mailbox.flags(large) == set()
    # The account's own limit applies when none is given.
    limited = mailbox.account(max_message_bytes=4096)
    items = run(lambda s: read_all(s, Cursor()), limited)
    assert [m.raw is None for m in items] == [False, True]


def test_settle_seen_flags_and_is_idempotent(mailbox: Mailbox) -> None:
    uids = [mailbox.append(message(f"m{i}")) for i in range(3)]

    async def work(source: ImapSource) -> None:
        await source.settle([str(uids[0]), str(uids[1])])
        await source.settle([str(uids[0]), str(uids[1])])  # again: nothing changes
        await source.settle(["99999"])  # a key no longer there

    run(work, mailbox.account())
    assert [mailbox.flags(u) for u in uids] == [{"\\Seen"}, {"\\Seen"}, set()]


def test_settle_move_moves_once_and_never_creates_the_folder(mailbox: Mailbox) -> None:
    uids = [mailbox.append(message(f"m{i}")) for i in range(3)]
    missing = mailbox.account(after="move", move_to="Nowhere")
    with pytest.raises(ConfigurationError, match="Nowhere"):
        run(lambda s: s.settle([str(uids[0])]), missing)
    assert mailbox.uids() == uids
    mailbox.create_folder("Done")

    async def work(source: ImapSource) -> None:
        await source.settle([str(uids[0]), str(uids[1])])
        await source.settle([str(uids[0]), str(uids[1])])  # moved already: gone from here

    run(work, mailbox.account(after="move", move_to="Done"))
    assert mailbox.uids() == [uids[2]]
    moved = mailbox.folder_messages("Done")
    assert sorted(b"Subject: m0" in raw or b"Subject: m1" in raw for raw in moved.values()) == [
        True,
        True,
    ]


def test_settle_delete_expunges_only_those_messages(mailbox: Mailbox) -> None:
    uids = [mailbox.append(message(f"m{i}")) for i in range(3)]
    # Someone else marked the third deleted: UID EXPUNGE leaves it alone.
    with mailbox.client() as c:
        c.add_flags([uids[2]], [b"\\Deleted"])

    async def work(source: ImapSource) -> None:
        await source.settle([str(uids[0])])
        await source.settle([str(uids[0])])

    run(work, mailbox.account(after="delete"))
    assert mailbox.uids() == uids[1:]


def test_a_large_folder_is_read_in_batches_with_flat_memory(mailbox: Mailbox) -> None:
    count, body = 2000, 3000
    assert mailbox.append_many(raws(count, size=body)) == count
    sizes: list[int] = []

    async def work(source: ImapSource) -> tuple[int, int]:
        tracemalloc.start()
        try:
            seen = 0
            async for items in source.fetch(Cursor(), batch=50):
                sizes.append(len(items))
                seen += len(items)
            return seen, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    seen, peak = run(work, mailbox.account())
    assert seen == count
    assert max(sizes) == 50
    assert len(sizes) == count // 50
    # The folder holds about 6 MB; one batch is about 150 KB: the peak stays near a batch.
    folder_bytes = count * body
    assert peak < folder_bytes / 4, f"peak {peak} bytes for a folder of {folder_bytes}"


async def _until(check: Callable[[], bool], limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_idle_wakes_the_wait_when_mail_arrives(mailbox: Mailbox) -> None:
    async def work(source: ImapSource) -> float:
        assert source.idle_offered
        await read_all(source, Cursor())
        waiting = asyncio.ensure_future(source.wait(30))
        await _until(lambda: source.idling)
        began = time.monotonic()
        await asyncio.to_thread(mailbox.append, message("arrived"))
        await asyncio.wait_for(waiting, 25)
        took = time.monotonic() - began
        fresh = await read_all(source, Cursor(str(source.validity), "0"))
        assert subjects(fresh) == ["arrived"]
        return took

    assert run(work, mailbox.account()) < 10


def test_a_wait_returns_at_once_for_mail_that_came_before_it(mailbox: Mailbox) -> None:
    async def work(source: ImapSource) -> float:
        await read_all(source, Cursor())
        await asyncio.to_thread(mailbox.append, message("early"))
        began = time.monotonic()
        await source.wait(30)
        return time.monotonic() - began

    assert run(work, mailbox.account()) < 10


def test_stop_and_cancel_end_an_idle_promptly_and_keep_the_session(mailbox: Mailbox) -> None:
    async def work(source: ImapSource) -> None:
        waiting = asyncio.ensure_future(source.wait(60))
        await _until(lambda: source.idling)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The worker leaves IDLE itself; the next command works on the same session.
        await asyncio.to_thread(mailbox.append, message("after"))
        assert subjects(await read_all(source, Cursor())) == ["after"]
        began = time.monotonic()
        waiting = asyncio.ensure_future(source.wait(60))
        await _until(lambda: source.idling)
        source.stop()
        await asyncio.wait_for(waiting, 10)
        assert time.monotonic() - began < 10

    run(work, mailbox.account())


def test_without_idle_the_wait_sleeps_its_time(poll_mailbox: Mailbox) -> None:
    async def work(source: ImapSource) -> float:
        assert not source.idle_offered
        began = time.monotonic()
        await source.wait(1.5)
        took = time.monotonic() - began
        assert 1.4 <= took < 10
        waiting = asyncio.ensure_future(source.wait(60))
        began = time.monotonic()
        source.stop()
        await asyncio.wait_for(waiting, 10)
        return time.monotonic() - began

    assert run(work, poll_mailbox.account()) < 5


def test_a_wrong_password_is_credentials_rejected(mailbox: Mailbox) -> None:
    wrong = "not-the-password-42"
    with pytest.raises(CredentialsRejectedError) as caught:
        run(lambda s: read_all(s, Cursor()), mailbox.account(password=wrong))
    assert mailbox.user in str(caught.value)
    assert wrong not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_untrusted_certificate_is_a_configuration_error(mailbox: Mailbox) -> None:
    other = trustme.CA().cert_pem.bytes().decode()
    with pytest.raises(ConfigurationError, match=r"not trusted.*truststore"):
        run(lambda s: read_all(s, Cursor()), mailbox.account(truststore=other))


def test_implicit_tls_on_the_plain_port_says_to_use_starttls(mailbox: Mailbox) -> None:
    account = mailbox.account(port=mailbox.server.port)
    with pytest.raises(ConfigurationError, match="starttls"):
        run(lambda s: read_all(s, Cursor()), account)


def test_starttls_and_plain_loopback_read_the_same(mailbox: Mailbox) -> None:
    mailbox.append(message("hello"))
    starttls = run(lambda s: read_all(s, Cursor()), mailbox.account(security="starttls"))
    plain = mailbox.account(security="none", allow_insecure_auth=True)
    assert subjects(starttls) == subjects(run(lambda s: read_all(s, Cursor()), plain)) == ["hello"]


def test_a_missing_folder_is_a_configuration_error_naming_it(mailbox: Mailbox) -> None:
    with pytest.raises(ConfigurationError, match="'Replies'"):
        run(lambda s: read_all(s, Cursor()), mailbox.account(folder="Replies"))


def test_a_closed_port_is_transient(mailbox: Mailbox) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientDeliveryError, match="nothing accepts connections"):
        run(lambda s: read_all(s, Cursor()), mailbox.account(port=port))


def test_close_always_works(mailbox: Mailbox) -> None:
    async def work() -> None:
        source = ImapSource(mailbox.account(), token=None, timeout=10)
        await source.close()  # never opened
        await source.open()
        await source.close()
        await source.close()  # twice
        with pytest.raises(TransientDeliveryError):
            await read_all(source, Cursor())

    asyncio.run(work())


def test_xoauth2_logs_in_with_the_profile_token(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    """Dovecot's oauth2 passdb asks an introspection endpoint about the Entra-style token."""
    caplog.set_level(logging.DEBUG)
    holder: dict[str, str] = {}
    with (
        microsoft_server() as ms,
        introspection_server(
            lambda token: holder["user"] if ms.token_valid(token, SMTP_RESOURCE) else None
        ) as url,
    ):
        server = Dovecot(ca, introspection_url=url).start()
        try:
            box = server.add_user()
            holder["user"] = box.user
            box.append(message("by token"))
            profile = AuthProfile(
                name="O365-IMAP",
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                token_endpoint=ms.token_endpoint,
                scope=f"{SMTP_RESOURCE}/.default",
            )
            tokens = TokenCache(allowed_hosts=("127.0.0.1",), timeout=5)
            account = box.account(password=None, auth_profile="O365-IMAP")

            async def work(token: Callable[[], Awaitable[str]]) -> list[FetchedMessage]:
                source = ImapSource(account, token=token, timeout=10)
                await source.open()
                try:
                    return await read_all(source, Cursor())
                finally:
                    await source.close()

            assert subjects(asyncio.run(work(token_getter(profile, tokens)))) == ["by token"]
            assert ms.issued
            assert "AUTHENTICATE" in caplog.text
            assert not [token for token in ms.issued if token in caplog.text]

            async def refused() -> str:
                return "not-a-token-issued-there"

            with pytest.raises(CredentialsRejectedError) as caught:
                asyncio.run(work(refused))
            assert "not-a-token" not in str(caught.value)
        finally:
            server.stop()


dovecot_plain = dovecot_fixture(without=("MOVE", "UIDPLUS"))
plain_mailbox = mailbox_fixture(server="dovecot_plain")


def test_without_move_and_uidplus_settle_copies_and_expunges(plain_mailbox: Mailbox) -> None:
    uids = [plain_mailbox.append(message(f"m{i}")) for i in range(3)]
    plain_mailbox.create_folder("Done")

    async def work(source: ImapSource) -> None:
        assert not source._imap.has_capability("MOVE")
        await source.settle([str(uids[0])])
        await source.settle([str(uids[0])])  # gone from here: nothing is copied twice

    run(work, plain_mailbox.account(after="move", move_to="Done"))
    assert plain_mailbox.uids() == uids[1:]
    assert len(plain_mailbox.uids("Done")) == 1
    run(lambda s: s.settle([str(uids[1])]), plain_mailbox.account(after="delete"))
    assert plain_mailbox.uids() == uids[2:]


def test_a_connection_the_server_ends_during_idle_is_transient(mailbox: Mailbox) -> None:
    async def work(source: ImapSource) -> None:
        waiting = asyncio.ensure_future(source.wait(60))
        await _until(lambda: source.idling)
        began = time.monotonic()
        await asyncio.to_thread(mailbox.server.doveadm, "kick", mailbox.user)
        with pytest.raises(TransientDeliveryError):
            await asyncio.wait_for(waiting, 20)
        assert time.monotonic() - began < 15
        with pytest.raises(TransientDeliveryError):
            await read_all(source, Cursor())

    run(work, mailbox.account())


def test_a_server_that_never_greets_is_transient(mailbox: Mailbox) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        account = mailbox.account(port=silent.getsockname()[1], security="starttls")

        async def work() -> None:
            source = ImapSource(account, token=None, timeout=1.5)
            await source.open()

        with pytest.raises(TransientDeliveryError, match="no answer"):
            asyncio.run(work())


def test_secrets_never_reach_the_log(mailbox: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    mailbox.append(message("logged"))
    items = run(lambda s: read_all(s, Cursor()), mailbox.account())
    assert subjects(items) == ["logged"]
    assert "LOGIN" in caplog.text  # the session was logged, down to its commands
    assert PASSWORD not in caplog.text
