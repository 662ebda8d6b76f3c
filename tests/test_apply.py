"""``apply``: YAML records, idempotent upserts, ${ENV} secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom import Postroom
from postroom.config.apply import write_records
from postroom.errors import ConfigurationError, ExistsError
from postroom.operators.models import Operator
from tests.conftest import case_type_with

EXAMPLE = Path(__file__).parent.parent / "examples" / "mortgage.yaml"


def test_example_applies_and_is_idempotent(
    sqlite_postroom: Postroom, tmp_path: Path, ca_pem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example points its truststore at the dev inbox CA; give it one.
    text = EXAMPLE.read_text().replace("../postroom-inbox/tls/ca.pem", "ca.pem")
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "mortgage.yaml").write_text(text)
    monkeypatch.setenv("POSTROOM_DEMO_SMTP_PASSWORD", "pw-example")
    monkeypatch.delenv("POSTROOM_DEMO_CA_FILE", raising=False)
    monkeypatch.delenv("POSTROOM_DEMO_SMTP_PORT", raising=False)

    first = sqlite_postroom.apply(tmp_path / "mortgage.yaml")
    assert first.count("created") == 7  # 2 operators, 2 accounts, 2 letters, 1 case type
    assert {k for k, *_ in first.changes} == {"operator", "account", "correspondence", "case type"}
    second = sqlite_postroom.apply(tmp_path / "mortgage.yaml")
    assert second.count("unchanged") == 7
    assert second.count("created") == second.count("updated") == 0

    monkeypatch.setenv("POSTROOM_DEMO_SMTP_PASSWORD", "pw-rotated")
    third = sqlite_postroom.apply(tmp_path / "mortgage.yaml")
    assert ("account", "MyOrg-Mortgage-Work", "updated") in third.changes
    account = sqlite_postroom.account("MyOrg-Mortgage-Work")
    assert account.password is not None
    assert account.password.get_secret_value() == "pw-rotated"


def test_steps_on_key_is_not_a_boolean(sqlite_postroom: Postroom, tmp_path: Path) -> None:
    # In YAML 1.1 `on:` would be the boolean True.
    (tmp_path / "c.yaml").write_text(
        """
correspondence:
  - {name: Hello, subject: "Hi", html: "<p>hi</p>"}
case_types:
  - class: A-B-C
    class_group: A-B
    id_prefix: C-
    steps:
      - on: created
        to: [{address: someone@example.com}]
        correspondence: Hello
"""
    )
    sqlite_postroom.apply(tmp_path / "c.yaml")
    with sqlite_postroom.engine.connect() as conn:
        [ct] = sqlite_postroom.case_type_store.list(conn)
    assert ct.steps[0].on.event == "created"


def test_missing_environment_variable(
    sqlite_postroom: Postroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    records = {
        "accounts": [
            {
                "name": "Default",
                "address": "a@example.com",
                "host": "h.example.com",
                "password": "${NOT_SET_ANYWHERE}",
            }
        ]
    }
    with pytest.raises(
        ConfigurationError, match=r"accounts\[0\] \(Default\).*NOT_SET_ANYWHERE is not set"
    ):
        sqlite_postroom.apply(records)


def test_plaintext_password_in_file_warns(sqlite_postroom: Postroom) -> None:
    records = {
        "accounts": [
            {
                "name": "Default",
                "address": "a@example.com",
                "host": "h.example.com",
                "password": "plain-in-file",
            }
        ]
    }
    report = sqlite_postroom.apply(records)
    assert any("prefer ${ENV_VAR}" in w for w in report.warnings)
    assert not any("plain-in-file" in w for w in report.warnings)


def test_a_bad_record_changes_nothing(sqlite_postroom: Postroom) -> None:
    records = {
        "operators": [{"id": "ok", "name": "Fine"}],
        "accounts": [{"name": "Default", "address": "not-an-address", "host": "h.example.com"}],
    }
    with pytest.raises(ConfigurationError, match=r"accounts\[0\] \(Default\): address"):
        sqlite_postroom.apply(records)
    with sqlite_postroom.engine.connect() as conn:
        assert sqlite_postroom.operator_store.list(conn) == []


def test_unknown_section_and_field(sqlite_postroom: Postroom) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown section.*known: operators"):
        sqlite_postroom.apply({"mailboxes": []})
    with pytest.raises(ConfigurationError, match="colour"):
        sqlite_postroom.apply({"operators": [{"id": "x", "name": "X", "colour": "red"}]})


def test_step_naming_a_missing_correspondence(sqlite_postroom: Postroom) -> None:
    records = case_type_with(
        {
            "on": "created",
            "to": [{"address": "x@example.com"}],
            "correspondence": "Nope",
        }
    )
    with pytest.raises(ConfigurationError, match="correspondence 'Nope', which does not exist"):
        sqlite_postroom.apply(records)


def test_step_naming_an_unknown_party(sqlite_postroom: Postroom) -> None:
    records = case_type_with(
        {"on": "created", "to": [{"party": "Ghost"}], "subject": "s", "body": "b"}
    )
    with pytest.raises(ConfigurationError, match="party 'Ghost' is not one of"):
        sqlite_postroom.apply(records)


def test_invalid_yaml_names_the_line(sqlite_postroom: Postroom, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("operators:\n  - id: a\n    name: [unclosed\n")
    with pytest.raises(ConfigurationError, match=r"bad.yaml line \d+: not valid YAML"):
        sqlite_postroom.apply(tmp_path / "bad.yaml")


def test_missing_file(sqlite_postroom: Postroom, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        sqlite_postroom.apply(tmp_path / "absent.yaml")


def test_files_referenced_relative_to_the_yaml(sqlite_postroom: Postroom, tmp_path: Path) -> None:
    (tmp_path / "letter.html").write_text("<p>from a file</p>")
    (tmp_path / "r.yaml").write_text(
        "correspondence:\n  - {name: Letter, subject: S, html_file: letter.html}\n"
    )
    sqlite_postroom.apply(tmp_path / "r.yaml")
    with sqlite_postroom.engine.connect() as conn:
        assert sqlite_postroom.correspondence_store.get(conn, "Letter").html == "<p>from a file</p>"


def test_creating_records_that_exist_writes_nothing(postroom: Postroom) -> None:
    # The check is made in the writing transaction: a record created by someone else
    # after a caller looked, and before it wrote, is refused rather than overwritten.
    first = Operator(id="carol", name="Carol")
    write_records(postroom, {"operators": [first]}, create=True)
    again = Operator(id="carol", name="Someone else")
    new = Operator(id="dave", name="Dave")
    with pytest.raises(ExistsError, match="operator carol exists already"):
        write_records(postroom, {"operators": [new, again]}, create=True)
    with postroom.engine.connect() as conn:
        stored = {o.id: o.name for o in postroom.operator_store.list(conn)}
    assert stored == {"carol": "Carol"}  # neither the new one nor the change was kept
    write_records(postroom, {"operators": [again]})  # without create: an update
    with postroom.engine.connect() as conn:
        assert [o.name for o in postroom.operator_store.list(conn)] == ["Someone else"]
