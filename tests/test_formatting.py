"""The sandbox's Babel filters: dates and numbers written as each language writes them,
every input bounded, a bad value a template error naming the filter."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from postroom.correspondence import Correspondence, Renderer
from postroom.errors import TemplateError


def render(source: str, language: str | None, **data: Any) -> str:
    record = Correspondence(name="L", subject="s", html=source, language="en")
    translations = {"de": {"subject": "s", "html": source}, "fr": {"subject": "s", "html": source}}
    record = Correspondence.model_validate({**record.model_dump(), "translations": translations})
    rendered = Renderer({"L": record}).render("L", {"case": {"data": data}}, language=language)
    return rendered.html


CASES = [
    (
        "{{ case.data.v | format_date }}",
        "2026-12-24",
        {"de": "24.12.2026", "fr": "24 déc. 2026", "en": "Dec 24, 2026"},
    ),
    (
        "{{ case.data.v | format_date('long') }}",
        "2026-12-24",
        {"de": "24. Dezember 2026", "fr": "24 décembre 2026", "en": "December 24, 2026"},
    ),
    (
        "{{ case.data.v | format_date('dd.MM.yy') }}",
        date(2026, 1, 2),
        {"de": "02.01.26", "fr": "02.01.26", "en": "02.01.26"},
    ),
    (
        "{{ case.data.v | format_currency('EUR') }}",
        "250000",
        {"de": "250.000,00\xa0€", "fr": "250\u202f000,00\xa0€", "en": "€250,000.00"},
    ),
    (
        "{{ case.data.v | format_currency('CHF') }}",
        Decimal("1234.5"),
        {"de": "1.234,50\xa0CHF", "fr": "1\u202f234,50\xa0CHF", "en": "CHF1,234.50"},
    ),
    (
        "{{ case.data.v | format_decimal }}",
        1234.5,
        {"de": "1.234,5", "fr": "1\u202f234,5", "en": "1,234.5"},
    ),
    (
        "{{ case.data.v | format_number }}",
        1000000,
        {"de": "1.000.000", "fr": "1\u202f000\u202f000", "en": "1,000,000"},
    ),
    ("{{ case.data.v | format_percent }}", 0.25, {"de": "25\xa0%", "fr": "25\xa0%", "en": "25%"}),
    (
        "{{ case.data.v | format_datetime('short', tz='Europe/Berlin') }}",
        "2026-12-24T08:30:00+00:00",
        {"de": "24.12.26, 09:30", "fr": "24/12/2026 09:30", "en": "12/24/26, 9:30\u202fAM"},
    ),
    (
        "{{ case.data.v | format_time('HH:mm') }}",
        datetime(2026, 12, 24, 17, 5, tzinfo=UTC),
        {"de": "17:05", "fr": "17:05", "en": "17:05"},
    ),
]


@pytest.mark.parametrize(("source", "value", "expected"), CASES)
def test_each_language_writes_dates_and_numbers_its_way(
    source: str, value: Any, expected: dict[str, str]
) -> None:
    for language, text in expected.items():
        assert render(source, language, v=value) == text, language


def test_a_language_without_a_translation_formats_in_the_texts_own() -> None:
    assert render("{{ case.data.v | format_date }}", "it", v="2026-12-24") == "Dec 24, 2026"
    assert render("{{ case.data.v | format_date }}", "de-CH", v="2026-12-24") == "Dec 24, 2026"


BAD = [
    (
        "{{ case.data.v | format_date }}",
        "24.12.2026",
        "format_date: '24.12.2026' is not a date (YYYY-MM-DD)",
    ),
    ("{{ case.data.v | format_date }}", "2026-02-30", "format_date: '2026-02-30' is not a date"),
    ("{{ case.data.v | format_date }}", 12, "format_date: 12 (a number) is not a date"),
    ("{{ case.data.v | format_date }}", [1], "format_date: a list is not a date"),
    ("{{ case.data.v | format_decimal }}", {"a": 1}, "format_decimal: a mapping (several values)"),
    (
        "{{ case.data.v | format_date }}",
        "",
        "format_date: no value to format (use '| default(...)'",
    ),
    (
        "{{ case.data.v | format_date('x' * 101) }}",
        "2026-12-24",
        "format_date: a format pattern may have at most 100 characters",
    ),
    (
        "{{ case.data.v | format_datetime }}",
        "2026-12-24",
        "format_datetime: a date without a time; use format_date",
    ),
    (
        "{{ case.data.v | format_datetime(tz='Mars/Olympus') }}",
        "2026-12-24T10:00:00",
        "format_datetime: 'Mars/Olympus' is not a time zone Postroom knows",
    ),
    (
        "{{ case.data.v | format_datetime(tz='../../etc/passwd') }}",
        "2026-12-24T10:00:00",
        "format_datetime: tz must be a time zone name",
    ),
    (
        "{{ case.data.v | format_currency('EUR') }}",
        "lots",
        "format_currency: 'lots' is not a number",
    ),
    (
        "{{ case.data.v | format_currency('eur') }}",
        "1",
        "format_currency: the currency must be a three-letter ISO 4217 code",
    ),
    (
        "{{ case.data.v | format_currency('XYZ') }}",
        "1",
        "format_currency: 'XYZ' is not a currency Postroom knows",
    ),
    (
        "{{ case.data.v | format_currency('EUR') }}",
        True,
        "format_currency: true or false is not a number",
    ),
    (
        "{{ case.data.v | format_decimal }}",
        10**400,
        "format_decimal: the number is too large to format",
    ),
    (
        "{{ case.data.v | format_decimal }}",
        "1e999999999",
        "format_decimal: the number is too large or too small",
    ),
    (
        "{{ case.data.v | format_decimal }}",
        "NaN",
        "format_decimal: NaN is not a number that can be formatted",
    ),
    (
        "{{ case.data.v | format_decimal }}",
        float("inf"),
        "format_decimal: inf is not a number that can be formatted",
    ),
    (
        "{{ case.data.v | format_decimal }}",
        "1" * 65,
        "format_decimal: '11111111111111111111'... is too long to be a number",
    ),
    (
        "{{ (10 ** 40) | format_percent }}",
        None,
        "format_percent: the number is too large to format",
    ),
]


@pytest.mark.parametrize(("source", "value", "message"), BAD)
def test_a_bad_value_is_a_template_error_naming_the_filter(
    source: str, value: Any, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        render(source, "de", v=value)
    assert message in str(caught.value)
    assert str(caught.value).startswith("correspondence 'L' (de): ")


def test_a_missing_value_says_how_to_make_it_optional() -> None:
    with pytest.raises(TemplateError, match=r"does not have .*'\| default\(\.\.\.\)'"):
        render("{{ case.data.nothing | format_date }}", "de")
    assert render("{{ case.data.nothing | default('2026-01-01') | format_date }}", "de") == (
        "01.01.2026"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 1e28 | format_decimal }}", "10,000,000,000,000,000,000,000,000,000"),
        (
            '{{ "12345678901234567890123456789" | format_currency("EUR") }}',
            "€12,345,678,901,234,567,890,123,456,789.00",
        ),
        ('{{ 1 | format_decimal("0." ~ "0" * 97) }}', "1." + "0" * 97),
        # A template's own language that no locale has: the default's formats, not a crash.
        ('{% set language = "tlh" %}{{ 1234.5 | format_decimal }}', "1,234.5"),
    ],
)
def test_numbers_and_patterns_within_the_bounds_format(source: str, expected: str) -> None:
    assert Renderer({}).render_inline(subject="s", body=source, context={}).html == expected


@pytest.mark.parametrize(
    ("source", "said"),
    [
        (
            '{{ "0001-01-01T00:00:00+05:00" | format_time(tz="UTC") }}',
            "format_time: the value cannot be formatted as asked",
        ),
        ("{{ 1e999 | format_decimal }}", "a number too large to write"),
    ],
)
def test_values_out_of_range_are_the_filters_error(source: str, said: str) -> None:
    with pytest.raises(TemplateError, match=said):
        Renderer({}).render_inline(subject="s", body=source, context={})


@pytest.mark.parametrize(
    "source",
    [
        '{% if false %}{{ [1] | map("format_curency", "EUR") | list }}{% endif %}',
        '{{ [1] | select("od") | list }}',
        '{{ [1] | reject("od") | list }}',
        '{{ [{"a": 1}] | selectattr("a", "evn") | list }}',
        '{{ [{"a": 1}] | rejectattr("a", "evn") | list }}',
    ],
)
def test_a_filter_or_test_named_in_a_string_is_checked_too(source: str) -> None:
    with pytest.raises(TemplateError, match=r"uses unknown (filter|test)"):
        Renderer({}).check_source(source, what="t")


def test_map_by_attribute_names_no_filter() -> None:
    Renderer({}).check_source('{{ [{"x": 1}] | map(attribute="x") | list }}', what="t")
