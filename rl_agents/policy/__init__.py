"""A trained policy without environments: load it from a checkpoint, predict, export it."""

from rl_agents.policy.policy import Policy

__all__ = ["Policy"]
