"""Inline images in a real browser: the email the SMTP server received, opened in Chromium
as a mail reader opens it (MHTML resolves cid: to the related part), and the Studio's
images page: upload, thumbnail, a refused upload, the editor's preview."""

from __future__ import annotations

import base64
import email
import email.policy
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.imagekit import png
from tests.studiokit import (
    PHONE,
    WIDE,
    accessibility_problems,
    browser_fixture,
    layout_problems,
    log_in_page,
    logged_in_page,
    mortgage_studio,
    shot,
    skip_without_chromium,
    watch,
)
from tests.test_server import wait_for

skip_without_chromium()
browser = browser_fixture()

WIDTH, HEIGHT = 180, 60
LOGO = png(WIDTH, HEIGHT, (20, 90, 160))
LETTER = {
    "name": "Welcome Letter",
    "subject": "Welcome",
    "html": '<h1>Welcome</h1><p><img id="logo" src="cid:logo" alt="Contoso logo"></p>'
    "<p>Dear customer, your case is open.</p>",
    "images": {"logo": {"filename": "logo.png", "content": base64.b64encode(LOGO).decode()}},
}
IMAGE_STATE = "() => { const i = document.querySelector('#logo'); return [i.complete, i.naturalWidth, i.naturalHeight]; }"  # noqa: E501


def as_mhtml(raw: bytes) -> bytes:
    """The received message's multipart/related part, byte for byte as received, under the
    message's own From, To, Subject and Date: the MHTML a browser opens as a web archive."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    [related] = [p for p in message.walk() if p.get_content_type() == "multipart/related"]
    boundary = str(related.get_boundary()).encode()
    start = raw.index(b"Content-Type: multipart/related")
    end = raw.index(b"--" + boundary + b"--", start) + len(boundary) + 4
    head, _, _ = raw.partition(b"\r\n\r\n")
    kept = [
        line
        for line in head.split(b"\r\n")
        if line.split(b":")[0].lower() in (b"from", b"to", b"subject", b"date", b"mime-version")
    ]
    return b"\r\n".join(kept) + b"\r\n" + raw[start:end] + b"\r\n"


def test_the_received_email_shows_its_inline_image_in_chromium(
    browser: Browser, tmp_path: Path
) -> None:
    with mortgage_studio(tmp_path) as (pr, srv, _):
        pr.apply({"correspondence": [LETTER]})
        pr.send(to=["carol@example.org"], correspondence="Welcome Letter", class_name="Default")
        wait_for(lambda: len(srv.sink.received) == 1, limit=30)
        [received] = srv.sink.received
    raw = received.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (tmp_path / "received.eml").write_bytes(raw)
    archive = tmp_path / "received.mhtml"
    archive.write_bytes(as_mhtml(raw))
    context = browser.new_context(viewport={"width": 700, "height": 400})
    try:
        page = context.new_page()
        page.goto(archive.as_uri())
        expect(page.locator("h1")).to_have_text("Welcome")
        page.wait_for_function("() => document.querySelector('#logo').complete")
        assert page.evaluate(IMAGE_STATE) == [True, WIDTH, HEIGHT]
        shot(page, "inline-image-received-email")
        # The same page without the image part: the browser shows a broken image, so the
        # check above sees the image the email carried, not any image.
        broken = tmp_path / "without-image.mhtml"
        text = as_mhtml(raw)
        broken.write_bytes(text.replace(b"Content-ID: <logo>", b"Content-ID: <other>"))
        page.goto(broken.as_uri())
        page.wait_for_function("() => document.querySelector('#logo').complete")
        assert page.evaluate(IMAGE_STATE)[1] == 0
    finally:
        context.close()


@pytest.mark.usefixtures("browser")
def test_studio_images_page_uploads_shows_and_refuses(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "logo.png").write_bytes(LOGO)
    (tmp_path / "invoice.png").write_bytes(b"<!doctype html><title>x</title><script>1</script>")
    with mortgage_studio(tmp_path) as (pr, _, base):
        pr.apply({"correspondence": [{**LETTER, "images": {}, "html": "<p>Dear customer</p>"}]})
        with logged_in_page(browser, base, viewport=WIDE) as page:
            page.goto(base + "/correspondence/edit?name=Welcome%20Letter")
            page.locator("#images-link").click()
            expect(page.locator("h1")).to_have_text("Images of Welcome Letter")
            expect(page.locator("#how-to")).to_contain_text('<img src="cid:logo" alt="Our logo">')

            page.get_by_label("Content id").fill("logo")
            page.get_by_label("Image file").set_input_files(str(tmp_path / "logo.png"))
            page.get_by_role("button", name="Upload").click()
            expect(page.locator(".notice")).to_contain_text("Image logo added")
            thumbnail = page.locator("#image-logo img")
            expect(thumbnail).to_be_visible()
            page.wait_for_function("() => document.querySelector('#image-logo img').complete")
            natural = thumbnail.evaluate("i => [i.naturalWidth, i.naturalHeight]")
            assert natural == [WIDTH, HEIGHT]
            expect(page.locator("#image-logo")).to_contain_text("image/png")
            shot(page, "correspondence-images")
            assert accessibility_problems(page) == []

            # The editor's preview shows the stored image once the HTML references it.
            page.goto(base + "/correspondence/edit?name=Welcome%20Letter")
            page.locator("#f-html").fill('<p><img id="logo" src="cid:logo" alt="Logo"></p>')
            page.locator("#preview-button").click()
            frame = page.frame_locator("#preview")
            expect(frame.locator("#logo")).to_be_visible()
            sizes = frame.locator("#logo").evaluate("i => [i.complete, i.naturalWidth]")
            assert sizes == [True, WIDTH]
        # A refused upload answers 422, which the browser logs as a failed resource: that
        # line, and nothing else, is expected here.
        problems: list[str] = []
        context = browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
        try:
            page = watch(context.new_page(), problems)
            log_in_page(page, base)
            page.goto(base + "/correspondence/images?name=Welcome%20Letter")
            page.get_by_label("Content id").fill("invoice")
            page.get_by_label("Image file").set_input_files(str(tmp_path / "invoice.png"))
            page.get_by_role("button", name="Upload").click()
            expect(page.locator("#form-error")).to_contain_text(
                "image invoice.png: not a PNG, JPEG, GIF or WebP image"
            )
            expect(page.locator("#image-invoice")).to_have_count(0)
            shot(page, "correspondence-images-refused")
        finally:
            context.close()
        assert [p for p in problems if "status of 422" not in p] == []
        assert len(problems) == 1
        with logged_in_page(browser, base, viewport=PHONE) as page:
            page.goto(base + "/correspondence/images?name=Welcome%20Letter")
            assert layout_problems(page) == []
            shot(page, "correspondence-images-phone")
        with pr.engine.connect() as conn:
            stored = pr.correspondence_store.get(conn, "Welcome Letter")
        assert set(stored.images) == {"logo"}
