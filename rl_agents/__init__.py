"""rl-agents: compose reinforcement-learning agents (PPO, RND, ...) under one mediating Trainer."""

from rl_agents.agent import Agent, CompositionError, DataSpec, EnvContext, RewardStream, Schedule
from rl_agents.agents import PPO, RND
from rl_agents.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Agent",
    "CompositionError",
    "DataSpec",
    "EnvContext",
    "NonFiniteLossError",
    "PPO",
    "RND",
    "RewardStream",
    "Schedule",
    "Trainer",
]
__version__ = "0.1.0"
