"""Helpers shared by the benchmark modules: timing, env-only throughput, SB3 episode returns."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import gymnasium as gym


def timed(call: Callable[[], object]) -> float:
    """Wall-clock seconds that ``call()`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def random_steps_per_second(envs: gym.vector.VectorEnv, total_steps: int, seed: int) -> float:
    """Env steps/s of ``envs`` stepped with random actions for about ``total_steps`` steps (at least one
    vector step), no library involved; closes ``envs``."""
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    iterations = max(1, total_steps // envs.num_envs)

    def step_all() -> None:
        for _ in range(iterations):
            envs.step(envs.action_space.sample())

    seconds = timed(step_all)
    envs.close()
    return iterations * envs.num_envs / seconds


class VectorWorkload(Protocol):
    env_id: str
    num_envs: int


def env_only_make_envs(workload: VectorWorkload, total_steps: int, seed: int) -> float:
    """Random-action steps/s of the vector env ``rl_agents.envs.make_envs`` builds for the workload (the
    family's wrappers, e.g. MiniGrid's ImgObsWrapper, and rl_agents' per-env error wrapper)."""
    from rl_agents.envs import make_envs

    return random_steps_per_second(make_envs(workload.env_id, workload.num_envs), total_steps, seed)


def sb3_episode_recorder(
    returns: list[float], stop: Callable[[list[float]], bool] | None = None, check_every: int = 1
) -> object:
    """An SB3 callback appending each finished episode's return (its ``Monitor``'s ``info["episode"]``)
    to ``returns`` in the order the episodes end; with ``stop``, every ``check_every`` vector steps it
    ends training once ``stop(returns)`` holds. Imports SB3 when called."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeRecorder(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                episode = info.get("episode")
                if episode is not None:
                    returns.append(float(episode["r"]))
            return stop is None or self.n_calls % check_every != 0 or not stop(returns)

    return EpisodeRecorder()
