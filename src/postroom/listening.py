"""The inbound listeners as the facade offers them: one poll, and listeners for agents.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

from sqlalchemy import Engine


class Listening:
    """The inbound-listener methods of :class:`~postroom.Postroom`."""

    engine: Engine
