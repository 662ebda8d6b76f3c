"""Reading posted forms and turning validation failures into messages for the form."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from postroom.errors import InvalidTextError, PostroomError
from postroom.text import check_unicode, printable

URLENCODED = "application/x-www-form-urlencoded"
# Starlette's own bound on the number of fields, kept for forms parsed here.
MAX_FIELDS = 1000


async def read(request: Request, *, limit: int) -> FormData:
    """The posted form, its fields as large as the body may be (``limit``).

    A urlencoded form is parsed here, keeping bytes that are not UTF-8 as lone
    surrogates for :func:`check_text` to refuse by field: Starlette's parser would
    replace them with U+FFFD, silently storing text nobody typed. Multipart parts have
    no smaller bound than the body (Starlette's default is 1 MB a field, answered with a
    bare 400): the body limit already caps what is held, a urlencoded field may be as
    large, and a big template or certificate bundle is a fair thing to paste.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != URLENCODED:
        return await request.form(max_part_size=limit)
    return urlencoded(await request.body())


def urlencoded(body: bytes) -> FormData:
    """A urlencoded body's fields, undecodable bytes kept as surrogates (unchecked)."""
    items: list[tuple[str, str | UploadFile]] = []
    for piece in body.split(b"&"):
        if not piece:
            continue
        if len(items) == MAX_FIELDS:
            raise HTTPException(400, f"the form has more than {MAX_FIELDS} fields")
        name, _, value = piece.partition(b"=")
        items.append((_unquoted(name), _unquoted(value)))
    return FormData(items)


def _unquoted(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


def check_text(form: FormData) -> None:
    """Refuse (422, naming the field) a form whose names or text are not valid Unicode."""
    try:
        for name, value in form.multi_items():
            check_unicode(name, field="a form field's name")
            if isinstance(value, str):
                check_unicode(value, field=name)
    except InvalidTextError as exc:
        raise HTTPException(422, str(exc)) from None


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
