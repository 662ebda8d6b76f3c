"""What apply refuses in a template and a record, and how it says so: guarded and fragment
variables allowed, formatting filters' arguments checked, errors at the field written."""

from __future__ import annotations

from typing import Any

import pytest

from postroom import Postroom
from postroom.correspondence import Correspondence, Renderer
from postroom.errors import ConfigurationError, TemplateError
from tests.apikit import client, issue_tokens


def apply_letters(pr: Postroom, *letters: dict[str, Any]) -> None:
    pr.apply({"correspondence": list(letters)})


@pytest.mark.parametrize(
    "html",
    [
        "{{ y | default('d') }}",
        "{{ y | d('d') }}",
        "{% if y is defined %}{{ y }}{% endif %}",
        "{% if y is undefined %}none{% else %}{{ y }}{% endif %}",
        "{{ 'none' if y is not defined else y.z }}",
    ],
)
def test_a_guarded_variable_is_applied_and_renders(sqlite_postroom: Postroom, html: str) -> None:
    apply_letters(sqlite_postroom, {"name": "Letter", "subject": "S", "html": html})
    with sqlite_postroom.engine.connect() as conn:
        records = sqlite_postroom.correspondence_store.all(conn)
    # The guard holds when rendering too: no value, no error.
    Renderer(records).render("Letter", {})


def test_a_fragment_may_read_what_its_includer_sets(sqlite_postroom: Postroom) -> None:
    signature = {"name": "Signature", "html": "{{ signer }}{{ sig_extra | default('') }}"}
    letter = {
        "name": "Letter",
        "subject": "S",
        "html": "{% set signer = 'Carol' %}{% include 'Signature' %}",
    }
    apply_letters(sqlite_postroom, signature, letter)
    with sqlite_postroom.engine.connect() as conn:
        records = sqlite_postroom.correspondence_store.all(conn)
    assert Renderer(records).render("Letter", {}).html == "Carol"


@pytest.mark.parametrize(
    ("letter", "message"),
    [
        (
            {"name": "Letter", "subject": "S", "html": "{{ cse.id }}{{ x | default(1) }}"},
            "correspondence 'Letter' html: uses unknown variable 'cse' (did you mean 'case'?)",
        ),
        (
            {"name": "Letter", "subject": "S", "html": "{% if x is defined %}{{ y }}{% endif %}"},
            "correspondence 'Letter' html: uses unknown variable 'y'",
        ),
        (
            {"name": "Signature", "html": "{{ signer | formt }}"},
            "correspondence 'Signature' html: uses unknown filter 'formt'",
        ),
        (
            {"name": "Signature", "html": "{% if signer is numbr %}x{% endif %}"},
            "correspondence 'Signature' html: uses unknown test 'numbr'",
        ),
    ],
)
def test_unguarded_variables_and_unknown_filters_stay_refused(
    sqlite_postroom: Postroom, letter: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        apply_letters(sqlite_postroom, letter)
    assert str(caught.value).startswith(message)


WRONG_CALLS = [
    ("{{ 1 | format_currency }}", "format_currency needs a currency, e.g. format_currency('EUR')"),
    (
        "{{ 1 | format_currency('EUR', 'x', 'y') }}",
        "format_currency takes at most 2 arguments (currency, format)",
    ),
    ("{{ 1 | format_date('long', 'x') }}", "format_date takes at most 1 argument (format)"),
    ("{{ 1 | format_date(fmt='long') }}", "format_date has no argument 'fmt' (it takes format)"),
    ("{{ 1 | format_number('#') }}", "format_number takes no arguments"),
    (
        "{{ 1 | format_datetime('short', format='long') }}",
        "format_datetime: format is given twice, by position and by name",
    ),
    (
        "{% if false %}{{ 1 | format_currency(format='#', x=1) }}{% endif %}",
        "format_currency has no argument 'x' (it takes currency, format)",
    ),
]


@pytest.mark.parametrize(("html", "message"), WRONG_CALLS)
def test_a_formatting_filter_called_wrongly_is_refused_at_apply(
    sqlite_postroom: Postroom, html: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        apply_letters(sqlite_postroom, {"name": "Letter", "subject": "S", "html": html})
    assert str(caught.value) == f"correspondence 'Letter' html: {message}"


def test_a_wrong_call_says_the_same_when_rendering() -> None:
    # Saved before apply checked arguments, or reached only when rendering (map).
    cases = [
        ("{{ 1 | format_currency }}", "format_currency needs a currency"),
        ("{{ [1] | map('format_currency') | join }}", "format_currency needs a currency"),
        ("{{ [1] | map('format_date', 'a', 'b') | join }}", "format_date takes at most 1"),
    ]
    for html, message in cases:
        record = Correspondence(name="L", subject="S", html=html)
        with pytest.raises(TemplateError) as caught:
            Renderer({"L": record}).render("L", {})
        assert message in str(caught.value)
        assert "TypeError" not in str(caught.value)


def test_translation_errors_name_the_translation(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    own = {
        "name": "L",
        "subject": "S",
        "html": "h",
        "translations": {"en": {"subject": "S", "html": "h"}},
    }
    fragment = {"name": "F", "html": "h", "translations": {"de": {"subject": "S", "html": "h"}}}
    unknown = {
        "name": "L",
        "subject": "S",
        "html": "h",
        "translations": {"xx": {"subject": "S", "html": "h"}},
    }
    expected: list[tuple[dict[str, Any], str]] = [
        (
            own,
            "translations.en: en is the correspondence's own language; "
            "its text is subject, html and text",
        ),
        (
            fragment,
            "translations.de: a fragment (no subject) has no subject in its translations either",
        ),
        (unknown, "translations.xx: 'xx' is not a language Postroom knows"),
        (
            {"name": "L", "subject": "S", "html": "h", "language": "xx"},
            "language: 'xx' is not a language Postroom knows (e.g.",
        ),
    ]
    for letter, message in expected:
        with pytest.raises(ConfigurationError) as caught:
            apply_letters(pr, letter)
        assert message in str(caught.value)
        assert "record:" not in str(caught.value)
        assert "language: correspondence language" not in str(caught.value)
    with client(pr) as c:
        answer = c.put("/api/v1/correspondence/L", json=own, headers=issue_tokens(pr).admin)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["body.translations.en"]


def test_language_errors_say_the_field_once(sqlite_postroom: Postroom) -> None:
    case_type = {
        "class": "Claims-Motor",
        "class_group": "Claims",
        "id_prefix": "M",
        "parties": {"Customer": {"from": "creator", "language": "xyz"}},
    }
    with pytest.raises(ConfigurationError) as caught:
        sqlite_postroom.apply({"case_types": [case_type]})
    assert "parties.Customer.language: 'xyz' is not a language Postroom knows" in str(caught.value)
    assert "party_languages" not in str(caught.value)
    both = {"from": "creator", "language": "de", "language_field": "lang"}
    with pytest.raises(ConfigurationError) as caught:
        sqlite_postroom.apply({"case_types": [{**case_type, "parties": {"Customer": both}}]})
    assert "parties.Customer: a party gives language or language_field" in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        sqlite_postroom.apply({"case_types": [{**case_type, "parties": {}, "language": "xx"}]})
    assert "language: 'xx' is not a language Postroom knows" in str(caught.value)
    assert "case type language" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        sqlite_postroom.apply({"operators": [{"id": "carol", "name": "Carol", "language": "xx"}]})
    assert "language: 'xx' is not a language Postroom knows" in str(caught.value)
    assert "operator language" not in str(caught.value)
