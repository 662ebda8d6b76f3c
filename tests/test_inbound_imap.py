"""The IMAP source against a real Dovecot: cursors, resync, size limit, settle, IDLE, TLS."""

from __future__ import annotations

import pytest

from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture, message

pytestmark = pytest.mark.dovecot

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()


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
    assert mailbox.account().inbound is not None
