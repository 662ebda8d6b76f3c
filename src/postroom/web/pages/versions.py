"""A correspondence's versions: history, diff, the emails each sent, restore."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
