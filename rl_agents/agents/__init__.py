"""Agents: one file each, none importing another."""

from rl_agents.agents.ppo import PPO

__all__ = ["PPO"]
