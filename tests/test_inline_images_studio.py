"""The Studio's images page (upload checked, thumbnails served safely, remove), the editor's
preview and the outbox's email view showing inline images: through the Studio's own routes."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from postroom import Postroom
from postroom.correspondence.images import MAX_IMAGE_BYTES
from postroom.db import tables
from tests.conftest import make_settings
from tests.fakes import smtp_server
from tests.imagekit import noisy_png, png
from tests.studiokit import log_in, studio_client

LOGO = png(64, 32)
LETTER = {"name": "Letter", "subject": "Hello", "html": '<p><img src="cid:logo" alt="Logo"></p>'}
IMAGE = {"filename": "logo.png", "content": base64.b64encode(LOGO).decode()}


def upload(
    client: TestClient, csrf: str, content: bytes, *, filename: str = "logo.png",
    content_type: str = "image/png", content_id: str = "",
) -> Any:  # fmt: skip
    return client.post(
        "/correspondence/images",
        data={"csrf_token": csrf, "name": "Letter", "content_id": content_id},
        files={"file": (filename, content, content_type)},
        follow_redirects=False,
    )


def stored_images(pr: Postroom) -> dict[str, bytes]:
    with pr.engine.connect() as conn:
        record = pr.correspondence_store.get(conn, "Letter")
    return {cid: image.content for cid, image in record.images.items()}


def test_upload_list_serve_and_remove(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"correspondence": [{**LETTER, "html": "<p>No image yet</p>"}]})
    with studio_client(pr) as client:
        csrf = log_in(client)
        empty = client.get("/correspondence/images?name=Letter")
        assert empty.status_code == 200
        assert 'src="cid:logo"' in empty.text.replace("&lt;", "<").replace("&#34;", '"')
        assert "No images yet" in empty.text

        done = upload(client, csrf, LOGO, filename="Company Logo.png")
        assert done.status_code == 303, getattr(done, "text", "")
        assert stored_images(pr) == {"Company-Logo": LOGO}  # id made from the file's name
        done = upload(client, csrf, LOGO, content_id="logo")
        assert done.status_code == 303
        listed = client.get("/correspondence/images?name=Letter")
        assert 'id="image-logo"' in listed.text
        assert "/correspondence/images/file?name=Letter&amp;cid=logo" in listed.text
        assert "not shown: it is not sent" in listed.text

        served = client.get("/correspondence/images/file?name=Letter&cid=logo")
        assert served.status_code == 200
        assert served.content == LOGO
        assert served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in served.headers["content-security-policy"]
        assert client.get("/correspondence/images/file?name=Letter&cid=nope").status_code == 404

        with pr.engine.connect() as conn:
            saved_by = conn.execute(
                select(tables.correspondence_versions.c.saved_by).order_by(
                    tables.correspondence_versions.c.number.desc()
                )
            ).first()
        assert saved_by is not None
        assert saved_by[0] == "studio:admin"  # a new version, saved by the Studio's user

        gone = client.post(
            "/correspondence/images/remove",
            data={"csrf_token": csrf, "name": "Letter", "content_id": "Company-Logo"},
            follow_redirects=False,
        )
        assert gone.status_code == 303
        assert set(stored_images(pr)) == {"logo"}
        assert (
            client.post(
                "/correspondence/images/remove",
                data={"name": "Letter", "content_id": "logo"},
                follow_redirects=False,
            ).status_code
            == 403
        )  # no CSRF token: nothing removed
        assert set(stored_images(pr)) == {"logo"}


def test_bad_uploads_are_refused_with_a_clear_message(sqlite_postroom: Postroom) -> None:
    pr = sqlite_postroom
    pr.apply({"correspondence": [{**LETTER, "images": {"logo": IMAGE}}]})
    html_page = b"<!doctype html><script>alert(document.cookie)</script>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    refusals = {
        "page.png": (html_page, "image/png", "not a PNG, JPEG, GIF or WebP image"),
        "drawing.png": (svg, "image/png", "SVG and other types are not sent inline"),
        "drawing.svg": (svg, "image/svg+xml", "not a PNG, JPEG, GIF or WebP image"),
        "photo.jpg": (LOGO, "image/jpeg", "said to be image/jpeg, but the file is image/png"),
        "big.png": (
            noisy_png(600, 600),
            "image/png",
            f"big.png: {len(noisy_png(600, 600)):,} bytes; an inline image may have at most "
            f"{MAX_IMAGE_BYTES:,}",
        ),
        "empty.png": (b"", "image/png", "image empty.png: the file is empty"),
    }
    with studio_client(pr) as client:
        csrf = log_in(client)
        for filename, (content, kind, message) in refusals.items():
            refused = upload(client, csrf, content, filename=filename, content_type=kind)
            assert refused.status_code == 422, filename
            text = refused.text.replace("&#39;", "'")
            assert message in text, (filename, re.findall(r'id="form-error">(.*?)</div>', text))
        bad_id = upload(client, csrf, LOGO, content_id="no spaces")
        assert "a content id is 1-64 letters" in bad_id.text
        # Removing an image the HTML shows is refused, naming the cid.
        shown = client.post(
            "/correspondence/images/remove",
            data={"csrf_token": csrf, "name": "Letter", "content_id": "logo"},
        )
        assert shown.status_code == 422
        assert "shows cid:logo" in shown.text
    assert stored_images(pr) == {"logo": LOGO}


def test_preview_and_outbox_view_show_the_image_as_data(tmp_path: Path) -> None:
    data_uri = "data:image/png;base64," + base64.b64encode(LOGO).decode()
    with (
        smtp_server() as srv,
        Postroom(make_settings(f"sqlite:///{tmp_path / 'p.db'}")) as pr,
    ):
        pr.apply(
            {
                "accounts": [
                    {"name": "Default", "address": "a@example.com", "host": "127.0.0.1",
                     "port": srv.port, "security": "none"}
                ],
                "correspondence": [{**LETTER, "images": {"logo": IMAGE}}],
            }
        )  # fmt: skip
        outbox_id = pr.send(to=["b@example.org"], correspondence="Letter", class_name="Default")
        asyncio.run(pr.agent().run(until_idle=True))
        with studio_client(pr) as client:
            csrf = log_in(client)
            form = {"csrf_token": csrf, "existing": "on", **LETTER, "language": "en", "text": ""}
            preview = client.post("/correspondence/preview", data=form)
            assert preview.status_code == 200
            assert f'src="{data_uri}"' in preview.text
            assert "img-src data:" in preview.headers["content-security-policy"]
            body = client.get(f"/outbox/{outbox_id}/body")
            assert f'src="{data_uri}"' in body.text
            assert "img-src data:" in body.headers["content-security-policy"]
            entry = client.get(f"/outbox/{outbox_id}").text
            # Shown in place, so listed as the HTML's images, not as attachments.
            assert "Images shown in the HTML" in entry
            assert "<code>cid:logo</code>" in entry
            assert "Attachments in the email" not in entry
        [received] = srv.sink.received
    assert base64.b64encode(LOGO)[:40] in received.raw
