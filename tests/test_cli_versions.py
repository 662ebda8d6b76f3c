"""``postroom correspondence versions|diff|restore``, who ``postroom apply`` saves as, and
``postroom outbox show`` naming the version an email was rendered from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.cli.common import usage_problem
from postroom.correspondence import versions
from tests.apikit import client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.test_cases import CLASS
from tests.test_correspondence_versions import CHANGED, PARAGRAPH, with_created_html

Cli = tuple[CliRunner, list[str], Postroom, Path]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("LOGNAME", "clerk")  # getpass.getuser() reads it first
    with Postroom(make_settings(url)) as pr:
        yield CliRunner(), ["--database-url", url], pr, tmp_path


def write(tmp: Path, html: str) -> str:
    path = tmp / "records.yaml"
    path.write_text(yaml.safe_dump(with_created_html(html)))
    return str(path)


def test_apply_saves_as_the_os_user_and_versions_lists_them(cli: Cli) -> None:
    runner, db, pr, tmp = cli
    done = runner.invoke(app, [*db, "apply", write(tmp, PARAGRAPH)])
    assert done.exit_code == 0, done.output
    first = pr.cases.create(CLASS, operator="alice")
    assert runner.invoke(app, [*db, "apply", write(tmp, CHANGED)]).exit_code == 0

    listed = runner.invoke(app, [*db, "correspondence", "versions", "Created"])
    assert listed.exit_code == 0, listed.output
    assert "2 (current)" in listed.output
    assert listed.output.count("cli:clerk") == 2

    as_json = runner.invoke(app, [*db, "correspondence", "versions", "Created", "--json"])
    with client(pr) as c:
        api = c.get("/api/v1/correspondence/Created/versions", headers=issue_tokens(pr).admin)
    assert json.loads(as_json.output) == api.json()
    assert [(v["number"], v["emails"]) for v in api.json()["versions"]] == [(2, 0), (1, 1)]

    shown = runner.invoke(app, [*db, "outbox", "show", str(pr.outbox()[0].id)])
    assert shown.exit_code == 0, shown.output
    assert "template: Created version 1, in en" in shown.output
    as_json = runner.invoke(app, [*db, "outbox", "show", str(pr.outbox()[0].id), "--json"])
    assert json.loads(as_json.output)["correspondence_version"] == 1
    assert pr.outbox()[0].case_id == first.id


def test_diff_prints_a_unified_diff_and_restore_saves_a_new_version(cli: Cli) -> None:
    runner, db, pr, tmp = cli
    runner.invoke(app, [*db, "apply", write(tmp, PARAGRAPH)])
    runner.invoke(app, [*db, "apply", write(tmp, CHANGED)])

    shown = runner.invoke(app, [*db, "correspondence", "diff", "Created", "1"])
    assert shown.exit_code == 0, shown.output
    assert "--- Created version 1 html" in shown.output
    assert "+++ Created version 2 html" in shown.output
    assert f"-{PARAGRAPH}" in shown.output
    assert f"+{CHANGED}" in shown.output
    same = runner.invoke(app, [*db, "correspondence", "diff", "Created", "2", "2"])
    assert "versions 2 and 2 of Created are the same" in same.output
    as_json = runner.invoke(app, [*db, "correspondence", "diff", "Created", "1", "--json"])
    assert json.loads(as_json.output)["from"] == 1

    restored = runner.invoke(app, [*db, "correspondence", "restore", "Created", "1"])
    assert restored.exit_code == 0, restored.output
    assert "version 1 restored as version 3 (updated)" in restored.output
    again = runner.invoke(app, [*db, "correspondence", "restore", "Created", "3"])
    assert "unchanged" in again.output
    with pr.engine.connect() as conn:
        latest = versions.history(conn, "Created").versions[0]
    assert (latest.number, latest.saved_by, latest.note) == (
        3,
        "cli:clerk",
        "restored from version 1",
    )


def test_unknown_names_and_numbers_are_one_line_errors(cli: Cli) -> None:
    runner, db, _, tmp = cli
    runner.invoke(app, [*db, "apply", write(tmp, PARAGRAPH)])
    for args, message in (
        (["versions", "Nope"], "no correspondence named 'Nope'"),
        (["diff", "Created", "1", "9"], "correspondence 'Created' has no version 9"),
        (["restore", "Created", "9"], "correspondence 'Created' has no version 9"),
    ):
        result = runner.invoke(app, [*db, "correspondence", *args])
        assert result.exit_code == 3, result.output
        assert f"error: {message}" in result.output
        assert "Traceback" not in result.output
    bad = runner.invoke(app, [*db, "correspondence", "diff", "Created", "0"])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output


def test_diff_and_review_arguments_are_named_as_help_shows_them(cli: Cli) -> None:
    runner, db, _, _ = cli
    for args, name in (
        (["correspondence", "diff", "Created", "0"], "FROM"),
        (["correspondence", "diff", "Created", "1", "x"], "TO"),
        (["reviews", "show", "0"], "ID"),
        (["reviews", "approve", "x"], "ID"),
    ):
        done = runner.invoke(app, [*db, *args], standalone_mode=False)
        assert done.exception is not None, done.output
        assert usage_problem(done.exception).startswith(f"{name}: "), usage_problem(done.exception)
    helped = runner.invoke(app, ["reviews", "approve", "--help"])
    assert "review_id" not in helped.output
    assert "ID" in helped.output
    diff_help = runner.invoke(app, ["correspondence", "diff", "--help"])
    assert "FROM" in diff_help.output
    assert "OLD" not in diff_help.output
