"""Operators: the people who create cases and receive email as work parties."""

from postroom.operators.models import Operator
from postroom.operators.store import OperatorStore

__all__ = ["Operator", "OperatorStore"]
