"""Case data declared on the case type: the model, every path that creates a case, apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cases import CaseType, FieldType
from postroom.cases.fields import CaseField, sample_data, validate_data
from postroom.cases.samples import sample_case
from postroom.cases.store import CaseQuery, CaseSort, search_cases
from postroom.cli import app
from postroom.errors import ConfigurationError, InvalidFieldsError
from tests.apikit import PREFIX, client, issue_tokens
from tests.conftest import TEST_KEY

CLASS = "MyOrg-Loans-Work-Loan"
FIELDS: list[dict[str, Any]] = [
    {"name": "applicant", "label": "Applicant", "required": True, "help": "Full name"},
    {"name": "amount", "type": "money", "required": True},
    {"name": "term_months", "type": "number", "default": 240},
    {"name": "start", "type": "date"},
    {"name": "customer_email", "type": "email"},
    {"name": "currency", "type": "choice", "options": ["EUR", "USD"], "default": "EUR"},
]


def case_type(**changes: Any) -> dict[str, Any]:
    return {
        "class": CLASS,
        "class_group": "MyOrg-Loans-Work",
        "label": "Loan",
        "id_prefix": "L-",
        "parties": {"Customer": "data.customer_email"},
        "fields": FIELDS,
        **changes,
    }


def records(**changes: Any) -> dict[str, Any]:
    return {
        "operators": [{"id": "alice", "name": "Alice", "email": "alice@example.com"}],
        "accounts": [
            {"name": "Default", "address": "a@example.com", "host": "127.0.0.1",
             "port": 2525, "security": "none"}
        ],
        "case_types": [case_type(**changes)],
    }  # fmt: skip


GOOD = {"applicant": "Jane Doe", "amount": "250000.50", "customer_email": "jane@example.org"}


# --- the model ----------------------------------------------------------------------


def test_fields_are_typed_and_defaults_fit_their_type() -> None:
    ct = CaseType.model_validate(case_type())
    assert [f.type for f in ct.fields] == [
        FieldType.TEXT, FieldType.MONEY, FieldType.NUMBER,
        FieldType.DATE, FieldType.EMAIL, FieldType.CHOICE,
    ]  # fmt: skip
    assert CaseField(name="d", type=FieldType.DATE, default=" 2026-03-01 ").default == "2026-03-01"
    assert CaseField(name="n", type=FieldType.NUMBER, default="12").default == 12


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([{"name": "a"}, {"name": "a"}], "declared twice"),
        ([{"name": "two words"}], "must be an identifier"),
        ([{"name": "a-b"}], "must be an identifier"),
        ([{"name": "c", "type": "choice"}], "a choice needs options"),
        ([{"name": "c", "type": "choice", "options": ["x", "x"]}], "options must be unique"),
        ([{"name": "t", "options": ["x"]}], "only a choice has options"),
        ([{"name": "n", "type": "number", "default": "many"}], "default must be a number"),
        ([{"name": "d", "type": "date", "default": "01/02/2026"}], "default must be a date"),
        ([{"name": "e", "type": "email", "default": "nobody"}], "default is not a valid email"),
        ([{"name": "c", "type": "choice", "options": ["x"], "default": "y"}], "must be one of"),
        ([{"name": "m", "type": "money", "default": "1.005"}], "more than 2 decimal places"),
        ([{"name": "t", "type": "colour"}], "type"),
        ([{"name": "t", "size": 3}], "Extra inputs"),
    ],
)
def test_bad_field_declarations_are_refused(fields: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        CaseType.model_validate(case_type(fields=fields))


def test_validate_data_types_and_defaults() -> None:
    ct = CaseType.model_validate(case_type())
    data = validate_data(ct.fields, {**GOOD, "start": "2026-05-01", "term_months": "120"})
    assert data == {
        "applicant": "Jane Doe",
        "amount": 250000.5,
        "term_months": 120,
        "start": "2026-05-01",
        "customer_email": "jane@example.org",
        "currency": "EUR",
    }
    # Whole amounts are integers; a number typed on the command line suits a text field.
    assert validate_data(ct.fields, {"applicant": 7, "amount": "1200.00"})["amount"] == 1200
    assert validate_data(ct.fields, {"applicant": 7, "amount": 1})["applicant"] == "7"


def test_a_type_without_fields_takes_any_data() -> None:
    assert validate_data([], {"anything": [1, 2], "x": "y"}) == {"anything": [1, 2], "x": "y"}


def test_sample_data_is_realistic_and_uses_defaults() -> None:
    ct = CaseType.model_validate(case_type())
    sample = sample_data(ct)
    assert sample["applicant"] == "Jane Doe"
    assert sample["term_months"] == 240
    assert sample["currency"] == "EUR"
    assert "@" in sample["customer_email"]
    assert validate_data(ct.fields, sample) == sample  # a sample is valid data
    case = sample_case(ct, reads={"undeclared"})
    assert case.id == "L-1001"
    assert case.data["undeclared"] == "Sample undeclared"
    assert {p.role: p.address for p in case.parties} == {"Customer": sample["customer_email"]}


# --- the service, through Python ------------------------------------------------------


def test_every_violation_is_a_field_issue(postroom: Postroom) -> None:
    postroom.apply(records())
    bad = {
        "amount": "12.345",
        "term_months": "many",
        "start": "2026-02-30",
        "customer_email": "not an address",
        "currency": "GBP",
        "colour": "blue",
    }
    with pytest.raises(InvalidFieldsError) as caught:
        postroom.cases.create(CLASS, data=bad)
    issues = {i.field: i.message for i in caught.value.issues}
    assert set(issues) == {
        "data.applicant", "data.amount", "data.term_months", "data.start",
        "data.customer_email", "data.currency", "data.colour",
    }  # fmt: skip
    assert issues["data.applicant"] == "is required"
    assert "2 decimal places" in issues["data.amount"]
    assert "number" in issues["data.term_months"]
    assert "YYYY-MM-DD" in issues["data.start"]
    assert "email address" in issues["data.customer_email"]
    assert issues["data.currency"] == "must be one of: EUR, USD"
    assert "its fields: applicant, amount" in issues["data.colour"]
    assert isinstance(caught.value, ConfigurationError)
    with postroom.engine.connect() as conn:
        assert search_cases(conn, CaseQuery()).total == 0  # nothing was created


def test_valid_data_is_stored_typed(postroom: Postroom) -> None:
    postroom.apply(records())
    case = postroom.cases.create(CLASS, data=GOOD, operator="alice")
    assert case.data["amount"] == 250000.5
    assert case.data["currency"] == "EUR"
    assert {p.role: p.address for p in case.parties} == {"Customer": "jane@example.org"}


def test_case_types_without_fields_keep_working(postroom: Postroom) -> None:
    postroom.apply(records(fields=[]))
    case = postroom.cases.create(CLASS, data={"whatever": "goes", "n": 1})
    assert case.data == {"whatever": "goes", "n": 1}


def test_fields_survive_the_database(postroom: Postroom) -> None:
    postroom.apply(records())
    with postroom.engine.connect() as conn:
        stored = postroom.case_type_store.get(conn, CLASS)
    assert stored == CaseType.model_validate(case_type())
    assert postroom.apply(records()).count("unchanged") == 3


# --- the command line ---------------------------------------------------------------


def test_cli_create_checks_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_SECRET_KEY", TEST_KEY)
    runner, db = CliRunner(), ["--database-url", f"sqlite:///{tmp_path / 'cli.db'}"]
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(records()))
    assert runner.invoke(app, [*db, "apply", str(tmp_path / "r.yaml")]).exit_code == 0

    result = runner.invoke(
        app, [*db, "cases", "create", CLASS, "--data", "amount=12.345", "--data", "currency=GBP"]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "data.applicant: is required" in result.output
    assert "data.currency: must be one of: EUR, USD" in result.output
    assert len(result.output.strip().splitlines()) == 1

    result = runner.invoke(
        app,
        [*db, "cases", "create", CLASS, "--data", "applicant=Jo", "--data", "amount=99.9",
         "--data", "start=2026-07-01", "--data", "term_months=12"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "L-1" in result.output


# --- the API ------------------------------------------------------------------------


def test_api_answers_each_violation_as_a_field_error(postroom: Postroom) -> None:
    postroom.apply(records())
    tokens = issue_tokens(postroom)
    api = client(postroom)
    bad = {"amount": True, "term_months": "x", "start": "tomorrow", "customer_email": "@",
           "currency": 1, "typo": 1}  # fmt: skip
    got = api.post(f"{PREFIX}/cases", json={"case_type": CLASS, "data": bad}, headers=tokens.send)
    assert got.status_code == 422, got.text
    fields = {e["field"]: e["message"] for e in got.json()["errors"]}
    assert set(fields) == {
        "body.data.applicant", "body.data.amount", "body.data.term_months", "body.data.start",
        "body.data.customer_email", "body.data.currency", "body.data.typo",
    }  # fmt: skip
    assert fields["body.data.applicant"] == "is required"

    good = {"case_type": CLASS, "data": {**GOOD, "amount": 1000}}
    made = api.post(f"{PREFIX}/cases", json=good, headers=tokens.send)
    assert made.status_code == 201, made.text
    assert made.json()["data"]["currency"] == "EUR"


def test_api_case_types_carry_their_fields(postroom: Postroom) -> None:
    tokens = issue_tokens(postroom)
    api = client(postroom)
    postroom.apply(records())
    got = api.get(f"{PREFIX}/case-types/{CLASS}", headers=tokens.admin)
    assert got.status_code == 200, got.text
    assert [f["name"] for f in got.json()["fields"]][:2] == ["applicant", "amount"]


# --- apply's warnings ---------------------------------------------------------------


def test_apply_warns_about_case_data_no_field_declares(postroom: Postroom) -> None:
    config = records(
        parties={"Customer": "data.customer_mail"},
        steps=[
            {
                "name": "Welcome",
                "on": "created",
                "to": [{"party": "Customer"}, {"field": "broker_email"}],
                "correspondence": "Welcome",
            },
            {
                "name": "Done",
                "on": {"status": "Done"},
                "to": [{"address": "x@example.com"}],
                "subject": "{{ case.data['reference'] }} done",
                "body": "{# case.data.in_a_comment #}<p>{{ 'case.data.in_a_string' }}</p>",
            },
        ],
    )
    config["correspondence"] = [
        {"name": "Footer", "html": "<p>{{ case['data'].branch }}</p>"},
        {
            "name": "Welcome",
            "subject": "Loan for {{ case.data.applicant }}",
            "html": "<p>{{ case.data.amount }} {{ case.data.rate }}</p>{% include 'Footer' %}",
        },
    ]
    report = postroom.apply(config)
    found = "\n".join(report.warnings)
    for key in ("customer_mail", "broker_email", "reference", "rate", "branch"):
        assert f"case.data.{key}," in found, key
    for declared in ("applicant", "amount", "in_a_comment", "in_a_string"):
        assert f"case.data.{declared}," not in found
    assert "party Customer" in found
    assert "step Welcome (correspondence Welcome) reads case.data.branch" in found


def test_apply_does_not_warn_for_types_without_fields(postroom: Postroom) -> None:
    config = records(
        fields=[],
        steps=[{"on": "created", "to": [{"field": "broker"}], "subject": "{{ case.data.x }}",
                "body": "b"}],
    )  # fmt: skip
    assert not [w for w in postroom.apply(config).warnings if "case.data" in w]


# --- the list of cases ----------------------------------------------------------------


def test_cases_are_searched_sorted_and_paged(postroom: Postroom) -> None:
    postroom.apply(records())
    for i in range(7):
        email = f"c{i}@example.org" if i != 3 else "needle@example.net"
        postroom.cases.create(CLASS, data={**GOOD, "customer_email": email})
    postroom.cases.set_status("L-5", "Done")
    with postroom.engine.connect() as conn:
        page = search_cases(conn, CaseQuery(page_size=3, page=2))
        assert (page.total, page.pages) == (7, 3)
        assert [c.id for c in page.cases] == ["L-4", "L-3", "L-2"]
        assert [c.id for c in search_cases(conn, CaseQuery(text="NEEDLE")).cases] == ["L-4"]
        assert [c.id for c in search_cases(conn, CaseQuery(text="done")).cases] == ["L-5"]
        assert search_cases(conn, CaseQuery(text="loan")).total == 7  # the type
        assert search_cases(conn, CaseQuery(text="%")).total == 0  # a wildcard matches itself
        by_status = search_cases(conn, CaseQuery(sort=CaseSort.STATUS, descending=False))
        assert by_status.cases[-1].id == "L-7"  # Done, then New by id
        assert search_cases(conn, CaseQuery(page=99, page_size=5)).page == 2
