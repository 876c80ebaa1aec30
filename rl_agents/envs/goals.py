"""Goal-conditioned environments: where a vector env's ``compute_reward`` comes from.

Gymnasium-Robotics' convention (``GoalEnv``): the observation is a Dict with ``observation``,
``achieved_goal`` and ``desired_goal``, and ``env.unwrapped.compute_reward(achieved_goal, desired_goal,
info)`` gives the reward of any goal pair, batched over leading dimensions. Hindsight relabeling needs that
function in the learner, which never steps the envs itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

GOAL_KEYS = ("observation", "achieved_goal", "desired_goal")
RewardFunction = Callable[[np.ndarray, np.ndarray, Any], Any]


def is_goal_space(space: gym.Space) -> bool:
    """Whether ``space`` is a goal-conditioned Dict (with ``achieved_goal`` and ``desired_goal`` of one shape)."""
    if not isinstance(space, gym.spaces.Dict):
        return False
    achieved, desired = space.spaces.get("achieved_goal"), space.spaces.get("desired_goal")
    return achieved is not None and desired is not None and achieved.shape == desired.shape


def goal_reward_function(envs: gym.vector.VectorEnv) -> RewardFunction | None:
    """The envs' ``compute_reward`` when their observations are goal-conditioned, else None.

    Taken from the first env of a SyncVectorEnv; for other vector envs (async workers live in other
    processes) from one env built as :func:`~rl_agents.envs.make_envs` built them, when it did."""
    if not is_goal_space(envs.single_observation_space):
        return None
    sub_envs = getattr(envs, "envs", None)
    if sub_envs:
        return _reward_function(sub_envs[0])
    from rl_agents.envs.make import env_factory_of  # (make imports this module's package)

    factory = env_factory_of(envs)
    args = getattr(factory, "args", ())
    if len(args) == 3:
        env_id, kwargs = args[0], dict(getattr(factory, "keywords", {}) or {})
        return _reward_function(gym.make(env_id, **kwargs))
    return None


def _reward_function(env: gym.Env) -> RewardFunction | None:
    function = getattr(env.unwrapped, "compute_reward", None)
    return function if callable(function) else None
