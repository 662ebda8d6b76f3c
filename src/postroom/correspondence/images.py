"""Checking inline images: the type read from the bytes, the size bounded. Pure, no I/O.

The type a file claims (its name, a form's Content-Type) is not trusted: an image is
sent as what its first bytes say it is, and refused when they say nothing known or
contradict the claim. SVG is refused: it can carry script and remote references.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGES_BYTES = 5 * 1024 * 1024  # all of one correspondence's images together
MAX_IMAGES = 20

TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


class _Sized(Protocol):
    @property
    def filename(self) -> str: ...
    @property
    def content(self) -> bytes: ...


def sniff(content: bytes) -> str | None:
    """The image type the bytes begin with, or None."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(content: bytes, *, content_type: str, filename: str) -> str:
    """The image's checked type; ValueError naming the file when it is not one we send."""
    if not content:
        raise ValueError(f"image {filename}: the file is empty")
    if len(content) > MAX_IMAGE_BYTES:
        raise ValueError(
            f"image {filename}: {len(content):,} bytes; an inline image may have at most "
            f"{MAX_IMAGE_BYTES:,}"
        )
    found = sniff(content)
    if found is None:
        raise ValueError(
            f"image {filename}: not a PNG, JPEG, GIF or WebP image (SVG and other types are "
            "not sent inline)"
        )
    claimed = content_type.strip().lower()
    if claimed == "image/jpg":
        claimed = "image/jpeg"
    if claimed and claimed != found:
        raise ValueError(f"image {filename}: said to be {claimed}, but the file is {found}")
    return found


def check_images(images: Iterable[_Sized]) -> None:
    """At most :data:`MAX_IMAGES` images, :data:`MAX_IMAGES_BYTES` in all."""
    items = list(images)
    if len(items) > MAX_IMAGES:
        raise ValueError(f"{len(items)} images; a correspondence may have at most {MAX_IMAGES}")
    total = sum(len(i.content) for i in items)
    if total > MAX_IMAGES_BYTES:
        raise ValueError(
            f"the images take {total:,} bytes together; at most {MAX_IMAGES_BYTES:,} are allowed"
        )
