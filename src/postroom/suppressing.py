"""The suppression list as the facade offers it: list, add, remove.

Kept apart from :mod:`postroom.app` so that the facade stays a list of services.
"""

from __future__ import annotations

from sqlalchemy import Engine

from postroom.settings import Settings
from postroom.suppression import SuppressionStore


class Suppressing:
    """The suppression methods of :class:`~postroom.Postroom`."""

    engine: Engine
    settings: Settings
    suppression_store: SuppressionStore
