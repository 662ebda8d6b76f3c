"""Addresses Postroom does not send to: after a hard bounce, a complaint, or by hand."""

from postroom.suppression.models import EVERYWHERE, Suppression, SuppressionReason
from postroom.suppression.store import SuppressionStore, scope_of

__all__ = ["EVERYWHERE", "Suppression", "SuppressionReason", "SuppressionStore", "scope_of"]
