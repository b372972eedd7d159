"""How the hub reaches its ranks: one interface (``base.Fanin``), one implementation per
way (``direct.DirectFanin``: each rank talks to the hub; ``agents.AgentFanin``: one agent per
node does), chosen per launch by ``choose``."""

from __future__ import annotations

from .agents import AgentFanin
from .base import Fanin, FaninContext, FaninSettings
from .direct import DirectFanin

__all__ = ["AgentFanin", "DirectFanin", "Fanin", "FaninContext", "FaninSettings", "choose"]


def choose(setting: str, nodes: int) -> type[Fanin]:
    """The fan-in for ``HubKernel.fanin`` (``direct``, ``agents`` or ``auto``: agents when
    the ranks span more than one node)."""
    if setting == "agents" or (setting == "auto" and nodes > 1):
        return AgentFanin
    return DirectFanin
