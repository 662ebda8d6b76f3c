"""``postroom inbound poll`` against a real Dovecot when the round fails half-way: what
was read and ingested is said before the one-line error, and the exit code is 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from tests.conftest import TEST_KEY, make_settings
from tests.dovecotkit import Mailbox, dovecot_fixture, mailbox_fixture, message

pytestmark = [pytest.mark.dovecot, pytest.mark.timeout(300)]

dovecot = dovecot_fixture()
mailbox = mailbox_fixture()


def run(url: str, *args: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    return CliRunner().invoke(app, ["-d", url, *args], env={"POSTROOM_SECRET_KEY": TEST_KEY})


def test_a_missing_move_to_folder_is_reported_after_the_counts(
    mailbox: Mailbox, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    with Postroom(make_settings(url)) as pr:
        pr.apply({"accounts": [mailbox.account_yaml("Desk", after="move", move_to="Handled")]})
    for n in range(3):
        mailbox.append(message(f"Question {n}", body="Please answer."))

    result = run(url, "inbound", "poll", "Desk")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert "read: 3" in lines
    assert "unmatched: 3" in lines
    assert "settled: 0" in lines
    [error] = [line for line in lines if line.startswith("error: ")]
    assert lines[-1] == error  # the counts first, then the one line that says what failed
    assert "Handled" in error
    assert "Traceback" not in result.output
    with Postroom(make_settings(url)) as pr:
        assert len(pr.received(unmatched=True)) == 3  # committed, whatever came after
    assert len(mailbox.uids()) == 3  # nothing was moved

    # Nothing new, the folder still missing: the leftovers cannot be settled either.
    again = run(url, "inbound", "poll", "Desk")
    assert again.exit_code == 2, again.output  # nothing read: the error alone, as before
    assert len(again.output.strip().splitlines()) == 1
    assert "Handled" in again.output
    mailbox.create_folder("Handled")
    fixed = run(url, "inbound", "poll", "Desk")
    assert fixed.exit_code == 0, fixed.output
    assert "settled: 3" in fixed.output.splitlines()
    assert mailbox.uids() == []
    assert len(mailbox.uids("Handled")) == 3
