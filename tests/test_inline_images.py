"""Inline images: read from YAML next to the file, given in JSON, refused when wrong,
checked against the HTML's cid: references, and built as multipart/related."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml

from postroom import Postroom
from postroom.correspondence.images import MAX_IMAGE_BYTES
from postroom.correspondence.mime import (
    Attachment,
    InlinePart,
    Mailbox,
    OutgoingEmail,
    build_message,
)
from postroom.errors import ConfigurationError
from tests.apikit import client, issue_tokens
from tests.imagekit import noisy_png, png

LOGO = png(40, 20)
LETTER = {"name": "Letter", "subject": "Hello", "html": '<p><img src="cid:logo" alt="Logo"></p>'}


def write_yaml(tmp_path: Path, letter: dict[str, Any]) -> Path:
    path = tmp_path / "letters.yaml"
    path.write_text(yaml.safe_dump({"correspondence": [letter]}))
    return path


def test_yaml_reads_images_next_to_the_file_in_both_forms(
    tmp_path: Path, sqlite_postroom: Postroom
) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "logo.png").write_bytes(LOGO)
    (tmp_path / "sign.png").write_bytes(png(3, 2))
    letter = {
        **LETTER,
        "html": LETTER["html"] + '<img src="cid:sig">',
        "images": {"logo": "img/logo.png", "sig": {"file": "sign.png", "filename": "Sig.png"}},
    }
    sqlite_postroom.apply(write_yaml(tmp_path, letter))
    with sqlite_postroom.engine.connect() as conn:
        stored = sqlite_postroom.correspondence_store.get(conn, "Letter")
    assert stored.images["logo"].content == LOGO
    assert stored.images["logo"].filename == "logo.png"
    assert stored.images["logo"].content_type == "image/png"  # from the bytes
    assert stored.images["sig"].filename == "Sig.png"


def test_yaml_images_whose_extension_says_their_type_or_none_are_read(
    tmp_path: Path, sqlite_postroom: Postroom
) -> None:
    jpeg = b"\xff\xd8\xff\xe0" + bytes(60)
    files = {"a.jpg": jpeg, "b.JPEG": jpeg, "c.bin": LOGO, "d": LOGO, "e.png": LOGO}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    images = {name.replace(".", "-"): name for name in files}
    html = "".join(f'<img src="cid:{cid}">' for cid in images)
    sqlite_postroom.apply(write_yaml(tmp_path, {**LETTER, "html": html, "images": images}))
    with sqlite_postroom.engine.connect() as conn:
        stored = sqlite_postroom.correspondence_store.get(conn, "Letter")
    assert {cid: i.content_type for cid, i in stored.images.items()} == {
        "a-jpg": "image/jpeg",
        "b-JPEG": "image/jpeg",
        "c-bin": "image/png",
        "d": "image/png",
        "e-png": "image/png",
    }


@pytest.mark.parametrize(
    ("images", "files", "expected"),
    [
        (
            {"logo": "logo.png"},
            {},
            "correspondence[0] (Letter): images.logo: cannot read logo.png: "
            "No such file or directory",
        ),
        (
            {"logo": "logo.png"},
            {"logo.png": b"<html><script>alert(1)</script></html>"},
            "correspondence[0] (Letter): images.logo: logo.png: not a PNG, JPEG, GIF or WebP",
        ),
        (
            {"logo": "logo.png"},
            {"logo.png": b'<svg xmlns="http://www.w3.org/2000/svg"/>'},
            "images.logo: logo.png: not a PNG",
        ),
        (
            {"logo": {"file": "logo.png", "content_type": "image/gif"}},
            {"logo.png": LOGO},
            "images.logo: logo.png: said to be image/gif, but the file is image/png",
        ),
        (
            {"logo": "logo.gif"},
            {"logo.gif": LOGO},
            "correspondence[0] (Letter): images.logo: logo.gif: said to be image/gif, "
            "but the file is image/png",
        ),
        (
            {"logo": "logo.jpeg"},
            {"logo.jpeg": LOGO},
            "images.logo: logo.jpeg: said to be image/jpeg, but the file is image/png",
        ),
        (
            {"logo": "big.png"},
            {"big.png": noisy_png(600, 600)},
            f"images.logo: big.png is larger than {MAX_IMAGE_BYTES:,} bytes",
        ),
        (
            {"logo": {"file": "logo.png", "alt": "x"}},
            {"logo.png": LOGO},
            "images.logo: unknown key(s) alt",
        ),
        (
            {"bad id": "logo.png"},
            {"logo.png": LOGO},
            "a content id is 1-64 letters",
        ),
    ],
)
def test_yaml_image_errors_name_the_entry_and_the_file(
    tmp_path: Path,
    sqlite_postroom: Postroom,
    images: dict[str, Any],
    files: dict[str, bytes],
    expected: str,
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigurationError) as raised:
        sqlite_postroom.apply(write_yaml(tmp_path, {**LETTER, "images": images}))
    assert expected in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_a_cid_the_correspondence_lacks_is_refused_naming_it(sqlite_postroom: Postroom) -> None:
    logo = {"filename": "logo.png", "content": base64.b64encode(LOGO).decode()}
    with pytest.raises(ConfigurationError) as raised:
        sqlite_postroom.apply({"correspondence": [{**LETTER, "images": {}}]})
    assert "correspondence 'Letter' html: shows cid:logo" in str(raised.value)
    assert "no image 'logo'" in str(raised.value)
    # A fragment's cid is checked against the letter that includes it (sent with its images).
    footer = {"name": "Footer", "html": '<img src="cid:seal">'}
    with_footer = {**LETTER, "html": LETTER["html"] + '{% include "Footer" %}'}
    with pytest.raises(ConfigurationError, match=r"cid:seal \(in 'Footer', which it includes\)"):
        sqlite_postroom.apply(
            {"correspondence": [footer, {**with_footer, "images": {"logo": logo}}]}
        )
    with pytest.raises(ConfigurationError, match=r"translations\.de\.html: shows cid:banner"):
        sqlite_postroom.apply(
            {
                "correspondence": [
                    {
                        **LETTER,
                        "images": {"logo": logo},
                        "translations": {
                            "de": {"subject": "Hallo", "html": '<img src="cid:banner">'}
                        },
                    }
                ]
            }
        )
    # Accepted: every image present; a cid made by the template, or prose, is not read.
    seal = {"filename": "seal.png", "content": base64.b64encode(png(2, 2)).decode()}
    sqlite_postroom.apply(
        {
            "correspondence": [
                footer,
                {
                    **with_footer,
                    "html": with_footer["html"] + '<img src="cid:{{ case.id }}"> write cid:x',
                    "images": {"logo": logo, "seal": seal},
                },
            ]
        }
    )


def test_api_takes_base64_images_and_names_the_wrong_field(postroom: Postroom) -> None:
    tokens = issue_tokens(postroom)
    h = tokens.admin
    image = {"filename": "logo.png", "content": base64.b64encode(LOGO).decode()}
    with client(postroom) as c:
        created = c.post(
            "/api/v1/correspondence", json={**LETTER, "images": {"logo": image}}, headers=h
        )
        assert created.status_code == 201, created.text
        got = c.get("/api/v1/correspondence/Letter", headers=h).json()
        assert got["images"]["logo"]["content_type"] == "image/png"
        assert base64.b64decode(got["images"]["logo"]["content"]) == LOGO
        cases = {
            "not base64!": ("body.images.logo.content", "image content must be base64"),
            base64.b64encode(b"GIF89a-but-a-text").decode(): None,
            base64.b64encode(b"<svg/>").decode(): (
                "body.images.logo",
                "image logo.png: not a PNG, JPEG, GIF or WebP image",
            ),
            base64.b64encode(noisy_png(600, 600)).decode(): (
                "body.images.logo",
                "an inline image may have at most",
            ),
        }
        for content, expected in cases.items():
            body = {**LETTER, "images": {"logo": {**image, "content": content}}}
            r = c.put("/api/v1/correspondence/Letter", json=body, headers=h)
            if expected is None:  # a GIF's bytes: accepted as image/gif, whatever the name says
                assert r.status_code == 200, r.text
                assert r.json()["images"]["logo"]["content_type"] == "image/gif"
                continue
            assert r.status_code == 422, r.text
            [error] = r.json()["errors"]
            assert error["field"] == expected[0]
            assert expected[1] in error["message"]
        missing = c.put("/api/v1/correspondence/Letter", json={**LETTER, "images": {}}, headers=h)
        assert missing.status_code == 422
        [error] = missing.json()["errors"]
        assert error["field"] == "body.html"
        assert error["message"].startswith("shows cid:logo, but the correspondence has no image")
        typed = {**image, "content_type": "image/jpeg"}
        wrong = c.put(
            "/api/v1/correspondence/Letter", json={**LETTER, "images": {"logo": typed}}, headers=h
        )
        assert wrong.status_code == 422
        assert "said to be image/jpeg, but the file is image/png" in wrong.text


def _built(inline: tuple[InlinePart, ...], *, attachments: bool = False) -> EmailMessage:
    outgoing = OutgoingEmail(
        sender=Mailbox("a@example.com"),
        to=(Mailbox("b@example.com"),),
        subject="Hi",
        html='<p><img src="cid:logo"></p>',
        text="Hi",
        message_id="<m1@example.com>",
        date=datetime(2026, 1, 2, tzinfo=UTC),
        inline=inline,
        attachments=(Attachment("a.pdf", "application/pdf", b"%PDF-1.4"),) if attachments else (),
    )
    parsed = email.message_from_bytes(build_message(outgoing), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_image_goes_in_multipart_related_inside_the_alternative() -> None:
    message = _built((InlinePart("logo", "logo.png", "image/png", LOGO),), attachments=True)
    shape = [p.get_content_type() for p in message.walk()]
    assert shape == [
        "multipart/mixed", "multipart/alternative", "text/plain", "multipart/related",
        "text/html", "image/png", "application/pdf",
    ]  # fmt: skip
    [related] = [p for p in message.walk() if p.get_content_type() == "multipart/related"]
    assert related.get_param("type") == "text/html"
    image = next(p for p in message.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_payload(decode=True) == LOGO
    assert not message.defects
    assert all(not p.defects for p in message.walk())
