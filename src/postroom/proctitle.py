"""Naming Postroom's own processes in ``ps`` and ``top``."""

from __future__ import annotations

import setproctitle


def name_process(title: str) -> None:
    """Show ``postroom: <title>`` instead of ``python -c 'from multiprocessing…'``."""
    setproctitle.setproctitle(f"postroom: {title}")
