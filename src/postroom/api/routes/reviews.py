"""Reviews before sending: the queue, one review, approve (with edits) and reject."""

from __future__ import annotations

from fastapi import APIRouter

from postroom.app import Postroom


def router(postroom: Postroom) -> APIRouter:
    return APIRouter()
