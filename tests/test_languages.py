"""Languages: one email per recipient language, with dates and amounts formatted for it,
the choice kept on the outbox row and in the case history; party languages from data."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from postroom import Postroom
from postroom.errors import ConfigurationError, PostroomError
from postroom.outbox import OutboxEntry
from tests.apikit import client, issue_tokens
from tests.fakes import Received, smtp_server
from tests.studiokit import log_in, studio_client

CLASS = "MyOrg-Claims-Work-Claim"

LETTER: dict[str, Any] = {
    "name": "Decision",
    "language": "en",
    "subject": "Your claim {{ case.id }}: decision of {{ case.data.decided | format_date }}",
    "html": (
        "<p>Dear {{ party.name or 'customer' }}, we pay "
        "{{ case.data.amount | format_currency('EUR') }} on "
        "{{ case.data.due | format_date('long') }}.</p>"
    ),
    "translations": {
        "de": {
            "subject": (
                "Ihr Antrag {{ case.id }}: Entscheidung vom {{ case.data.decided | format_date }}"
            ),
            "html": (
                "<p>Guten Tag, wir zahlen {{ case.data.amount | format_currency('EUR') }} "
                "am {{ case.data.due | format_date('long') }}.</p>"
            ),
        }
    },
}


def records(
    port: int,
    *,
    customer: Any = None,
    manager_language: str | None = "en",
    letter: dict[str, Any] | None = None,
    type_language: str | None = "en",
    step: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manager: dict[str, Any] = {"id": "carol", "name": "Carol", "email": "carol@example.com"}
    if manager_language:
        manager["language"] = manager_language
    case_type: dict[str, Any] = {
        "class": CLASS,
        "class_group": "MyOrg-Claims-Work",
        "id_prefix": "C-",
        "parties": {
            "Customer": customer
            or {"from": "data.customer_email", "language_field": "customer_language"},
            "CaseManager": "operator:carol",
        },
        "steps": [
            step
            or {
                "name": "decision",
                "on": "created",
                "to": [{"party": "Customer"}, {"party": "CaseManager"}],
                "correspondence": "Decision",
            }
        ],
    }
    if type_language:
        case_type["language"] = type_language
    return {
        "operators": [manager],
        "accounts": [
            {
                "name": "MyOrg-Claims-Work",
                "address": "claims@example.com",
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
            }
        ],
        "correspondence": [letter or LETTER],
        "case_types": [case_type],
    }


DATA = {
    "customer_email": "kunde@example.de",
    "customer_language": "de",
    "amount": "250000",
    "decided": "2026-12-24",
    "due": "2027-01-15",
}


def run_agent(postroom: Postroom) -> None:
    asyncio.run(postroom.agent().run(until_idle=True))


def html_of(received: Received) -> str:
    part = received.message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def text_of(received: Received) -> str:
    part = received.message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def by_recipient(entries: list[OutboxEntry]) -> dict[str, OutboxEntry]:
    found = {}
    for entry in entries:
        for r in entry.recipients:
            found[r.address] = entry
    return found


def test_one_email_per_language_with_formatted_dates_and_amounts(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        case = postroom.cases.create(CLASS, data=DATA)
        entries = postroom.outbox(case_id=case.id)
        run_agent(postroom)

    # Two rows, one per language, each with only its own recipients.
    assert len(entries) == 2
    rows = by_recipient(entries)
    german, english = rows["kunde@example.de"], rows["carol@example.com"]
    assert [r.address for r in german.recipients] == ["kunde@example.de"]
    assert [r.address for r in english.recipients] == ["carol@example.com"]
    assert (german.language, english.language) == ("de", "en")
    for row in (german, english):
        assert row.correspondence == "Decision"
        assert row.correspondence_version == 1

    assert [p.language for p in sorted(case.parties, key=lambda p: p.role)] == ["en", "de"]

    received = {m.rcpt_tos[0]: m for m in srv.sink.received}
    assert sorted(received) == ["carol@example.com", "kunde@example.de"]
    de, en = received["kunde@example.de"], received["carol@example.com"]
    assert de.message["Subject"] == f"Ihr Antrag {case.id}: Entscheidung vom 24.12.2026"
    assert en.message["Subject"] == f"Your claim {case.id}: decision of Dec 24, 2026"
    # Babel writes a no-break space in the German amount and date: "250.000,00\xa0€".
    assert "wir zahlen 250.000,00\xa0€ am 15. Januar 2027." in html_of(de)
    assert "wir zahlen 250.000,00 € am 15. Januar 2027." in text_of(de)
    assert "we pay €250,000.00 on January 15, 2027." in html_of(en)
    assert "Dear Carol" in html_of(en)
    assert "kunde@example.de" not in en.raw.decode("ascii", "replace")
    assert "carol@example.com" not in de.raw.decode("ascii", "replace").split("\r\n\r\n", 1)[0]

    lines = [h.detail for h in postroom.cases.get(case.id).history if h.action == "email-queued"]
    assert len(lines) == 2
    [de_line] = [line for line in lines if "kunde@example.de" in line]
    [en_line] = [line for line in lines if "carol@example.com" in line]
    assert "correspondence 'Decision' version 1, in de (Customer's language)" in de_line
    assert "correspondence 'Decision' version 1, in en (CaseManager's language)" in en_line


def test_no_translation_falls_back_to_the_case_types_language(postroom: Postroom) -> None:
    letter = {**LETTER, "language": "fr", "translations": {"en": LETTER["translations"]["de"]}}
    data = {**DATA, "customer_language": "it"}
    with smtp_server() as srv:
        postroom.apply(records(srv.port, letter=letter, manager_language=None))
        case = postroom.cases.create(CLASS, data=data)
        run_agent(postroom)
    # Neither recipient's language is written: both get the case type's (en), one email.
    [entry] = postroom.outbox(case_id=case.id)
    assert entry.language == "en"
    [msg] = srv.sink.received
    assert sorted(msg.rcpt_tos) == ["carol@example.com", "kunde@example.de"]
    assert "Guten Tag" in html_of(msg)  # the "en" text of this letter (written in German)
    [line] = [h.detail for h in postroom.cases.get(case.id).history if h.action == "email-queued"]
    assert "in en (the case type's language; not written in Customer's it" in line


def test_no_case_type_language_falls_back_to_the_correspondences_own(
    sqlite_postroom: Postroom,
) -> None:
    pr = sqlite_postroom
    data = {**DATA, "customer_language": "it"}
    with smtp_server() as srv:
        pr.apply(records(srv.port, type_language=None, manager_language="nl"))
        case = pr.cases.create(CLASS, data=data)
        run_agent(pr)
    [entry] = pr.outbox(case_id=case.id)
    assert entry.language == "en"
    [msg] = srv.sink.received
    assert msg.message["Subject"].endswith("decision of Dec 24, 2026")
    [line] = [h.detail for h in pr.cases.get(case.id).history if h.action == "email-queued"]
    assert "in en (the correspondence's own language" in line


def test_operator_language_and_fixed_party_language(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    customer = {"from": "data.customer_email", "language": "de"}
    data = {**DATA, "customer_language": "en"}  # not read: the party's language is fixed
    with smtp_server() as srv:
        pr.apply(records(srv.port, customer=customer, manager_language="de"))
        case = pr.cases.create(CLASS, data=data)
        run_agent(pr)
    [entry] = pr.outbox(case_id=case.id)
    assert entry.language == "de"
    [msg] = srv.sink.received
    assert msg.message["Subject"].startswith("Ihr Antrag")
    assert {p.role: p.language for p in case.parties} == {"Customer": "de", "CaseManager": "de"}
    with studio_client(pr) as studio:  # the case page says each party's language
        log_in(studio)
        page = studio.get(f"/cases/{case.id}").text
    assert page.count("<td>de</td>") == 2


def test_a_bad_language_in_the_data_is_a_note_not_a_crash(postroom: Postroom) -> None:
    with smtp_server() as srv:
        postroom.apply(records(srv.port))
        case = postroom.cases.create(CLASS, data={**DATA, "customer_language": "xx"})
        run_agent(postroom)
    customer = next(p for p in case.parties if p.role == "Customer")
    assert customer.language is None
    notes = [h.detail for h in case.history if h.action == "party"]
    assert notes == [
        "party Customer: language 'xx' in customer_language is not a known language; "
        "its emails use the case type's"
    ]
    # Both recipients read English now: one email.
    [msg] = srv.sink.received
    assert msg.message["Subject"].startswith("Your claim")


def test_inline_step_text_stays_one_email(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    step = {
        "name": "ack",
        "on": "created",
        "to": [{"party": "Customer"}, {"party": "CaseManager"}],
        "subject": "Received {{ case.data.decided | format_date }}",
        "body": "<p>{{ case.data.amount | format_currency('EUR') }}</p>",
    }
    with smtp_server() as srv:
        pr.apply(records(srv.port, step=step))
        case = pr.cases.create(CLASS, data=DATA)
        run_agent(pr)
    [entry] = pr.outbox(case_id=case.id)
    assert entry.correspondence is None
    [msg] = srv.sink.received
    assert sorted(msg.rcpt_tos) == ["carol@example.com", "kunde@example.de"]
    # Inline text is written in the case type's language and formatted for it.
    assert msg.message["Subject"] == "Received Dec 24, 2026"
    assert "€250,000.00" in html_of(msg)


def test_party_definitions_round_trip_and_are_checked(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply(records(25))
    with pr.engine.connect() as conn:
        stored = pr.case_type_store.get(conn, CLASS)
    dumped = stored.model_dump(mode="json", by_alias=True)
    assert dumped["parties"] == {
        "Customer": {"from": "data.customer_email", "language_field": "customer_language"},
        "CaseManager": "operator:carol",
    }
    assert pr.apply({"case_types": [dumped]}).changes == [("case type", CLASS, "unchanged")]

    bad = [
        ({"from": "data.customer_email", "language": "xx"}, "is not a language Postroom knows"),
        ({"from": "data.customer_email", "langauge": "de"}, "unknown key 'langauge'"),
        (
            {"from": "data.customer_email", "language": "de", "language_field": "x"},
            "language or language_field",
        ),
    ]
    for customer, message in bad:
        with pytest.raises(PostroomError, match=message):
            pr.apply(records(25, customer=customer))


def test_an_undeclared_language_field_is_warned(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    source = records(25)
    source["case_types"][0]["fields"] = [
        {"name": "customer_email", "type": "email"},
        {"name": "amount", "type": "number"},
        {"name": "decided", "type": "date"},
        {"name": "due", "type": "date"},
    ]
    report = pr.apply(source)
    assert any(
        "party Customer reads its language from case.data.customer_language, which no field "
        "declares" in w
        for w in report.warnings
    ), report.warnings


@pytest.mark.parametrize(
    ("html", "message"),
    [
        (
            "{% if case.data.x %}{{ case.data.amount | format_curency('EUR') }}{% endif %}",
            "correspondence 'Decision' html: uses unknown filter 'format_curency' "
            "(did you mean 'format_currency'?)",
        ),
        (
            "{% if case.data.x is numbr %}x{% endif %}",
            "correspondence 'Decision' html: uses unknown test 'numbr' (did you mean 'number'?)",
        ),
        (
            "{% if case.data.x %}{{ csae.id }}{% endif %}",
            "correspondence 'Decision' html: uses unknown variable 'csae' (did you mean 'case'?)",
        ),
        ("{{ config.items() }}", "correspondence 'Decision' html: uses unknown variable 'config'"),
    ],
)
def test_apply_refuses_unknown_filters_tests_and_variables(
    sqlite_postroom: Postroom, html: str, message: str
) -> None:
    letter = {"name": "Decision", "subject": "S", "html": html}
    with pytest.raises(ConfigurationError) as caught:
        sqlite_postroom.apply({"correspondence": [letter]})
    assert str(caught.value) == message
    with sqlite_postroom.engine.connect() as conn:
        assert sqlite_postroom.correspondence_store.find(conn, "Decision") is None


def test_apply_checks_translations_and_inline_steps(sqlite_postroom: Postroom) -> None:
    letter = {**LETTER, "translations": {"de": {"subject": "{{ 1 | format_dat }}", "html": "x"}}}
    with pytest.raises(ConfigurationError, match=r"translations\.de\.subject: uses unknown filter"):
        sqlite_postroom.apply({"correspondence": [letter]})
    step = {
        "name": "ack",
        "on": "created",
        "to": [{"party": "Customer"}],
        "subject": "S",
        "body": "{% for i in [1] %}{{ i | money }}{% endfor %}",
    }
    with pytest.raises(ConfigurationError, match="step ack: uses unknown filter 'money'"):
        sqlite_postroom.apply(records(25, step=step))


def test_an_ad_hoc_template_with_an_unknown_filter_is_refused_at_the_request(
    sqlite_postroom: Postroom,
) -> None:
    pr = sqlite_postroom
    with smtp_server() as srv:
        pr.apply(records(srv.port))
        with pytest.raises(PostroomError) as caught:
            pr.send(
                to=["a@example.com"],
                subject="S",
                body="{% if false %}{{ 1 | format_curency('EUR') }}{% endif %}",
                template=True,
                class_name=CLASS,
            )
    assert "uses unknown filter 'format_curency' (did you mean 'format_currency'?)" in str(
        caught.value
    )
    assert pr.outbox() == []


def test_the_api_answers_422_naming_the_field_for_an_unknown_filter(
    sqlite_postroom: Postroom,
) -> None:
    pr = sqlite_postroom
    pr.apply(records(25))
    body = {
        "to": ["a@example.com"],
        "class_name": CLASS,
        "subject": "{{ case.id if false else 'x' | upper }}",
        "body": "{% if false %}{{ 1 | format_curency('EUR') }}{% endif %}",
        "template": True,
    }
    with client(pr) as c:
        answer = c.post("/api/v1/emails", json=body, headers=issue_tokens(pr).send)
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == ["body.body"]
    assert "uses unknown filter 'format_curency'" in problem["detail"]
    assert pr.outbox() == []
