"""Real images for the inline-image tests: PNGs of known size, written with zlib."""

from __future__ import annotations

import random
import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def _png(width: int, height: int, pixels: bytes, *, level: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(pixels, level))
        + _chunk(b"IEND", b"")
    )


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    """A valid ``width`` x ``height`` PNG of one colour."""
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    return _png(width, height, row * height, level=9)


def noisy_png(width: int, height: int, *, seed: int = 1) -> bytes:
    """A PNG that does not compress: its size grows with its pixels (for size limits)."""
    noise = random.Random(seed)
    rows = b"".join(b"\x00" + noise.randbytes(width * 3) for _ in range(height))
    return _png(width, height, rows, level=0)
