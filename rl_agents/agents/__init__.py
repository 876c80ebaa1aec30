"""The shipped agents: one file each, none importing another, and the one list of them.

:data:`AGENTS` maps the names used in configs and on the command line (``--agents ppo+rnd``) to the
classes; the command line, the config schema, ``rl-agents list`` and checkpoint reloading all read it.
"""

from rl_agents.agents.a2c import A2C
from rl_agents.agents.dqn import DQN
from rl_agents.agents.her import HER
from rl_agents.agents.icm import ICM
from rl_agents.agents.per import PER
from rl_agents.agents.ppo import PPO
from rl_agents.agents.rnd import RND
from rl_agents.agents.sac import SAC
from rl_agents.core.agent import Agent

AGENTS: dict[str, type[Agent]] = {cls.default_name: cls for cls in (A2C, DQN, HER, ICM, PER, PPO, RND, SAC)}

__all__ = ["A2C", "AGENTS", "DQN", "HER", "ICM", "PER", "PPO", "RND", "SAC"]
