"""Reading posted forms and turning validation failures into messages for the form."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from postroom.errors import PostroomError
from postroom.text import printable


def text(form: FormData, name: str) -> str:
    """A text field, stripped; '' when absent (a file part counts as absent)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def raw(form: FormData, name: str) -> str:
    """A text field as typed (templates and PEM keep their spacing)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def optional(form: FormData, name: str) -> str | None:
    return text(form, name) or None


def checked(form: FormData, name: str) -> bool:
    return form.get(name) in ("on", "true", "1", "yes")


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    if isinstance(value, UploadFile) and value.filename:
        return value
    return None


def pairs(value: str, *, what: str) -> dict[str, str]:
    """``name = value`` lines (blank lines and lines starting with # are skipped)."""
    result: dict[str, str] = {}
    for number, typed in enumerate(value.splitlines(), start=1):
        line = typed.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, val = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} line {number}: write it as name = value")
        result[key.strip()] = val.strip()
    return result


def problem(exc: Exception) -> str:
    """The message shown next to a form for a failed validation or service error."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False, include_input=False)
        )
    if isinstance(exc, UnicodeError):
        # Checked text cannot get here; a codec's own words would puzzle the reader.
        return f"text is not valid Unicode: {printable(str(exc))}"
    if isinstance(exc, PostroomError | ValueError):
        return str(exc)
    raise exc


def without(values: dict[str, Any], *secrets: str) -> dict[str, Any]:
    """The typed values to show again, minus the secrets (never rendered back)."""
    return {k: v for k, v in values.items() if k not in secrets}
