"""A correspondence's translations: one form per language, with a preview."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
