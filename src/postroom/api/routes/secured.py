"""Email accounts, authentication profiles and keystores: the records that hold secrets.

Their routes are built as every record's are (:mod:`postroom.api.routes.records`); their
descriptions make the secrets write-only (shown as ``*_set`` flags).
"""

from __future__ import annotations

from fastapi import APIRouter

from postroom import catalog
from postroom.api.routes import records
from postroom.app import Postroom


def router(postroom: Postroom) -> APIRouter:
    kinds = (catalog.ACCOUNTS, catalog.AUTH_PROFILES, catalog.KEYSTORES)
    return records.router(postroom, kinds)
