"""Every agent's own state in a checkpoint: saving it after checking nothing would be dropped, and
loading it after checking it is the same composition (agents, keys, shapes, dtypes)."""

from __future__ import annotations

from typing import Any

from rl_agents.core.agent import Agent
from rl_agents.core.agent_state import check_agent_state, check_saved_attributes
from rl_agents.core.state import Apply, StateError, prepare_module_load


def agents_state_dict(agents: list[Agent]) -> dict[str, Any]:
    """Every agent's state_dict, after checking that it holds all of the agent's state (UnsavedStateError)."""
    for agent in agents:
        check_agent_state(agent)
    return {agent.name: agent.state_dict() for agent in agents}


def prepare_agents_load(agents: list[Agent], state: Any, where: str = "agents") -> Apply:
    """Check every agent's saved state (the same agents, keys, shapes and dtypes); returns the loader."""
    if not isinstance(state, dict):
        raise StateError(f"{where}: expected an object, got {type(state).__name__}")
    current = {agent.name: agent for agent in agents}
    for name in state:
        if name not in current:
            raise StateError(f"checkpoint has agent {name!r}, which this trainer lacks (it has {sorted(current)})")
    for name in current:
        if name not in state:
            raise StateError(f"trainer agent {name!r} is not in the checkpoint (it has {sorted(state)})")
    appliers = [
        prepare_module_load(agent, state[agent.name], f"agent {agent.name!r}", f"{where}/{agent.name}")
        for agent in agents
    ]
    for agent in agents:
        check_saved_attributes(agent, state[agent.name], f"agent {agent.name!r}")

    def apply() -> None:
        for load in appliers:
            load()

    return apply
