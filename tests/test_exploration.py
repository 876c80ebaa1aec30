"""Exploration bonuses raise state coverage on a sparse task: PPO + RND and PPO + ICM against PPO alone.

Each comparison trains the same PPO (same seed, schedule and budget) with and without the bonus on a
deterministic chain whose only reward is at its far end, and counts the distinct positions reached
during training.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import PPO, RND, Agent, Trainer
from rl_agents.agents.icm import ICM

pytestmark = pytest.mark.learning

LENGTH, HORIZON = 48, 96
BUDGET, NUM_ENVS, NUM_STEPS = 100_000, 8, 64


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small networks on a shared 2-core machine: extra intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class SecretChain(gym.Env):
    """A chain of ``length`` positions (one-hot observations) with one secret right action in each.

    The right action moves one position on, the other one back to the start; the only reward, 1, is
    for reaching the last position, which ends the episode. Undirected exploration reaches depth d
    about once in 2**d tries, so within the budget random actions reach about 15-20 positions; an
    agent rewarded for novelty learns the chain position by position. Every position entered is
    added to ``visited`` (shared by the vector env's copies).
    """

    def __init__(self, visited: set[int], length: int = LENGTH, horizon: int = HORIZON, key_seed: int = 1):
        self.length, self.horizon, self.visited = length, horizon, visited
        self.key = np.random.default_rng(key_seed).integers(0, 2, length)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (length,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.length, np.float32)
        obs[self.position] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position, self.steps = 0, 0
        self.visited.add(0)
        return self._obs(), {}

    def step(self, action):
        self.position = self.position + 1 if int(action) == self.key[self.position] else 0
        self.steps += 1
        self.visited.add(self.position)
        solved = self.position == self.length - 1
        return self._obs(), float(solved), solved, self.steps >= self.horizon and not solved, {}


def explore(bonus: Callable[[], list[Agent]], seed: int) -> dict[str, int]:
    """Train PPO (plus the bonus agents) on the chain; coverage = distinct positions visited while training."""
    visited: set[int] = set()
    envs = gym.vector.SyncVectorEnv([lambda: SecretChain(visited, key_seed=seed) for _ in range(NUM_ENVS)])
    trainer = Trainer(envs, [PPO(ext_coef=2.0), *bonus()], seed=seed, num_steps=NUM_STEPS)
    trainer.episodes.window = None  # every episode: "solved" counts them all
    trainer.train(BUDGET, progress=False)
    envs.close()
    return {"coverage": len(visited), "solved": int(sum(r >= 1 for r in trainer.episodes.returns))}


@functools.cache
def ppo_alone(seed: int) -> dict[str, int]:
    return explore(list, seed)


# Measured (100k steps, distinct positions of 48; trainer and chain seed = seed), with the ratio to PPO alone:
#   seed      1     2     3     4     5
#   PPO      21    15    20    10    13
#   +RND     48    46    42    48    48    (2.1x-4.8x)
#   +ICM     48    42    41    46    48    (2.05x-4.6x)


def test_rnd_raises_state_coverage_on_a_sparse_chain():
    ppo = ppo_alone(1)
    # CleanRL's lr 1e-4 is tuned for Atari; on this small task it learns the chain too slowly for the budget.
    rnd = explore(lambda: [RND(lr=1e-3)], 1)
    assert ppo["coverage"] < 0.5 * LENGTH, ppo
    assert rnd["coverage"] >= 1.5 * ppo["coverage"], (ppo, rnd)


def test_icm_raises_state_coverage_on_a_sparse_chain():
    ppo = ppo_alone(1)
    icm = explore(lambda: [ICM()], 1)
    assert ppo["coverage"] < 0.5 * LENGTH, ppo
    assert icm["coverage"] >= 1.5 * ppo["coverage"], (ppo, icm)
