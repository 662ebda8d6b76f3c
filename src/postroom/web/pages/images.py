"""A correspondence's inline images: upload (type and size checked), remove."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
