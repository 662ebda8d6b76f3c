"""The sender agent and its delivery machinery."""

from postroom.agent.agent import AgentConfig, AgentStats, SenderAgent
from postroom.agent.delivery import Deliverer

__all__ = ["AgentConfig", "AgentStats", "Deliverer", "SenderAgent"]
