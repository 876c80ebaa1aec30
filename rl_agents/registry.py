"""Agents by the names used in configs and on the command line (``--agents ppo+rnd``)."""

from __future__ import annotations

from rl_agents.agent import Agent
from rl_agents.agents import PPO, RND

AGENTS: dict[str, type[Agent]] = {
    "ppo": PPO,
    "rnd": RND,
}
