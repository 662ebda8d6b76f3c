"""Record commands: list/show --json (the API's views), delete with the API's refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom import Postroom, catalog
from postroom.cli import app
from postroom.errors import NotFoundError
from tests.apikit import client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.test_record_kinds import (
    KEYSTORE_PASSWORD,
    PROFILE_SECRET,
    REFUSALS,
    apply_records,
)

# The documented keys of each record's --json view (docs: CLI and REST API).
KEYS = {
    "accounts": {"name", "protocol", "address", "password_set", "auth_profile", "warnings"},
    "auth-profiles": {"name", "client_id", "client_secret_set", "tenant_id", "scope"},
    "keystores": {"name", "kind", "content_set", "password_set", "certificate", "warnings"},
    "operators": {"id", "name", "email", "reports_to"},
    "correspondence": {"name", "subject", "html", "text"},
    "case-types": {"class", "class_group", "label", "id_prefix", "parties", "steps"},
    "webhooks": {"name", "url", "events", "secret_set", "enabled"},
}
KEYED = {"accounts": "Graph", "auth-profiles": "entra", "keystores": "Sign",
         "operators": "bob", "correspondence": "Letter", "case-types": "A-B-D",
         "webhooks": "crm"}  # fmt: skip


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CliRunner, list[str], Postroom]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    with Postroom(make_settings(url)) as pr:
        apply_records(pr)
        yield CliRunner(), ["--database-url", url], pr


def test_every_list_and_show_prints_the_api_view_as_json(
    cli: tuple[CliRunner, list[str], Postroom],
) -> None:
    runner, db, pr = cli
    tokens = issue_tokens(pr)
    with client(pr) as c:
        for kind in catalog.KINDS:
            listed = runner.invoke(app, [*db, kind.command, "list", "--json"])
            assert listed.exit_code == 0, listed.output
            assert PROFILE_SECRET not in listed.output
            assert KEYSTORE_PASSWORD not in listed.output
            views = json.loads(listed.output)
            assert views == c.get(f"/api/v1/{kind.slug}", headers=tokens.admin).json()
            assert views, kind.slug
            for view in views:
                assert KEYS[kind.slug] <= set(view), kind.slug
            key = KEYED[kind.slug]
            shown = runner.invoke(app, [*db, kind.command, "show", key, "--json"])
            assert shown.exit_code == 0, shown.output
            one = json.loads(shown.output)
            assert one == c.get(f"/api/v1/{kind.slug}/{key}", headers=tokens.admin).json()
            assert one[kind.key] == key


def test_tables_show_whole_ids(cli: tuple[CliRunner, list[str], Postroom]) -> None:
    runner, db, _ = cli
    for kind in catalog.KINDS:
        listed = runner.invoke(app, [*db, kind.command, "list"])
        assert listed.exit_code == 0, listed.output
        assert KEYED[kind.slug] in listed.output
        shown = runner.invoke(app, [*db, kind.command, "show", KEYED[kind.slug]])
        assert shown.exit_code == 0, shown.output
        assert PROFILE_SECRET not in shown.output


@pytest.mark.parametrize(("kind", "key", "reason"), REFUSALS)
def test_delete_refuses_what_is_in_use_as_the_api_does(
    cli: tuple[CliRunner, list[str], Postroom], kind: catalog.RecordKind, key: str, reason: str
) -> None:
    runner, db, pr = cli
    result = runner.invoke(app, [*db, kind.command, "delete", key])
    assert result.exit_code == 4
    assert result.output.strip() == f"error: {reason}"
    catalog.record(pr, kind, key)


def test_delete_removes_an_unused_record_of_each_type(
    cli: tuple[CliRunner, list[str], Postroom],
) -> None:
    runner, db, pr = cli
    for kind, key in [
        (catalog.ACCOUNTS, "Spare"),
        (catalog.AUTH_PROFILES, "unused"),
        (catalog.OPERATORS, "frank"),
        (catalog.CORRESPONDENCE, "Unused letter"),
        (catalog.CASE_TYPES, "A-B-D"),
        (catalog.ACCOUNTS, "Graph"),
        (catalog.KEYSTORES, "Sign"),
    ]:
        result = runner.invoke(app, [*db, kind.command, "delete", key])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"{kind.name} {key} deleted"
        with pytest.raises(NotFoundError):
            catalog.record(pr, kind, key)
    missing = runner.invoke(app, [*db, "operators", "delete", "frank"])
    assert missing.exit_code == 3
    assert missing.output.strip() == "error: no operator with id 'frank'"
