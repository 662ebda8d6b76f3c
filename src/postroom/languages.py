"""Language tags: checked against Babel's locale data, written with a hyphen (``pt-BR``)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from babel import Locale, UnknownLocaleError

DEFAULT_LANGUAGE = "en"
_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}")


def check_language(value: str, *, what: str | None = "language") -> str:
    """``value`` as a known language tag (``de``, ``de-CH``, ``pt-BR``); ValueError if not.

    The message starts with ``what:``; a model's field validator passes None, as
    pydantic names the field already (``language: 'xx' is not a language ...``).
    """
    prefix = f"{what}: " if what else ""
    tag = value.strip() if isinstance(value, str) else ""
    if not _TAG.fullmatch(tag):
        raise ValueError(f"{prefix}{value!r} is not a language tag (e.g. en, de, fr-CH, pt-BR)")
    try:
        locale = Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise ValueError(
            f"{prefix}{value!r} is not a language Postroom knows (e.g. en, de, fr-CH, pt-BR)"
        ) from None
    return str(locale).replace("_", "-")


def babel_locale(tag: str) -> Locale:
    """The Babel locale of a checked tag."""
    return Locale.parse(tag.replace("-", "_"))


def best_match(wanted: str, offered: Iterable[str]) -> str | None:
    """The offered tag for ``wanted``: the same tag, else the same language (de-CH → de)."""
    choices = list(offered)
    lowered = {o.lower(): o for o in choices}
    if wanted.lower() in lowered:
        return lowered[wanted.lower()]
    primary = wanted.split("-", 1)[0].lower()
    return lowered.get(primary)
