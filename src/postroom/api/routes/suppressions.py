"""The suppression list: list (and export), add, remove."""

from __future__ import annotations

from fastapi import APIRouter

from postroom.app import Postroom


def router(postroom: Postroom) -> APIRouter:
    return APIRouter()
