"""An ad-hoc email may ask for a correspondence's language: the translation is sent, dates and
amounts are formatted for it, and the row says which; a bad tag names the field."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postroom import Postroom
from postroom.cli import app
from postroom.errors import InvalidFieldsError
from tests.apikit import client, issue_tokens

LETTER = {
    "name": "Notice",
    "language": "en",
    "subject": "Payment of {{ 1234.5 | format_currency('EUR') }}",
    "html": "<p>Paid on {{ '2026-12-24' | format_date('long') }}.</p>",
    "translations": {
        "de": {
            "subject": "Zahlung von {{ 1234.5 | format_currency('EUR') }}",
            "html": "<p>Bezahlt am {{ '2026-12-24' | format_date('long') }}.</p>",
        }
    },
}
ACCOUNT = {
    "name": "Default",
    "address": "noreply@example.com",
    "host": "127.0.0.1",
    "port": 2525,
    "security": "none",
}


def body_of(pr: Postroom, outbox_id: int) -> tuple[str, str]:
    with pr.engine.connect() as conn:
        message = pr.outbox_store.message_bytes(conn, outbox_id)
    assert message is not None
    parsed = message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    html = parsed.get_body(preferencelist=("html",))
    assert html is not None
    return str(parsed["Subject"]), str(html.get_content())


@pytest.fixture
def pr(sqlite_postroom: Postroom) -> Postroom:
    sqlite_postroom.apply({"accounts": [ACCOUNT], "correspondence": [LETTER]})
    return sqlite_postroom


def test_a_send_asking_for_german_gets_the_german_text_formatted_in_german(pr: Postroom) -> None:
    outbox_id = pr.send(to=["kunde@example.org"], correspondence="Notice", language="de-CH")
    [row] = pr.outbox()
    assert row.id == outbox_id
    assert (row.language, row.correspondence, row.correspondence_version) == ("de", "Notice", 1)
    subject, html = body_of(pr, outbox_id)
    with pr.engine.connect() as conn:
        message = pr.outbox_store.message_bytes(conn, outbox_id) or b""
    assert b"\r\nContent-Language: de\r\n" in message
    assert subject == "Zahlung von 1.234,50\xa0€"
    assert "Bezahlt am 24. Dezember 2026." in html


def test_without_a_language_it_is_the_correspondences_own(pr: Postroom) -> None:
    outbox_id = pr.send(to=["someone@example.org"], correspondence="Notice")
    [row] = pr.outbox()
    assert row.language == "en"
    subject, html = body_of(pr, outbox_id)
    assert subject == "Payment of €1,234.50"
    assert "Paid on December 24, 2026." in html


def test_a_language_the_correspondence_lacks_falls_back_to_its_own(pr: Postroom) -> None:
    pr.send(to=["quelqu.un@example.org"], correspondence="Notice", language="fr")
    [row] = pr.outbox()
    assert row.language == "en"


def test_a_bad_language_names_the_field_and_queues_nothing(pr: Postroom) -> None:
    with pytest.raises(InvalidFieldsError) as caught:
        pr.send(to=["a@example.org"], correspondence="Notice", language="xx")
    assert [i.field for i in caught.value.issues] == ["language"]
    assert "'xx' is not a language Postroom knows" in str(caught.value)
    assert pr.outbox() == []


def test_the_api_takes_a_language_and_names_a_bad_one(pr: Postroom) -> None:
    headers = issue_tokens(pr).send
    with client(pr) as c:
        good = c.post(
            "/api/v1/emails",
            json={"to": ["a@example.org"], "correspondence": "Notice", "language": "de"},
            headers=headers,
        )
        assert good.status_code == 201, good.text
        shown = c.get(f"/api/v1/emails/{good.json()['ids'][0]}", headers=headers).json()
        bad = c.post(
            "/api/v1/emails",
            json={"to": ["a@example.org"], "correspondence": "Notice", "language": "EN_xx"},
            headers=headers,
        )
    assert shown["language"] == "de"
    assert bad.status_code == 422, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["body.language"]
    assert len(pr.outbox()) == 1


def test_the_command_line_takes_a_language(tmp_path: Path, pr: Postroom) -> None:
    url = pr.settings.database_url
    runner = CliRunner()
    send = ["--database-url", url, "send", "--to", "a@example.org", "--correspondence", "Notice"]
    sent = runner.invoke(
        app,
        [*send, "--language", "de"],
    )
    assert sent.exit_code == 0, sent.output
    bad = runner.invoke(
        app,
        [*send, "--language", "klingon"],
    )
    assert bad.exit_code != 0
    assert "language" in bad.output
    assert "Traceback" not in bad.output
    [row] = pr.outbox()
    assert row.language == "de"
