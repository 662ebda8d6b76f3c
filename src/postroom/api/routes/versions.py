"""Correspondence versions: the history, one version, a diff, restore."""

from __future__ import annotations

from fastapi import APIRouter

from postroom.app import Postroom


def router(postroom: Postroom) -> APIRouter:
    return APIRouter()
