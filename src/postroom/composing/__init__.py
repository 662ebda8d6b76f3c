"""Rendering and building a large batch of emails in a pool of processes."""

from postroom.composing.plan import Plan, Shard
from postroom.composing.pool import ComposePool, pool_processes

__all__ = ["ComposePool", "Plan", "Shard", "pool_processes"]
