"""Reading a mailbox folder through Microsoft Graph: the real client against the double."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from postroom import Postroom
from postroom.accounts.models import EmailAccount
from postroom.auth import TokenCache
from postroom.auth.models import AuthProfile
from postroom.db import tables
from postroom.errors import (
    ConfigurationError,
    CredentialsRejectedError,
    ThrottledError,
)
from postroom.inbound.graph import GraphSource
from postroom.inbound.graph_check import graph_inbound_steps
from postroom.inbound.listener import ListenerConfig, MailboxListener, PollReport
from postroom.inbound.models import Cursor, FetchedMessage, MailboxRef
from postroom.transports.graph import MAX_RETRY_AFTER
from tests.conftest import case_type_with, make_settings
from tests.fake_microsoft import CLIENT_ID, CLIENT_SECRET, MAILBOX, FakeMicrosoft, microsoft_server
from tests.graphkit import graph_postroom, graph_records
from tests.inboundkit import KeyIngest, KeyStore

HOSTS = {"127.0.0.1"}


@pytest.fixture
def ms() -> Iterator[FakeMicrosoft]:
    with microsoft_server() as fake:
        fake.apps[CLIENT_ID].roles = ["Mail.Send", "Mail.ReadWrite"]
        yield fake


def profile(ms: FakeMicrosoft) -> AuthProfile:
    return AuthProfile.model_validate(
        {
            "name": "O365",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "token_endpoint": ms.token_endpoint,
        }
    )


def account(ms: FakeMicrosoft, **inbound: Any) -> EmailAccount:
    return EmailAccount.model_validate(
        {
            "name": "Default",
            "protocol": "graph",
            "address": MAILBOX,
            "auth_profile": "O365",
            "graph_url": ms.url,
            "inbound": {"protocol": "graph", **inbound},
        }
    )


def source(ms: FakeMicrosoft, tokens: TokenCache | None = None, **inbound: Any) -> GraphSource:
    return GraphSource(
        account(ms, **inbound),
        profile(ms),
        tokens=tokens or TokenCache(allowed_hosts=HOSTS, timeout=10.0),
        allowed_hosts=HOSTS,
        timeout=10.0,
        max_inline_wait=5.0,
    )


def mail(n: int, size: int = 0) -> bytes:
    body = "x" * size if size else f"Reply number {n}."
    return (
        f"From: Customer <customer@example.org>\r\nTo: {MAILBOX}\r\n"
        f"Subject: Reply {n}\r\nMessage-ID: <reply-{n}@example.org>\r\n\r\n{body}\r\n"
    ).encode()


def deliver(ms: FakeMicrosoft, count: int, *, start: int = 0) -> list[str]:
    return [ms.mail.deliver(MAILBOX, mail(i)) for i in range(start, start + count)]


async def read(
    src: GraphSource, cursor: Cursor, *, batch: int, stop_after: int | None = None
) -> tuple[list[list[FetchedMessage]], Cursor]:
    """Fetch as the listener does: the cursor advances with each message that carries one."""
    batches: list[list[FetchedMessage]] = []
    async for chunk in src.fetch(cursor, batch=batch):
        batches.append(chunk)
        for item in chunk:
            if item.cursor is not None:
                cursor = item.cursor
        if stop_after is not None and len(batches) >= stop_after:
            break
    return batches, cursor


def keys(batches: list[list[FetchedMessage]]) -> list[str]:
    return [item.key for chunk in batches for item in chunk]


def delta_requests(ms: FakeMicrosoft) -> list[tuple[str, int]]:
    return [(path, status) for _, method, path, status in ms.requests if "/delta" in path]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def opened(src: GraphSource) -> GraphSource:
    await src.open()
    return src


def test_folder_is_read_across_pages_oldest_first(ms: FakeMicrosoft) -> None:
    ids = deliver(ms, 7)

    async def go() -> tuple[list[list[FetchedMessage]], Cursor]:
        src = await opened(source(ms))
        try:
            return await read(src, Cursor(), batch=3)
        finally:
            await src.close()

    batches, cursor = run(go())
    assert [len(b) for b in batches] == [3, 3, 1]
    assert keys(batches) == ids
    assert [item.raw for chunk in batches for item in chunk] == [mail(i) for i in range(7)]
    # Only each page's last message carries the link after its page.
    assert [[i.cursor is not None for i in b] for b in batches] == [
        [False, False, True],
        [False, False, True],
        [True],
    ]
    assert cursor.validity is None
    assert cursor.position is not None
    assert "$deltatoken=" in cursor.position
    requests = delta_requests(ms)
    assert len(requests) == 3
    assert all(status == 200 for _, status in requests)
    first = requests[0][0]
    assert "/mailFolders/inbox/messages/delta" in first
    assert "changeType=created" in first
    assert "$select=id,internetMessageId" in first


def test_a_delta_link_reads_only_what_arrived_since(ms: FakeMicrosoft) -> None:
    first = deliver(ms, 4)

    async def go() -> tuple[list[str], list[str], list[str]]:
        src = await opened(source(ms))
        try:
            batches, cursor = await read(src, Cursor(), batch=10)
            await src.settle(keys(batches))  # marked read: an update, not a new message
            later = deliver(ms, 2, start=10)
            again, cursor = await read(src, cursor, batch=10)
            nothing, _ = await read(src, cursor, batch=10)
            return keys(batches), keys(again), later + keys(nothing)
        finally:
            await src.close()

    read_first, read_again, rest = run(go())
    assert read_first == first
    assert read_again == rest  # the two new ones; our own isRead changes never come back
    assert all(m.is_read for m in ms.mail.in_folder(MAILBOX) if m.id in first)
    assert ms.mail.downloads.count(first[0]) == 1


def test_a_crash_mid_page_rereads_at_most_that_page(ms: FakeMicrosoft) -> None:
    ids = deliver(ms, 8)

    async def go() -> tuple[list[str], list[str], list[str]]:
        src = await opened(source(ms))
        try:
            # The first page is ingested (its cursor saved), then the agent dies.
            done, cursor = await read(src, Cursor(), batch=3, stop_after=1)
            # Next time, two of the second page are ingested before the next crash:
            # neither carries a cursor, so the position stays after the first page.
            partial: list[str] = []
            async for chunk in src.fetch(cursor, batch=3):
                partial = [item.key for item in chunk[:2]]
                assert all(item.cursor is None for item in chunk[:2])
                break
            rest, _ = await read(src, cursor, batch=3)
            return keys(done), partial, keys(rest)
        finally:
            await src.close()

    done, partial, rest = run(go())
    assert done == ids[:3]
    assert partial == ids[3:5]
    assert rest == ids[3:]  # re-read: only the page that was in progress (ingest dedupes)


def test_an_expired_delta_link_reads_the_folder_again(ms: FakeMicrosoft) -> None:
    ids = deliver(ms, 5)

    async def go() -> tuple[list[str], list[str], list[str]]:
        src = await opened(source(ms))
        try:
            batches, cursor = await read(src, Cursor(), batch=2)
            ms.mail.expire_sync_states()  # Graph forgot the token: 410
            again, cursor = await read(src, cursor, batch=2)
            ms.script(
                "delta",
                (410, {"Content-Type": "application/json"},
                 b'{"error": {"code": "resyncRequired", "message": "Resync required"}}'),
            )  # fmt: skip
            third, _ = await read(src, cursor, batch=2)
            return keys(batches), keys(again), keys(third)
        finally:
            await src.close()

    first, again, third = run(go())
    assert first == ids
    assert again == ids  # the same keys: the listener's ingest recognises them
    assert third == ids
    assert [s for _, s in delta_requests(ms)].count(410) == 2


def test_removed_and_vanished_entries_are_skipped(ms: FakeMicrosoft) -> None:
    [kept] = deliver(ms, 1)
    page = (
        '{"value": [{"id": "gone-1", "@removed": {"reason": "deleted"}}, '
        f'{{"id": "{kept}", "isRead": false}}, {{"id": "AAMkMvanished", "isRead": false}}], '
        f'"@odata.deltaLink": "{ms.url}/v1.0/users/{MAILBOX}/mailFolders/inbox/messages/'
        'delta?$deltatoken=abc"}'
    )
    ms.script("delta", (200, {"Content-Type": "application/json"}, page.encode()))

    async def go() -> tuple[list[str], Cursor]:
        src = await opened(source(ms))
        try:
            batches, cursor = await read(src, Cursor(), batch=5)
            return keys(batches), cursor
        finally:
            await src.close()

    # Removed entries and a message gone before its download are not handed over; the
    # link after the page goes with the last message that is.
    read_keys, cursor = run(go())
    assert read_keys == [kept]
    assert cursor.position is not None
    assert cursor.position.endswith("$deltatoken=abc")


def test_throttling_is_waited_out_as_asked_within_bounds(ms: FakeMicrosoft) -> None:
    deliver(ms, 2)
    ms.script("delta", (429, {"Retry-After": "1"}, b""))

    async def go() -> tuple[list[str], ThrottledError]:
        src = await opened(source(ms))
        try:
            batches, _ = await read(src, Cursor(), batch=5)
            ms.script("delta", (503, {"Retry-After": "100000"}, b""))
            with pytest.raises(ThrottledError) as caught:
                await read(src, Cursor(), batch=5)
            return keys(batches), caught.value
        finally:
            await src.close()

    started = time.monotonic()
    read_keys, throttled = run(go())
    assert len(read_keys) == 2
    stamps = [t for t, _, path, _ in ms.requests if "/delta" in path]
    assert stamps[1] - stamps[0] >= 1.0  # Retry-After: 1 was honoured
    assert throttled.retry_after == MAX_RETRY_AFTER  # bounded, and not waited inline
    assert time.monotonic() - started < 30


def test_a_rejected_token_is_refreshed_once(ms: FakeMicrosoft) -> None:
    deliver(ms, 1)
    tokens = TokenCache(allowed_hosts=HOSTS, timeout=10.0)

    async def go() -> tuple[int, CredentialsRejectedError]:
        src = await opened(source(ms, tokens))
        try:
            await read(src, Cursor(), batch=5)
            ms.expire_all_tokens()  # revoked early: Graph answers 401
            batches, _ = await read(src, Cursor(), batch=5)
            body = b'{"error": {"code": "InvalidAuthenticationToken", "message": "no"}}'
            refused = (401, {"Content-Type": "application/json"}, body)
            ms.script("delta", refused, refused)
            with pytest.raises(CredentialsRejectedError) as caught:
                await read(src, Cursor(), batch=5)
            return len(keys(batches)), caught.value
        finally:
            await src.close()

    count, refused = run(go())
    assert count == 1
    assert ms.token_requests == 3  # the first, one after the revocation, one after the 401
    assert "a fresh token was refused too" in str(refused)


def test_missing_permissions_are_explained(ms: FakeMicrosoft) -> None:
    [key] = deliver(ms, 1)

    async def go(roles: list[str], settle: bool) -> CredentialsRejectedError:
        ms.apps[CLIENT_ID].roles = roles
        src = await opened(source(ms))
        try:
            attempt = src.settle([key]) if settle else read(src, Cursor(), batch=5)
            with pytest.raises(CredentialsRejectedError) as caught:
                await attempt
            return caught.value
        finally:
            await src.close()

    unreadable = run(go(["Mail.Send"], settle=False))
    assert unreadable.code == 403
    assert "may not read this mailbox" in str(unreadable)
    assert "Mail.ReadWrite" in str(unreadable)
    read_only = run(go(["Mail.Read"], settle=True))
    assert "may read this mailbox but not change it" in str(read_only)
    assert "Mail.ReadWrite" in str(read_only)
    assert not ms.mail.in_folder(MAILBOX)[0].is_read


@pytest.mark.parametrize("after", ["seen", "move", "delete"])
def test_settling_is_idempotent(ms: FakeMicrosoft, after: str) -> None:
    target = ms.mail.add_folder(MAILBOX, "Processed")
    ids = deliver(ms, 3)
    inbound: dict[str, Any] = {"after": after}
    if after == "move":
        inbound["move_to"] = "Processed"

    async def go() -> None:
        src = await opened(source(ms, **inbound))
        try:
            await src.settle(ids[:2])
            await src.settle(ids[:2])  # again: already settled, not an error
        finally:
            await src.close()

    run(go())
    left = {m.id: m for m in ms.mail.in_folder(MAILBOX)}
    if after == "seen":
        assert [left[i].is_read for i in ids] == [True, True, False]
    else:
        assert set(left) == {ids[2]}
    moved = ms.mail.in_folder(MAILBOX, target)
    assert len(moved) == (2 if after == "move" else 0)
    assert sorted(a for a, _ in ms.mail.settled) == [after] * (4 if after == "seen" else 2)


def test_a_message_too_large_is_handed_over_without_its_bytes(ms: FakeMicrosoft) -> None:
    small = ms.mail.deliver(MAILBOX, mail(1))
    large = ms.mail.deliver(MAILBOX, mail(2, size=5000))

    async def go() -> list[FetchedMessage]:
        src = await opened(source(ms, max_message_bytes=1024))
        try:
            batches, _ = await read(src, Cursor(), batch=5)
            return [item for chunk in batches for item in chunk]
        finally:
            await src.close()

    first, second = run(go())
    assert (first.key, first.raw) == (small, mail(1))
    assert second.key == large
    assert second.raw is None
    assert second.size == len(mail(2, size=5000))


def test_folders_are_found_by_name_and_path(ms: FakeMicrosoft) -> None:
    inbox_id = next(f.id for k, f in ms.mail.box(MAILBOX).folders.items() if k == "inbox")
    replies = ms.mail.add_folder(MAILBOX, "Customer's replies", parent=inbox_id)
    [key] = [ms.mail.deliver(MAILBOX, mail(1), folder=replies)]
    deliver(ms, 2)  # in the inbox itself: not read

    async def go(folder: str) -> list[str]:
        src = await opened(source(ms, folder=folder))
        try:
            return keys((await read(src, Cursor(), batch=5))[0])
        finally:
            await src.close()

    assert run(go("Inbox/Customer's replies")) == [key]
    with pytest.raises(ConfigurationError, match="no folder 'Elsewhere'"):
        run(go("Elsewhere"))


def test_a_link_to_another_host_is_never_followed(ms: FakeMicrosoft) -> None:
    ids = deliver(ms, 2)
    elsewhere = "http://evil.example/v1.0/delta?$deltatoken=x"
    page = f'{{"value": [], "@odata.nextLink": "{elsewhere}"}}'.encode()

    async def go(cursor: Cursor) -> list[str]:
        src = await opened(source(ms))
        try:
            return keys((await read(src, cursor, batch=5))[0])
        finally:
            await src.close()

    # A stored position that is no delta link of this Graph (graph_url changed, or
    # written by IMAP) reads the folder again rather than sending the token there.
    assert run(go(Cursor(None, elsewhere))) == ids
    assert run(go(Cursor("17", "42"))) == ids
    ms.script("delta", (200, {"Content-Type": "application/json"}, page))
    with pytest.raises(ConfigurationError, match="outside"):
        run(go(Cursor()))
    assert all("evil" not in path for path, _ in delta_requests(ms))


def test_wait_ends_at_its_timeout_or_when_stopped(ms: FakeMicrosoft) -> None:
    async def go() -> tuple[float, float]:
        src = source(ms)
        started = time.monotonic()
        await src.wait(0.2)
        timed = time.monotonic() - started
        waiting = asyncio.create_task(src.wait(300))
        await asyncio.sleep(0)
        src.stop()
        started = time.monotonic()
        await asyncio.wait_for(waiting, timeout=10)
        return timed, time.monotonic() - started

    timed, stopped = run(go())
    assert timed >= 0.2
    assert stopped < 10


def steps_of(ms: FakeMicrosoft, **inbound: Any) -> list[tuple[str, bool, str, str]]:
    steps = run(
        graph_inbound_steps(
            account(ms, **inbound),
            profile(ms),
            tokens=TokenCache(allowed_hosts=HOSTS, timeout=10.0),
            allowed_hosts=HOSTS,
            timeout=10.0,
        )
    )
    return [(s.name, s.ok, s.detail, s.explanation) for s in steps]


def test_inbound_steps_pass_with_mail_readwrite(ms: FakeMicrosoft) -> None:
    deliver(ms, 2)
    ms.mail.add_folder(MAILBOX, "Done")
    steps = steps_of(ms, after="move", move_to="Done")
    assert [(n, ok) for n, ok, *_ in steps] == [("token", True), ("folder", True),
                                                ("permission", True)]  # fmt: skip
    assert "Inbox: 2 messages, 2 unread" in steps[1][2]
    assert "Mail.ReadWrite" in steps[2][2]


def test_inbound_steps_explain_what_is_missing(ms: FakeMicrosoft) -> None:
    ms.apps[CLIENT_ID].roles = ["Mail.Read"]
    name, ok, detail, explanation = steps_of(ms)[-1]
    assert (name, ok) == ("permission", False)
    assert "Mail.Read" in detail
    assert "not change it" in explanation

    ms.apps[CLIENT_ID].roles = ["Mail.Send"]
    name, ok, detail, explanation = steps_of(ms)[-1]
    assert (name, ok) == ("folder", False)
    assert "403" in detail
    assert "may not read this mailbox" in explanation

    ms.apps[CLIENT_ID].roles = ["Mail.ReadWrite"]
    name, ok, detail, explanation = steps_of(ms, folder="Nowhere")[-1]
    assert (name, ok) == ("folder", False)
    assert "no folder 'Nowhere'" in explanation

    ms.mailboxes = {}  # the mailbox is not in the tenant
    name, ok, detail, explanation = steps_of(ms)[-1]
    assert (name, ok) == ("folder", False)
    assert "ErrorInvalidUser" in explanation
    assert "check user_principal_name" in explanation

    ms.apps[CLIENT_ID].secret = "changed"
    name, ok, detail, explanation = steps_of(ms)[-1]
    assert (name, ok) == ("token", False)
    assert "secret" in explanation.lower()


def test_the_listener_takes_each_message_once_across_a_crash(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    """The real listener and cursor table, an ingest that dies at its fifth commit."""
    ids = deliver(ms, 7)
    commits = [0]

    def dies_at_the_fifth() -> None:
        commits[0] += 1
        if commits[0] == 5:
            raise RuntimeError("the agent was killed")

    with Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr:
        ingest = KeyIngest(pr.engine, before_commit=dies_at_the_fifth)
        listener = MailboxListener(
            engine=pr.engine,
            ref=MailboxRef("Default", "INBOX"),
            owner="agent-1",
            ingestor=ingest,
            store=KeyStore(),
            config=ListenerConfig(lease_seconds=30.0, batch=3),
            deliver=lambda ids: None,
        )

        async def one_round() -> PollReport:
            assert await listener.acquire()
            src = await opened(source(ms))
            try:
                return await listener.round(src)
            finally:
                await src.close()

        with pytest.raises(RuntimeError, match="killed"):
            run(one_round())
        report = run(one_round())
        again = run(one_round())
        with pr.engine.connect() as conn:
            t = tables.inbound_messages
            rows = conn.execute(select(t.c.source_key, t.c.server_state)).all()
    assert sorted(key for key, _ in rows) == sorted(ids)  # each once
    assert {state for _, state in rows} == {"done"}
    assert all(m.is_read for m in ms.mail.in_folder(MAILBOX))
    # The second round re-read only the page the crash cut short (one duplicate).
    assert (report.read, report.duplicates) == (4, 1)
    assert len(ms.mail.downloads) == 7 + 3
    assert again.read == 0


def test_a_reply_in_the_graph_mailbox_is_threaded_onto_its_case(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    step = {"on": "created", "to": [{"address": "owner@example.org"}]}
    step.update(subject="Case {{ case.id }}", body="<p>Your request.</p>")
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:
        pr.apply({**graph_records(ms, inbound={"protocol": "graph"}), **case_type_with(step)})
        case = pr.cases.create("A-B-C")
        asyncio.run(pr.agent().run(until_idle=True))
        [sent] = ms.sent
        reply = (
            f"From: Owner <owner@example.org>\r\nTo: {MAILBOX}\r\n"
            f"Subject: Re: Case {case.id}\r\nMessage-ID: <answer-1@example.org>\r\n"
            f"In-Reply-To: {sent.message['internetMessageId']}\r\n\r\nThank you.\r\n"
        ).encode()
        key = ms.mail.deliver(MAILBOX, reply)
        report = pr.poll_inbound("Default")
        again = pr.poll_inbound("Default")
        [received] = pr.received(case_id=case.id)
        conversation = [item.kind for item in pr.conversation(case.id)]
    assert (report.read, report.matched, report.settled) == (1, 1, 1)
    assert again.read == 0
    assert received.case_id == case.id
    assert received.message_id == "answer-1@example.org"
    assert conversation == ["sent", "received"]
    assert [m.is_read for m in ms.mail.in_folder(MAILBOX)] == [True]
    assert ms.mail.settled == [("seen", key)]


def test_the_account_test_includes_the_graph_inbound_steps(
    tmp_path: Path, ms: FakeMicrosoft
) -> None:
    ms.mail.deliver(MAILBOX, mail(1))
    records = graph_records(ms, inbound={"protocol": "graph", "folder": "INBOX"})
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:
        pr.apply(records)
        report = pr.test_account("Default")
    ms.apps[CLIENT_ID].roles = ["Mail.Send", "Mail.Read"]
    with graph_postroom(f"sqlite:///{tmp_path / 'p.db'}", ms) as pr:  # a new token cache
        pr.apply(records)
        refused = pr.test_account("Default")
    steps = {s.name: s for s in report.steps}
    assert [n for n in steps if n.startswith("inbound")] == [
        "inbound token",
        "inbound folder",
        "inbound permission",
    ]
    assert report.ok
    assert "1 messages, 1 unread" in steps["inbound folder"].detail
    [last] = [s for s in refused.steps if s.name == "inbound permission"]
    assert not last.ok
    assert "Mail.ReadWrite" in last.explanation
