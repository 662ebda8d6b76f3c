"""Opening a case from triage for a case type with required fields: the data and the
creating operator given through the facade, the CLI, the API and the Studio's form."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from postroom import Postroom
from postroom.errors import InvalidFieldsError
from postroom.inbound.models import InboundStatus
from tests import mailsamples
from tests.apikit import client as api_client
from tests.apikit import issue_tokens
from tests.conftest import TEST_KEY, make_settings
from tests.ingestkit import CLAIM, MAILBOX, ingest, records
from tests.studiokit import log_in, mortgage_records, studio_client

MORTGAGE = "MyOrg-Mortgage-Work-MortgageRequest"
API = "/api/v1"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'p.db'}"


@pytest.fixture
def pr(url: str) -> Iterator[Postroom]:
    """examples/mortgage.yaml's records, an account to receive with, one unmatched mail."""
    with Postroom(make_settings(url)) as opened:
        declared = mortgage_records()
        declared["accounts"] = [
            {
                "name": MAILBOX.account,
                "address": "mortgages@example.com",
                "host": "127.0.0.1",
                "port": 25,
                "security": "none",
            }
        ]
        opened.apply(declared)
        yield opened


def _unmatched(pr: Postroom) -> int:
    result = ingest(pr, mailsamples.plain(subject="Please call me", to="mortgages@example.com"))
    assert result.status is InboundStatus.UNMATCHED
    return result.id


def _check_mortgage(pr: Postroom, received_id: int, case_id: str) -> None:
    case = pr.cases.get(case_id)
    assert case.data["applicant"] == "Zoë Ångström"
    assert case.data["amount"] == 250000
    assert case.created_by == "alice"
    parties = {p.role: p.address for p in case.parties}
    assert parties["CaseManager"] == "carol.manager@example.com"  # creator.reports_to
    message = pr.received_message(received_id)
    assert (message.status, message.case_id) == (InboundStatus.NEW_CASE, case_id)
    assert f"received-{received_id}.eml" in [a.name for a in case.attachments]


def test_the_facade_takes_data_and_an_operator(pr: Postroom) -> None:
    received_id = _unmatched(pr)
    with pytest.raises(InvalidFieldsError, match="applicant: is required") as refused:
        pr.case_from_received(received_id, MORTGAGE)
    assert {i.field for i in refused.value.issues} == {"data.applicant", "data.amount"}
    assert pr.received_message(received_id).status is InboundStatus.UNMATCHED
    data = {"applicant": "Zoë Ångström", "amount": 250000}
    case = pr.case_from_received(received_id, MORTGAGE, data=data, operator="alice")
    _check_mortgage(pr, received_id, case.id)


def test_given_data_goes_over_what_the_mail_gives(postroom: Postroom) -> None:
    postroom.apply(records())
    result = ingest(postroom, mailsamples.plain(subject="My roof leaks"))
    case = postroom.case_from_received(
        result.id, CLAIM, data={"title": "Roof, north side"}, operator="carol"
    )
    assert case.data["title"] == "Roof, north side"
    assert case.data["claimant_name"] == "Jane Customer"  # still from the mail
    assert case.created_by == "carol"


def _cli(url: str, *args: str) -> Any:
    from postroom.cli import app  # noqa: PLC0415

    return CliRunner().invoke(app, ["-d", url, *args], env={"POSTROOM_SECRET_KEY": TEST_KEY})


def test_the_cli_takes_data_and_an_operator(pr: Postroom, url: str) -> None:
    received_id = _unmatched(pr)
    refused = _cli(url, "inbound", "create-case", str(received_id), MORTGAGE)
    assert refused.exit_code != 0
    assert "applicant: is required" in refused.output
    assert "Traceback" not in refused.output
    bad = _cli(url, "inbound", "create-case", str(received_id), MORTGAGE, "--data", "applicant")
    assert bad.exit_code != 0
    assert "name=value" in bad.output
    created = _cli(
        url,
        "inbound",
        "create-case",
        str(received_id),
        MORTGAGE,
        "--data",
        "applicant=Zoë Ångström",
        "--data",
        "amount=250000",
        "--operator",
        "alice",
    )
    assert created.exit_code == 0, created.output
    case_id = re.search(r"case (\S+) ", created.output)
    assert case_id is not None
    _check_mortgage(pr, received_id, case_id.group(1))


def test_the_api_takes_data_and_an_operator_as_its_example_shows(pr: Postroom) -> None:
    received_id = _unmatched(pr)
    tokens = issue_tokens(pr)
    with api_client(pr) as api:
        schemas = api.get(f"{API}/openapi.json").json()["components"]["schemas"]
        [example] = schemas["CaseFromMessage"]["examples"]
        refused = api.post(
            f"{API}/inbound/{received_id}/case",
            json={"class_name": MORTGAGE},
            headers=tokens.admin,
        )
        assert refused.status_code == 422, refused.text
        fields = {e["field"] for e in refused.json()["errors"]}
        assert fields == {"body.data.applicant", "body.data.amount"}
        unknown = api.post(
            f"{API}/inbound/{received_id}/case",
            json={**example, "operator": "nobody"},
            headers=tokens.admin,
        )
        assert unknown.status_code == 422, unknown.text
        assert [e["field"] for e in unknown.json()["errors"]] == ["body.operator"]
        created = api.post(f"{API}/inbound/{received_id}/case", json=example, headers=tokens.admin)
        assert created.status_code == 201, created.text
    case = pr.cases.get(created.json()["id"])
    assert case.data["applicant"] == example["data"]["applicant"]
    assert case.created_by == example["operator"]
    assert pr.received_message(received_id).case_id == case.id


def _notice(client: TestClient, location: str) -> tuple[str, str]:
    shown = client.get(location).text
    found = re.search(r'<p class="notice (\w+)" role="\w+">([^<]*)</p>', shown)
    assert found is not None, "the page shows no notice"
    return found.group(1), html.unescape(found.group(2))


def test_the_studio_form_takes_the_fields_and_the_creator(pr: Postroom, tmp_path: Path) -> None:
    received_id = _unmatched(pr)
    with studio_client(pr, inbox_dir=tmp_path / "inbox") as client:
        csrf = log_in(client)
        page = client.get(f"/inbound/{received_id}?case_type={MORTGAGE}").text
        for part in ('id="f-operator"', 'name="data.applicant"', 'name="data.amount"',
                     'value="alice"', f'name="class_name" value="{MORTGAGE}"'):  # fmt: skip
            assert part in page
        form = {"csrf_token": csrf, "class_name": MORTGAGE, "operator": "alice"}
        refused = client.post(
            f"/inbound/{received_id}/case",
            data={**form, "data.applicant": "", "data.amount": ""},
            follow_redirects=False,
        )
        assert refused.status_code == 303
        assert refused.headers["location"].startswith(f"/inbound/{received_id}?case_type=")
        level, text = _notice(client, refused.headers["location"])
        assert level == "error"
        assert "data.applicant: is required" in text
        assert "data.amount: is required" in text
        created = client.post(
            f"/inbound/{received_id}/case",
            data={**form, "data.applicant": "Zoë Ångström", "data.amount": "250000"},
            follow_redirects=False,
        )
        assert created.status_code == 303, created.text[:500]
        case_id = pr.received_message(received_id).case_id
        assert case_id is not None
        assert created.headers["location"] == f"/cases/{case_id}"
    _check_mortgage(pr, received_id, case_id)
