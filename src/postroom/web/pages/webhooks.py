"""Webhooks: deliveries with their attempts, redeliver."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
