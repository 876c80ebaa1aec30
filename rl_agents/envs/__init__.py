"""Environments: vector env creation per family, the errors of failing envs, their state in checkpoints,
and the goal-conditioned bit flipping env (``rl_agents/BitFlip-v0``, registered on import)."""

from rl_agents.envs.bit_flip import BitFlipEnv, register_bit_flip
from rl_agents.envs.errors import EnvCreationError, EnvError, IndexedEnv
from rl_agents.envs.make import VECTORIZATIONS, env_factory_of, family_wrappers, make_envs, samples_when_evaluated

__all__ = [
    "VECTORIZATIONS",
    "BitFlipEnv",
    "EnvCreationError",
    "EnvError",
    "IndexedEnv",
    "env_factory_of",
    "family_wrappers",
    "samples_when_evaluated",
    "make_envs",
    "register_bit_flip",
]

register_bit_flip()  # importing rl_agents.envs (as make_envs's async workers do) registers rl_agents/BitFlip-v0
