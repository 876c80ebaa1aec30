"""Environments: vector env creation per family, the errors of failing envs, their state in checkpoints."""

from rl_agents.envs.errors import EnvCreationError, EnvError, IndexedEnv
from rl_agents.envs.make import VECTORIZATIONS, env_factory_of, family_wrappers, make_envs, samples_when_evaluated

__all__ = [
    "VECTORIZATIONS",
    "EnvCreationError",
    "EnvError",
    "IndexedEnv",
    "env_factory_of",
    "family_wrappers",
    "samples_when_evaluated",
    "make_envs",
]
