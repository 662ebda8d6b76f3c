"""Prometheus metrics, read from the database at scrape time, in a registry per API."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from postroom.app import Postroom
from postroom.security.door import DoorCollector

AGENT_STATES = ("running", "degraded", "stale", "stopped")


class PostroomCollector(Collector):
    """Outbox rows by status and agents by state, as gauges."""

    def __init__(self, postroom: Postroom) -> None:
        self._postroom = postroom

    def collect(self) -> Iterator[Metric]:
        outbox = GaugeMetricFamily(
            "postroom_outbox_emails", "Outbox emails by status", labels=["status"]
        )
        for status, count in sorted(self._postroom.outbox_counts().items()):
            outbox.add_metric([str(status)], count)
        yield outbox
        listed = self._postroom.agents()
        states = Counter(a.state for a in listed)
        agents = GaugeMetricFamily("postroom_agents", "Sender agents by state", labels=["state"])
        for state in sorted({*AGENT_STATES, *states}):
            agents.add_metric([state], states.get(state, 0))
        yield agents
        paused = sum(1 for a in listed if a.paused and a.state == "running")
        yield GaugeMetricFamily("postroom_agents_paused", "Running agents that are paused", paused)
        errors = GaugeMetricFamily(
            "postroom_agent_database_errors",
            "Database errors each live agent met in a row (0 when the database answers)",
            labels=["agent"],
        )
        for a in listed:
            if a.state in ("running", "degraded"):
                errors.add_metric([a.id], a.db_errors)
        yield errors


def registry_for(postroom: Postroom) -> CollectorRegistry:
    # Not the global REGISTRY: two APIs in one process (tests) must not share metrics.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PostroomCollector(postroom))
    registry.register(DoorCollector(postroom))
    return registry
