"""Agents by the names used in configs and on the command line (``--agents ppo+rnd``)."""

from __future__ import annotations

from rl_agents.agent import Agent
from rl_agents.agents import A2C, DQN, ICM, PPO, RND, SAC

AGENTS: dict[str, type[Agent]] = {
    "a2c": A2C,
    "dqn": DQN,
    "icm": ICM,
    "ppo": PPO,
    "rnd": RND,
    "sac": SAC,
}
