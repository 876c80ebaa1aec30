"""rl-agents: compose reinforcement-learning agents (PPO, RND, ...) under one mediating Trainer."""

from rl_agents.agents import A2C, DQN, HER, ICM, PER, PPO, RND, SAC
from rl_agents.core.agent import Agent, CompositionError, ContractError, DataSpec, EnvContext, RewardStream
from rl_agents.core.sampling import ReplaySampler
from rl_agents.core.schedules import OnPolicySchedule, ReplaySchedule
from rl_agents.envs import EnvError, IndexedEnv
from rl_agents.policy import Policy
from rl_agents.training import (
    Collector,
    DistributedTrainer,
    Learner,
    NonFiniteError,
    NonFiniteLossError,
    NonFiniteObservationError,
    Trainer,
)

__all__ = [
    "A2C",
    "DQN",
    "ICM",
    "HER",
    "PER",
    "PPO",
    "RND",
    "SAC",
    "Agent",
    "Collector",
    "CompositionError",
    "ContractError",
    "DataSpec",
    "DistributedTrainer",
    "EnvContext",
    "EnvError",
    "IndexedEnv",
    "Learner",
    "NonFiniteError",
    "NonFiniteLossError",
    "NonFiniteObservationError",
    "OnPolicySchedule",
    "Policy",
    "ReplaySampler",
    "ReplaySchedule",
    "RewardStream",
    "Trainer",
]
__version__ = "0.1.0"
