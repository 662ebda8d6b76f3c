"""A correspondence's inline images: list with thumbnails, upload (type and size checked), remove.

Saving goes through ``apply``, as the main editor's does: the whole record, every other
field kept, checked as a YAML apply checks it (a removed image the HTML still shows is
refused, naming its ``cid:``), and kept as a new version saved by ``studio:<user>``.
"""

from __future__ import annotations

import os
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from postroom.correspondence import Correspondence
from postroom.correspondence.content_ids import shown_content_ids
from postroom.correspondence.images import MAX_IMAGE_BYTES, MAX_IMAGES, MAX_IMAGES_BYTES, TYPES
from postroom.correspondence.models import InlineImage
from postroom.errors import NotFoundError, PostroomError
from postroom.text import printable
from postroom.web import forms
from postroom.web.letters import load_correspondence, save_correspondence
from postroom.web.render import page, redirect
from postroom.web.session import Auth, Form, LoggedIn

router = APIRouter()

# An image is served as what its bytes are (only image types can be stored), never sniffed
# as anything else, and as a document it may do nothing at all.
IMAGE_POLICY = "default-src 'none'; img-src 'self'; sandbox"
_NOT_AN_ID = re.compile(r"[^A-Za-z0-9._-]+")


def _url(name: str) -> str:
    return f"/correspondence/images?name={quote(name, safe='')}"


def _shown(record: Correspondence) -> set[str]:
    """The content ids the letter's HTML shows, in any of its languages."""
    sources = [record.html, *(t.html for t in record.translations.values())]
    return {cid for html in sources for cid in shown_content_ids(html)}


def _page(
    request: Request,
    auth: Auth,
    record: Correspondence,
    *,
    error: str | None = None,
    content_id: str = "",
    status_code: int = 200,
) -> Response:
    shown = _shown(record)
    rows = [
        {"id": cid, "image": image, "shown": cid in shown}
        for cid, image in sorted(record.images.items())
    ]
    return page(
        request,
        "correspondence_images.html",
        auth,
        status_code=status_code,
        title=f"Images of {record.name}",
        record=record,
        rows=rows,
        missing=sorted(shown - set(record.images)),
        error=error,
        content_id=content_id,
        total=sum(len(i.content) for i in record.images.values()),
        limits={"image": MAX_IMAGE_BYTES, "images": MAX_IMAGES, "total": MAX_IMAGES_BYTES},
        accept=",".join(TYPES),
    )


@router.get("/correspondence/images")
def list_images(request: Request, auth: LoggedIn, name: str) -> Response:
    return _page(request, auth, load_correspondence(request, name))


@router.get("/correspondence/images/file")
def image_file(request: Request, auth: LoggedIn, name: str, cid: str) -> Response:
    """The stored image, with its checked type; nothing but an image type is ever served."""
    image = load_correspondence(request, name).images.get(cid)
    if image is None or image.content_type not in TYPES:
        raise NotFoundError(f"correspondence {name!r} has no image {cid!r}")
    return Response(
        image.content,
        media_type=image.content_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": IMAGE_POLICY,
            "Cache-Control": "private, no-cache",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(image.filename, safe='')}",
        },
    )


def _content_id(typed: str, filename: str) -> str:
    """The content id typed, or one made from the file's name (``Logo 2.png`` -> ``Logo-2``)."""
    if typed:
        return typed
    stem = PurePosixPath(filename).stem
    return _NOT_AN_ID.sub("-", stem).strip("-._")[:64]


def _filename(given: str) -> str:
    """The file's own name: a browser may send a path (``C:\\Users\\me\\logo.png``)."""
    name = PureWindowsPath(PurePosixPath(given).name).name
    return printable(name).strip()[:255] or "image"


def _read(file: BinaryIO, filename: str) -> bytes:
    """The uploaded bytes; a file over the limit is refused by its size, not read."""
    size = file.seek(0, os.SEEK_END)
    if size > MAX_IMAGE_BYTES:
        raise ValueError(
            f"image {filename}: {size:,} bytes; an inline image may have at most "
            f"{MAX_IMAGE_BYTES:,}"
        )
    file.seek(0)
    return file.read()


def _image(filename: str, content_type: str, content: bytes) -> InlineImage:
    """The checked image; ValueError with the check's own sentence (no field path)."""
    try:
        return InlineImage(filename=filename, content_type=content_type, content=content)
    except ValidationError as exc:
        raise ValueError(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from None


@router.post("/correspondence/images")
def upload_image(request: Request, auth: LoggedIn, form: Form) -> Response:
    name = forms.text(form, "name")
    record = load_correspondence(request, name)
    upload = forms.upload(form, "file")
    typed = forms.text(form, "content_id")
    try:
        if upload is None:
            raise ValueError("choose an image file to upload")
        filename = _filename(upload.filename or "")
        content = _read(upload.file, filename)
        content_id = _content_id(typed, filename)
        if not content_id:
            raise ValueError("give a content id: the name the HTML uses, as in cid:logo")
        claimed = (upload.content_type or "").strip().lower()
        # The browser's type comes from the file's name: checked against the bytes when it
        # names an image; anything else (application/octet-stream) is not a claim.
        image = _image(filename, claimed if claimed.startswith("image/") else "", content)
        replaced = content_id in record.images
        updated = record.model_copy(update={"images": {**record.images, content_id: image}})
        # Validated as a new record: the content id and the images' count and total size.
        checked = Correspondence.model_validate(updated.model_dump())
        save_correspondence(request, auth, checked)
    except (ValidationError, PostroomError, ValueError) as exc:
        message = forms.problem(exc)
        return _page(request, auth, record, error=message, content_id=typed, status_code=422)
    verb = "replaced" if replaced else "added"
    return redirect(request, _url(name), f"Image {content_id} {verb} ({len(content):,} bytes).")


@router.post("/correspondence/images/remove")
def remove_image(request: Request, auth: LoggedIn, form: Form) -> Response:
    name = forms.text(form, "name")
    content_id = forms.text(form, "content_id")
    record = load_correspondence(request, name)
    if content_id not in record.images:
        raise NotFoundError(f"correspondence {name!r} has no image {content_id!r}")
    kept: dict[str, Any] = {k: v for k, v in record.images.items() if k != content_id}
    try:
        save_correspondence(request, auth, record.model_copy(update={"images": kept}))
    except (ValidationError, PostroomError, ValueError) as exc:
        return _page(request, auth, record, error=forms.problem(exc), status_code=422)
    return redirect(request, _url(name), f"Image {content_id} removed.")
