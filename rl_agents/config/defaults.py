"""What a run config leaves to its acting agent: the number of envs (``trainer.num_envs`` unset,
e.g. ``rl-agents train --env ID`` for an env without a preset)."""

from __future__ import annotations

import dataclasses

from rl_agents.config.schema import RunConfig, build_agents, make_config_envs
from rl_agents.core.agent import Agent, ContractError

# A composition without an acting agent is refused when the trainer is built; until then, this.
_NO_ACTING_AGENT_ENVS = 1


def with_num_envs(config: RunConfig, agents: list[Agent] | None = None) -> RunConfig:
    """``config`` with ``trainer.num_envs`` set: as given, else what the acting agent suggests for the
    env's spaces (:meth:`Agent.suggested_num_envs`; one probe env is made for them, then closed).
    ``agents``: the config's agents when already built."""
    if config.trainer.num_envs is not None:
        return config
    acting = next((agent for agent in agents or build_agents(config) if agent.acts), None)
    count = _NO_ACTING_AGENT_ENVS if acting is None else _suggested_num_envs(config, acting)
    return _with_trainer_num_envs(config, count)


def _suggested_num_envs(config: RunConfig, acting: Agent) -> int:
    probe = make_config_envs(_with_trainer_num_envs(config, 1))
    try:
        spaces = probe.single_observation_space, probe.single_action_space
    finally:
        probe.close()
    count = acting.suggested_num_envs(*spaces)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ContractError(
            f"agent {acting.name!r}: suggested_num_envs returned {count!r}; expected a whole number of envs >= 1"
        )
    return count


def _with_trainer_num_envs(config: RunConfig, num_envs: int) -> RunConfig:
    return dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, num_envs=num_envs))
