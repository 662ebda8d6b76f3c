"""Suppressions: the list (search, export), add and remove."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
