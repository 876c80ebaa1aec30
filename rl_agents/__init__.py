"""rl-agents: compose reinforcement-learning agents (PPO, RND, ...) under one mediating Trainer."""

from rl_agents.agent import Agent, CompositionError, DataSpec, EnvContext, ReplaySchedule, RewardStream, Schedule
from rl_agents.agents import A2C, DQN, PPO, RND, SAC
from rl_agents.trainer import NonFiniteLossError, Trainer

__all__ = [
    "A2C",
    "Agent",
    "CompositionError",
    "DQN",
    "DataSpec",
    "EnvContext",
    "NonFiniteLossError",
    "PPO",
    "RND",
    "ReplaySchedule",
    "RewardStream",
    "SAC",
    "Schedule",
    "Trainer",
]
__version__ = "0.1.0"
