"""Agents: one file each, none importing another."""

from rl_agents.agents.ppo import PPO
from rl_agents.agents.rnd import RND

__all__ = ["PPO", "RND"]
