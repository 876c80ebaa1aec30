"""Small deterministic environments and agents shared by the tests."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_agents.core.agent import Agent, Batch, DataSpec, EnvContext, RewardStream


class CountingEnv(gym.Env):
    """obs = [steps taken in this episode, episode index]; reward 1 per step.

    Episodes end after ``length`` steps: by termination if ``terminate`` else by truncation.
    """

    def __init__(self, length: int = 3, terminate: bool = False):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length
        self.terminate = terminate
        self.t = 0
        self.episode = -1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        ended = self.t >= self.length
        return self._obs(), 1.0, ended and self.terminate, ended and not self.terminate, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.t, self.episode], dtype=np.float32)


def counting_envs(
    num_envs: int, lengths: list[int], terminate: bool, mode: gym.vector.AutoresetMode
) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv(
        [lambda length=length: CountingEnv(length, terminate) for length in lengths[:num_envs]], autoreset_mode=mode
    )


class ConstantBonus(Agent):
    """A toy exploration bonus: adds a reward stream worth ``value`` per valid step."""

    default_name = "bonus"

    def __init__(
        self, value: float = 1.0, stream: str = "bonus", needs: frozenset[str] = frozenset({"valid"}), **kwargs
    ):
        super().__init__(**kwargs)
        self.value = value
        self.stream = stream
        self.needs = needs

    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream(self.stream, gamma=0.9, episodic=False, coef=0.5),)

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=self.needs, provides=frozenset({f"reward/{self.stream}"}))

    def preprocess(self, batch: Batch) -> dict[str, float]:
        batch[f"reward/{self.stream}"] = batch["valid"].float() * self.value
        return {"bonus_mean": float(batch[f"reward/{self.stream}"].mean())}


def bind_standalone(agent: Agent, obs_space: gym.Space, action_space: gym.Space, num_envs: int = 1) -> Agent:
    streams = agent.reward_streams()
    generator = torch.Generator().manual_seed(0)
    agent.bind(EnvContext(obs_space, action_space, num_envs, torch.device("cpu"), streams, generator))
    return agent


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Bit-equal trees of dicts, lists, tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{index}]")
    elif isinstance(a, torch.Tensor):
        same = isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
        assert same, f"{where} differs"
    else:
        assert a == b, where
