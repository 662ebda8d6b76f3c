"""Received mail as the facade offers it: listing, showing, triage and conversations.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

from sqlalchemy import Engine

from postroom.cases.service import CaseService


class Receiving:
    """The received-mail methods of :class:`~postroom.Postroom`."""

    engine: Engine
    cases: CaseService
