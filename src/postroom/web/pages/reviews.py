"""The review queue: emails waiting for their reviewer; edit, approve, reject."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
