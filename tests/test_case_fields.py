"""Case data declared on the case type: the model, every path that creates a case, apply."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cases import CaseType, FieldType
from postroom.cases.fields import CaseField, coerce, sample_data, validate_data
from postroom.cases.samples import sample_case
from postroom.cases.store import CaseQuery, CaseSort, search_cases
from postroom.cli import app
from postroom.errors import ConfigurationError, InvalidFieldsError
from tests.apikit import PREFIX, client, issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.studiokit import log_in, mortgage_records, studio_client

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


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("12", 12), ("12.50", 12.5), (" 0012.10 ", 12.1), (1250.5, 1250.5), (1000.0, 1000),
     ("-3", -3), ("12.340", 12.34), ("9999999999999.99", 9999999999999.99)],
)  # fmt: skip
def test_money_is_a_number_of_cents(typed: Any, stored: Any) -> None:
    assert coerce(CaseField(name="m", type=FieldType.MONEY), typed) == stored


@pytest.mark.parametrize(
    ("typed", "message"),
    [("12.345", "more than 2 decimal places"), (0.1 + 0.2, "more than 2 decimal places"),
     ("1e3", "like 1250"), ("1,250.00", "like 1250"), ("10000000000000", "too large"),
     (float("inf"), "finite"), (True, "must be an amount")],
)  # fmt: skip
def test_money_refuses_what_is_not_an_amount(typed: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        coerce(CaseField(name="m", type=FieldType.MONEY), typed)


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


def test_apply_warns_when_an_address_comes_from_a_field_that_is_not_an_email(
    postroom: Postroom,
) -> None:
    config = records(
        parties={"Customer": "data.applicant"},
        steps=[{"name": "Hi", "on": "created", "to": [{"field": "amount"}], "subject": "s",
                "body": "b"}],
    )  # fmt: skip
    found = "\n".join(postroom.apply(config).warnings)
    assert "party Customer takes an address from field applicant, a text field" in found
    assert "step Hi takes an address from field amount, a money field" in found
    assert "takes an address" not in "\n".join(postroom.apply(records()).warnings)


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
        assert [c.id for c in page.items] == ["L-4", "L-3", "L-2"]
        assert [c.id for c in search_cases(conn, CaseQuery(text="NEEDLE")).items] == ["L-4"]
        assert [c.id for c in search_cases(conn, CaseQuery(text="done")).items] == ["L-5"]
        assert search_cases(conn, CaseQuery(text="loan")).total == 7  # the type
        assert search_cases(conn, CaseQuery(text="%")).total == 0  # a wildcard matches itself
        by_status = search_cases(conn, CaseQuery(sort=CaseSort.STATUS, descending=False))
        assert by_status.items[-1].id == "L-7"  # Done, then New by id
        assert search_cases(conn, CaseQuery(page=99, page_size=5)).page == 2


# --- the Studio -----------------------------------------------------------------------

MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[tuple[Postroom, TestClient, str]]:
    with Postroom(make_settings(f"sqlite:///{tmp_path / 'studio.db'}")) as pr:
        pr.apply(mortgage_records())
        pr.apply(
            {"accounts": [{"name": "Default", "address": "n@example.com", "host": "h.example"}]}
        )
        with studio_client(pr, inbox_dir=tmp_path / "inbox") as c:
            yield pr, c, log_in(c)


def notice_of(response: Any) -> tuple[str, str]:
    found = re.search(r'<p class="notice (\w+)"[^>]*>([^<]*)</p>', response.text)
    assert found is not None, "the page shows no notice"
    return found.group(1), found.group(2)


def test_studio_form_is_built_from_the_fields(studio: tuple[Postroom, TestClient, str]) -> None:
    _, c, _ = studio
    html = c.get(f"/cases?case_type={MORTGAGE}").text
    assert '<input id="f-data-applicant" name="data.applicant" type="text" value=""' in html
    assert 'id="f-data-amount" name="data.amount" type="number" value="" step="0.01"' in html
    assert 'name="data.customer_email" type="email"' in html
    assert '<select id="f-data-currency" name="data.currency"' in html
    assert '<option value="EUR" selected>EUR</option>' in html  # the default
    assert '<label for="f-data-applicant">Applicant' in html
    assert "The borrower&#39;s full name." in html  # the help text
    assert 'name="data"' not in html  # no free-form box for a type with fields
    # The creator is asked for: the Case Manager is the creator's manager.
    assert '<select id="f-operator" name="operator" required' in html
    assert "(system)" not in html
    # What creating it sends, before it is sent.
    plan = html[html.index('id="creation-emails"') :]
    assert "Notify the case manager" in plan
    assert "to CaseManager (the creator&#39;s manager)" in plan


def test_studio_shows_each_field_error_beside_it(studio: tuple[Postroom, TestClient, str]) -> None:
    pr, c, csrf = studio
    form = {
        "csrf_token": csrf,
        "case_type": MORTGAGE,
        "operator": "alice",
        "data.applicant": "",
        "data.amount": "12.345",
        "data.currency": "EUR",
        "data.customer_email": "not-an-address",
    }
    got = c.post("/cases", data=form)
    assert got.status_code == 422
    assert 'id="e-data-applicant">Applicant is required' in got.text
    assert 'id="e-data-amount">Amount has more than 2 decimal places' in got.text
    assert 'id="e-data-customer_email">Customer email is not a valid email address' in got.text
    assert 'value="12.345"' in got.text
    assert 'value="not-an-address"' in got.text
    assert 'aria-describedby="e-data-amount"' in got.text
    assert '<option value="alice" selected>' in got.text
    with pr.engine.connect() as conn:
        assert search_cases(conn, CaseQuery()).total == 0


def test_studio_created_case_and_failed_email(studio: tuple[Postroom, TestClient, str]) -> None:
    _, c, csrf = studio
    form = {
        "csrf_token": csrf,
        "case_type": MORTGAGE,
        "data.applicant": "Jane Doe",
        "data.amount": "250000",
        "data.currency": "USD",
        "data.customer_email": "",
    }
    made = c.post("/cases", data={**form, "operator": "alice"})
    assert notice_of(made) == ("success", "Case M-1 created.")
    assert "USD" in made.text
    # Carol reports to nobody: the Case Manager email cannot be built. An error, not a success.
    failed = c.post("/cases", data={**form, "operator": "carol"})
    level, text = notice_of(failed)
    assert level == "error"
    assert "Case M-2 created, but its email could not be sent" in text
    assert "CaseManager" in text


def test_studio_cases_list_search_sort_page(studio: tuple[Postroom, TestClient, str]) -> None:
    pr, c, _ = studio
    for i in range(52):
        pr.cases.create(
            MORTGAGE,
            data={"applicant": f"A{i}", "amount": 1, "customer_email": f"c{i}@example.org"},
            operator="alice",
        )
    first = c.get("/cases").text
    assert "52 cases, page 1 of 2." in first
    assert 'href="/cases?page=2"' in first
    second = c.get("/cases?page=2").text
    assert ">M-1</a>" in second
    assert ">M-52</a>" not in second
    found = c.get("/cases?q=c7%40example").text
    assert "1 case." in found
    assert ">M-8</a>" in found
    ordered = c.get("/cases?sort=id&order=asc").text
    assert ordered.index(">M-1</a>") < ordered.index(">M-10</a>")
    assert 'href="/cases?q=c7%40example&amp;page=2"' not in found  # one page only
    assert 'href="/cases?sort=id&amp;order=asc&amp;page=2"' in ordered  # links keep the query


def test_case_page_marks_its_live_parts(studio: tuple[Postroom, TestClient, str]) -> None:
    pr, c, _ = studio
    case = pr.cases.create(MORTGAGE, data={"applicant": "Jo", "amount": 5}, operator="alice")
    html = c.get(f"/cases/{case.id}").text
    for part in ('id="case-status" data-live', 'id="case-emails" data-live',
                 'id="case-history" data-live'):  # fmt: skip
        assert part in html
    live = html[
        html.index('id="case-emails"') : html.index("</section>", html.index('id="case-emails"'))
    ]
    assert "<form" not in live
    assert "<dt>Applicant</dt><dd>Jo</dd>" in html


def test_preview_without_a_case_uses_sample_data(studio: tuple[Postroom, TestClient, str]) -> None:
    pr, c, csrf = studio
    with pr.engine.connect() as conn:
        letter = pr.correspondence_store.get(conn, "Mortgage case creation")
    got = c.post(
        "/correspondence/preview",
        data={"csrf_token": csrf, "name": letter.name, "subject": letter.subject or "",
              "html": letter.html, "case_id": ""},
    )  # fmt: skip
    assert got.status_code == 200
    assert "error" not in got.text.lower()
    assert "Mortgage request M-1001 created by" in got.text
    assert "Jane Doe" in got.text
    assert "1250" in got.text
    assert "EUR" in got.text
    # A letter no case type sends: a generic sample, every case.data key it reads filled.
    other = c.post(
        "/correspondence/preview",
        data={"csrf_token": csrf, "name": "Loose", "subject": "For {{ case.id }}",
              "html": "<p>{{ party.name }}: {{ case.data.anything }}</p>", "case_id": ""},
    )  # fmt: skip
    assert "For CASE-1001" in other.text
    assert "Sample anything" in other.text
