"""Review before sending: a step's email waits for a person to approve, edit or reject it."""

from postroom.reviews.models import ReviewState

__all__ = ["ReviewState"]
