"""Small types shared by the record stores."""

from __future__ import annotations

from typing import Literal

Change = Literal["created", "updated", "unchanged"]
"""What an idempotent upsert did."""
