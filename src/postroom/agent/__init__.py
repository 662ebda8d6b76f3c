"""The sender agent and its delivery machinery."""

from postroom.agent.agent import AgentConfig, SenderAgent
from postroom.agent.delivery import Deliverer
from postroom.agent.recording import AgentStats

__all__ = ["AgentConfig", "AgentStats", "Deliverer", "SenderAgent"]
