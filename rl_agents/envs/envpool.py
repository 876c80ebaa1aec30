"""EnvPool's C++ batched environments as a gymnasium ``VectorEnv`` (``make_envs(..., "envpool")``).

EnvPool (``pip install 'rl-agents[envpool]'``) steps MuJoCo and Atari envs in C++ threads, several
times faster than gymnasium's Python vector envs. Its episodes end the NEXT_STEP way (the step after
an episode's last one returns the reset observation with reward 0), which the Trainer handles as it
does for gymnasium's vector envs.

Atari ids (``BreakoutNoFrameskip-v4``, ``ALE/Breakout-v5``) get the same preprocessing as
``make_envs`` gives gymnasium's Atari envs: no sticky actions, 30 noop resets, frame skip 4 with
max-pooling, 84x84 grayscale, 4 stacked frames, no fire reset, no end-of-life episodes, rewards clipped
to their sign with the unclipped game score reported as the episode return.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from rl_agents.envs.errors import EnvCreationError

INSTALL_HINT = "pip install 'rl-agents[envpool]'"
ATARI_SETTINGS = {
    "episodic_life": False,
    "reward_clip": False,
    "noop_max": 30,
    "frame_skip": 4,
    "stack_num": 4,
    "img_height": 84,
    "img_width": 84,
    "gray_scale": True,
    "repeat_action_probability": 0.0,
    "use_fire_reset": False,
}


def _envpool() -> Any:
    if importlib.util.find_spec("envpool") is None:
        raise EnvCreationError(f"vectorization 'envpool' needs EnvPool: {INSTALL_HINT}")
    return importlib.import_module("envpool")


def envpool_task(env_id: str, is_atari: bool) -> str:
    """EnvPool's id for a gymnasium id: Atari games are ``<Game>-v5`` there."""
    if is_atari:
        game = env_id.removeprefix("ALE/").removesuffix("NoFrameskip-v4").removesuffix("-v5")
        return f"{game}-v5"
    return env_id


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """A gymnasium ``VectorEnv`` over an EnvPool env. ``reset(seed=s)`` with a new seed builds the
    pool again with that seed (EnvPool seeds its envs when it creates them). With ``clip_rewards``
    rewards are clipped to their sign and ``info["episode"]`` carries the unclipped returns, as
    gymnasium's RecordEpisodeStatistics would."""

    def __init__(self, task_id: str, num_envs: int, *, clip_rewards: bool = False, seed: int = 0, **kwargs: Any):
        envpool = _envpool()
        if task_id not in envpool.list_all_envs():
            raise EnvCreationError(f"EnvPool has no environment {task_id!r}")
        self._make = functools.partial(envpool.make_gymnasium, task_id, num_envs=num_envs, **kwargs)
        self._seed = seed
        self._pool = self._make(seed=seed)
        self.num_envs = num_envs
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "envpool_task": task_id}
        self._clip_rewards = clip_rewards
        self._returns = np.zeros(num_envs)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._reset_next = np.zeros(num_envs, dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None and seed != self._seed:
            self._pool.close()
            self._pool, self._seed = self._make(seed=seed), seed
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._reset_next[:] = False
        return self._pool.reset()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._pool.step(np.asarray(actions))
        in_episode = ~self._reset_next  # else this step only reset the env
        self._returns += np.where(in_episode, reward, 0.0)
        self._lengths += in_episode
        done = (terminated | truncated) & in_episode
        if done.any():
            info = {**info, "episode": {"r": self._returns.copy(), "l": self._lengths.copy()}, "_episode": done}
            self._returns[done] = 0.0
            self._lengths[done] = 0
        self._reset_next = terminated | truncated
        if self._clip_rewards:
            reward = np.sign(reward)
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()


def make_envpool_envs(env_id: str, num_envs: int, family: str, env_kwargs: dict[str, Any]) -> EnvPoolVectorEnv:
    if family == "minigrid":
        raise EnvCreationError(f"EnvPool has no MiniGrid environments ({env_id}): use vectorization 'sync' or 'async'")
    atari = family == "atari"
    settings = {**ATARI_SETTINGS, **env_kwargs} if atari else dict(env_kwargs)
    settings.pop("frameskip", None)  # gymnasium's ALE argument; EnvPool's is frame_skip
    return EnvPoolVectorEnv(envpool_task(env_id, atari), num_envs, clip_rewards=atari, **settings)
