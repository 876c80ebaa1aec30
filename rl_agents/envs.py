"""Vector environment creation with the standard wrappers of each environment family."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np


class EnvCreationError(ValueError):
    """The environment id is unknown or its family is not installed."""


def _env_family(env_id: str) -> str:
    if env_id.startswith("MiniGrid-") or env_id.startswith("BabyAI-"):
        return "minigrid"
    if env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4"):
        return "atari"
    return "gymnasium"


def _register_family(family: str) -> None:
    try:
        if family == "minigrid":
            import minigrid  # noqa: F401  (registers the MiniGrid ids)
        elif family == "atari":
            import ale_py

            gym.register_envs(ale_py)
    except ImportError as error:
        raise EnvCreationError(f"{family} environments need the {family!r} extra: pip install 'rl-agents[{family}]'") from error


def family_wrappers(env_id: str) -> list[Callable[[gym.Env], gym.Env]]:
    """Per-env wrappers that turn each family's observations into what the agents expect."""
    family = _env_family(env_id)
    if family == "minigrid":
        from minigrid.wrappers import ImgObsWrapper

        return [ImgObsWrapper]  # the 7x7x3 egocentric view as a uint8 image
    if family == "atari":
        # DeepMind-style preprocessing: noop reset, frame skip 4 with max-pooling, 84x84 grayscale,
        # rewards clipped to their sign, 4 stacked frames. The frame skip lives in the wrapper, so the
        # ALE's own is turned off. Episode statistics are recorded before clipping (the game score).
        def atari(env: gym.Env) -> gym.Env:
            env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True)
            env = gym.wrappers.RecordEpisodeStatistics(env)
            env = gym.wrappers.TransformReward(env, lambda reward: float(np.sign(reward)))
            return gym.wrappers.FrameStackObservation(env, 4)

        return [atari]
    return []


def make_envs(env_id: str, num_envs: int, vectorization: str = "sync", **env_kwargs: object) -> gym.vector.VectorEnv:
    """``gym.make_vec`` with the family's wrappers; raises EnvCreationError for unknown ids."""
    family = _env_family(env_id)
    _register_family(family)
    if env_id not in gym.registry:
        close = [known for known in gym.registry if known.lower().startswith(env_id.split("-")[0].lower())][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EnvCreationError(f"unknown environment {env_id!r}{hint}")
    if family == "atari":
        env_kwargs.setdefault("frameskip", 1)
    if vectorization not in ("sync", "async"):
        raise EnvCreationError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization, wrappers=family_wrappers(env_id), **env_kwargs)
