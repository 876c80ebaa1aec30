"""rl-agents: compose reinforcement-learning agents (PPO, RND, ...) under one mediating Trainer."""

from rl_agents.agent import Agent, CompositionError, DataSpec, EnvContext, ReplaySchedule, RewardStream, Schedule
from rl_agents.agents import A2C, DQN, ICM, PPO, RND, SAC
from rl_agents.distributed import DistributedTrainer
from rl_agents.envs import EnvError, IndexedEnv
from rl_agents.trainer import NonFiniteError, NonFiniteLossError, NonFiniteObservationError, Trainer

__all__ = [
    "A2C",
    "DQN",
    "ICM",
    "PPO",
    "RND",
    "SAC",
    "Agent",
    "CompositionError",
    "DataSpec",
    "DistributedTrainer",
    "EnvContext",
    "EnvError",
    "IndexedEnv",
    "NonFiniteError",
    "NonFiniteLossError",
    "NonFiniteObservationError",
    "ReplaySchedule",
    "RewardStream",
    "Schedule",
    "Trainer",
]
__version__ = "0.1.0"
