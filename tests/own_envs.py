"""A user's own environment module for tests: importing it registers ``Corridor-v0``
(``make_envs("tests.own_envs:Corridor-v0", ...)``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CorridorEnv(gym.Env):
    """Walk right along a corridor of ``length`` cells: action 1 steps right, 0 stays. Reward 1 on
    reaching the end (terminated); truncated after ``length`` steps otherwise."""

    def __init__(self, length: int = 10):
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, float(length), shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self._position = 0
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._position], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position = 0
        self._steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._position += int(action)
        self._steps += 1
        terminated = self._position >= self.length
        truncated = not terminated and self._steps >= self.length
        return self._obs(), float(terminated), terminated, truncated, {}


def corridor_vector(num_envs: int, length: int = 10) -> gym.vector.VectorEnv:
    """Corridor-v0's ``vector_entry_point`` (for ``make_envs(..., "vector")``)."""
    return gym.vector.SyncVectorEnv([lambda: CorridorEnv(length) for _ in range(num_envs)])


if "Corridor-v0" not in gym.registry:  # (gymnasium warns when an id is registered again)
    gym.register("Corridor-v0", entry_point=CorridorEnv, vector_entry_point=corridor_vector)
