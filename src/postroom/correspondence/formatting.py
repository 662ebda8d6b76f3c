"""Babel's date and number formatting as template filters, in the rendering's language.

``{{ case.data.due | format_date }}`` prints ``24.12.2026`` in a German email and
``Dec 24, 2026`` in an English one: each filter reads ``language`` from the template
context (the renderer sets it to the language of the text it renders). Values come
from case data, so dates may be ``YYYY-MM-DD`` strings and amounts numeric strings.

Every input is bounded before Babel sees it: a pattern's length, a number's size (a
Decimal of a million digits would print as a million characters), a time zone's name.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Collection
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation, localcontext
from functools import partial, wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError, dates, numbers
from jinja2 import pass_context
from jinja2.runtime import Context, Undefined

from postroom.languages import DEFAULT_LANGUAGE, babel_locale

MAX_PATTERN = 100
"""Characters a format pattern may have (``dd.MM.yyyy``, ``#,##0.00``)."""
MAX_INPUT = 64
"""Characters a date, time or number given as text may have."""
MAX_MAGNITUDE = 30
"""Powers of ten a number may reach, either way (an amount of 10**30 is not an amount)."""

_STYLES = ("short", "medium", "long", "full")
_CURRENCY = re.compile(r"[A-Z]{3}")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-/]{0,63}")


class FormatError(Exception):
    """A formatting filter was given a value or argument it cannot format."""


def _locale(context: Context) -> Locale:
    language = context.get("language")
    if not isinstance(language, str) or not language:
        language = DEFAULT_LANGUAGE
    try:
        return babel_locale(language)
    except (ValueError, UnknownLocaleError):
        # The renderer sets checked tags; a template's own {% set language %} is not one.
        return babel_locale(DEFAULT_LANGUAGE)


def _given(value: Any, name: str) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # the renderer's message: use '| default(...)'
    if value is None or value == "":
        raise FormatError(f"{name}: no value to format (use '| default(...)' for optional fields)")
    return value


def _pattern(format: Any, name: str, *, default: str | None) -> str | None:
    if format is None:
        return default
    if not isinstance(format, str) or not format:
        raise FormatError(f"{name}: the format must be text, e.g. 'medium' or a pattern")
    if len(format) > MAX_PATTERN:
        raise FormatError(f"{name}: a format pattern may have at most {MAX_PATTERN} characters")
    return format


def _text(value: str, name: str, kind: str) -> str:
    text = value.strip()
    if len(text) > MAX_INPUT:
        raise FormatError(f"{name}: {text[:20]!r}... is too long to be {kind}")
    return text


def _as_datetime(value: Any, name: str) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        text = _text(value, name, "a date")
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            return datetime.fromisoformat(text)
        except ValueError:
            pass
        raise FormatError(
            f"{name}: {text!r} is not a date (YYYY-MM-DD) or date and time "
            "(YYYY-MM-DDTHH:MM:SS+01:00)"
        )
    raise FormatError(f"{name}: {_described(value)} is not a date")


def _described(value: Any) -> str:
    """A value as a template's author knows it: ``12 (a number)``, ``a list``."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float | Decimal):
        text = str(value) if not isinstance(value, int) or value.bit_length() < 64 else ""
        return f"{text} (a number)" if text and len(text) <= 20 else "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping (several values)"
    if isinstance(value, time):
        return "a time of day"
    return f"a value of type {type(value).__name__}"


def _zone(tz: Any, name: str) -> tzinfo | None:
    if tz is None:
        return None
    if not isinstance(tz, str) or not _ZONE.fullmatch(tz) or ".." in tz:
        raise FormatError(f"{name}: tz must be a time zone name such as 'Europe/Berlin'")
    if tz.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise FormatError(f"{name}: {tz!r} is not a time zone Postroom knows") from None


def _number(value: Any, name: str) -> int | float | Decimal:
    if isinstance(value, bool):
        raise FormatError(f"{name}: true or false is not a number")
    number: int | float | Decimal
    if isinstance(value, int | float | Decimal):
        number = value
    elif isinstance(value, str):
        text = _text(value, name, "a number")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise FormatError(f"{name}: {text!r} is not a number") from None
    else:
        raise FormatError(f"{name}: {_described(value)} is not a number")
    if isinstance(number, int):
        # Sized by its bits first: Python would refuse to print a long one anyway.
        if number.bit_length() > MAX_MAGNITUDE * 4 or abs(number) >= 10**MAX_MAGNITUDE:
            raise FormatError(f"{name}: the number is too large to format")
        return number
    if isinstance(number, float) and not math.isfinite(number):
        raise FormatError(f"{name}: {number} is not a number that can be formatted")
    if isinstance(number, Decimal):
        if not number.is_finite():
            raise FormatError(f"{name}: {number} is not a number that can be formatted")
        if number and not -MAX_MAGNITUDE <= number.adjusted() < MAX_MAGNITUDE:
            raise FormatError(f"{name}: the number is too large or too small to format")
    elif number and not 10.0**-MAX_MAGNITUDE <= abs(number) < 10.0**MAX_MAGNITUDE:
        raise FormatError(f"{name}: the number is too large or too small to format")
    return number


T = TypeVar("T")


def _babel(name: str, call: Callable[[], T]) -> T:
    """Babel's result, its own errors (a bad pattern) said as the filter's."""
    try:
        # Room for the longest pattern's digits on the largest number allowed: Decimal's
        # default 28 digits would refuse 1e28 or a pattern with 30 decimals.
        with localcontext() as decimals:
            decimals.prec = 2 * (MAX_PATTERN + MAX_MAGNITUDE)
            return call()
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise FormatError(f"{name}: {exc}") from None
    except (ArithmeticError, UnknownLocaleError):
        # decimal.InvalidOperation says only its class; a date past year 9999 overflows.
        raise FormatError(f"{name}: the value cannot be formatted as asked") from None


_EXAMPLES = {"currency": "'EUR'"}


def argument_problem(name: str, positional: int, keywords: Collection[str]) -> str | None:
    """What is wrong with calling the formatting filter ``name`` with ``positional``
    arguments and ``keywords`` (beyond the value piped in), or None (also for any other
    filter). Said at apply and at rendering alike."""
    function = _UNWRAPPED.get(name)
    if function is None:
        return None
    parameters = list(inspect.signature(function).parameters.values())[2:]  # context, value
    names = [p.name for p in parameters]
    if positional > len(names):
        if not names:
            return f"{name} takes no arguments"
        most = f"{len(names)} argument{'s' if len(names) > 1 else ''}"
        return f"{name} takes at most {most} ({', '.join(names)})"
    for keyword in keywords:
        if keyword not in names:
            known = f" (it takes {', '.join(names)})" if names else " (it takes none)"
            return f"{name} has no argument {keyword!r}{known}"
        if names.index(keyword) < positional:
            return f"{name}: {keyword} is given twice, by position and by name"
    for index, parameter in enumerate(parameters):
        given = index < positional or parameter.name in keywords
        if parameter.default is inspect.Parameter.empty and not given:
            example = _EXAMPLES.get(parameter.name, "...")
            return f"{name} needs a {parameter.name}, e.g. {name}({example})"
    return None


def _checked(function: Callable[..., str]) -> Callable[..., str]:
    """The filter, its arguments checked first: a wrong call from ``map('format_currency')``
    is refused as apply refuses a written one, not with Python's TypeError."""
    name = function.__name__

    @wraps(function)
    def call(context: Context, value: Any, *args: Any, **kwargs: Any) -> str:
        problem = argument_problem(name, len(args), list(kwargs))
        if problem is not None:
            raise FormatError(problem)
        return function(context, value, *args, **kwargs)

    return pass_context(call)


def format_date(context: Context, value: Any, format: Any = "medium") -> str:
    """A date as the language writes it: ``medium`` (24.12.2026), ``long``, or a pattern."""
    moment = _as_datetime(_given(value, "format_date"), "format_date")
    pattern = _pattern(format, "format_date", default="medium")
    day = moment.date() if isinstance(moment, datetime) else moment
    locale = _locale(context)
    return _babel("format_date", lambda: dates.format_date(day, pattern or "medium", locale))


def format_datetime(context: Context, value: Any, format: Any = "medium", tz: Any = None) -> str:
    """A date and time in the language, in time zone ``tz`` when given (else as written)."""
    moment = _as_datetime(_given(value, "format_datetime"), "format_datetime")
    if not isinstance(moment, datetime):
        raise FormatError(
            "format_datetime: a date without a time; use format_date, or give YYYY-MM-DDTHH:MM:SS"
        )
    zone = _zone(tz, "format_datetime")
    pattern = _pattern(format, "format_datetime", default="medium") or "medium"
    locale = _locale(context)
    return _babel(
        "format_datetime",
        lambda: dates.format_datetime(moment, pattern, tzinfo=zone or moment.tzinfo, locale=locale),
    )


def format_time(context: Context, value: Any, format: Any = "medium", tz: Any = None) -> str:
    """A time of day in the language (from a time, or a date and time)."""
    given = _given(value, "format_time")
    moment: datetime | time
    if isinstance(given, time):
        moment = given
    else:
        parsed = _as_datetime(given, "format_time")
        if not isinstance(parsed, datetime):
            raise FormatError("format_time: a date without a time (give YYYY-MM-DDTHH:MM:SS)")
        moment = parsed
    zone = _zone(tz, "format_time")
    pattern = _pattern(format, "format_time", default="medium") or "medium"
    locale = _locale(context)
    if isinstance(moment, datetime) and zone is not None:
        moment = _babel("format_time", partial(moment.astimezone, zone))
    return _babel("format_time", lambda: dates.format_time(moment, pattern, locale=locale))


def format_decimal(context: Context, value: Any, format: Any = None) -> str:
    """A number in the language: ``1.234,5`` in German, ``1,234.5`` in English."""
    number = _number(_given(value, "format_decimal"), "format_decimal")
    pattern = _pattern(format, "format_decimal", default=None)
    locale = _locale(context)
    return _babel("format_decimal", lambda: numbers.format_decimal(number, pattern, locale))


def format_number(context: Context, value: Any) -> str:
    """A number in the language, as Babel's default decimal format writes it."""
    number = _number(_given(value, "format_number"), "format_number")
    locale = _locale(context)
    return _babel("format_number", lambda: numbers.format_decimal(number, locale=locale))


def format_currency(context: Context, value: Any, currency: Any, format: Any = None) -> str:
    """An amount in ``currency`` (ISO 4217, e.g. EUR) as the language writes it."""
    number = _number(_given(value, "format_currency"), "format_currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise FormatError(
            "format_currency: the currency must be a three-letter ISO 4217 code such as 'EUR'"
        )
    if not numbers.is_currency(currency):
        raise FormatError(f"format_currency: {currency!r} is not a currency Postroom knows")
    pattern = _pattern(format, "format_currency", default=None)
    locale = _locale(context)
    return _babel(
        "format_currency",
        lambda: numbers.format_currency(number, currency, pattern, locale=locale),
    )


def format_percent(context: Context, value: Any, format: Any = None) -> str:
    """A fraction as a percentage in the language: 0.25 is ``25 %`` in German."""
    number = _number(_given(value, "format_percent"), "format_percent")
    pattern = _pattern(format, "format_percent", default=None)
    locale = _locale(context)
    return _babel("format_percent", lambda: numbers.format_percent(number, pattern, locale))


_UNWRAPPED: dict[str, Callable[..., str]] = {
    f.__name__: f
    for f in (
        format_date,
        format_datetime,
        format_time,
        format_number,
        format_decimal,
        format_currency,
        format_percent,
    )
}

FILTERS: dict[str, Callable[..., str]] = {name: _checked(f) for name, f in _UNWRAPPED.items()}
"""The formatting filters, by the name templates use (each given the template context)."""
