"""Case data as typed at the edges (CLI pairs, Studio forms) and its limits."""

from __future__ import annotations

import json
from typing import Any

from postroom.errors import ConfigurationError

MAX_CASE_DATA_BYTES = 256 * 1024  # data to render letters from; documents are attachments


def check_data(data: dict[str, Any]) -> dict[str, Any]:
    """Case data: field names are identifiers; values are JSON scalars, lists or objects."""
    for key in data:
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigurationError(f"case data field {key!r} must be a plain identifier")
    try:
        size = len(json.dumps(data, allow_nan=False, ensure_ascii=False).encode())
    except ValueError:
        raise ConfigurationError("case data cannot hold NaN or Infinity (not JSON)") from None
    except TypeError as exc:
        raise ConfigurationError(f"case data must be JSON values: {exc}") from None
    if size > MAX_CASE_DATA_BYTES:
        raise ConfigurationError(
            f"case data is {size // 1024} KB; at most {MAX_CASE_DATA_BYTES // 1024} KB "
            "(attach documents instead)"
        )
    return data


def typed_value(raw: str) -> Any:
    """A case data value typed as text: what reads as JSON (a number, true, a list) keeps
    its type; anything else, and a JSON object, stays text."""
    try:
        value: Any = json.loads(raw)
    except ValueError:
        return raw
    return raw if isinstance(value, dict) else value


def parse_data(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs, each value typed by :func:`typed_value`."""
    data: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"case data takes name=value, not {pair!r}")
        data[key.strip()] = typed_value(raw)
    return data
