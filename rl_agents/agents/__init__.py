"""Agents: one file each, none importing another."""

from rl_agents.agents.a2c import A2C
from rl_agents.agents.dqn import DQN
from rl_agents.agents.icm import ICM
from rl_agents.agents.ppo import PPO
from rl_agents.agents.rnd import RND
from rl_agents.agents.sac import SAC

__all__ = ["A2C", "DQN", "ICM", "PPO", "RND", "SAC"]
