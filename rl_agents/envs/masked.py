"""Partially observable versions of classic-control tasks: ``<Name>NoVel-v<N>`` is ``<Name>-v<N>`` with
the velocity entries of its observation set to 0 (the shape stays), so that only a policy with memory
can infer them. The ids and masked entries are rl-zoo3's (``MaskVelocityWrapper``), whose
``ppo_lstm`` presets train on them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

# Observation entries that are velocities, per base env (rl-zoo3's MaskVelocityWrapper).
VELOCITY_INDICES: dict[str, tuple[int, ...]] = {
    "CartPole-v1": (1, 3),
    "MountainCar-v0": (1,),
    "MountainCarContinuous-v0": (1,),
    "Pendulum-v1": (2,),
    "LunarLander-v3": (2, 3, 5),
    "LunarLanderContinuous-v3": (2, 3, 5),
}


def masked_velocity_ids() -> dict[str, str]:
    """``{"CartPoleNoVel-v1": "CartPole-v1", ...}``."""
    return {_no_vel_id(base): base for base in VELOCITY_INDICES}


def _no_vel_id(base: str) -> str:
    name, version = base.rsplit("-", 1)
    return f"{name}NoVel-{version}"


def base_of(env_id: str) -> str | None:
    """The env a ``...NoVel-v<N>`` id masks, or None for any other id."""
    return masked_velocity_ids().get(env_id)


class MaskVelocity(gym.ObservationWrapper):
    """Zeroes the velocity entries of the base env's observation (see :data:`VELOCITY_INDICES`)."""

    def __init__(self, env: gym.Env, base_id: str):
        super().__init__(env)
        self.mask = np.ones(env.observation_space.shape, dtype=env.observation_space.dtype)
        self.mask[list(VELOCITY_INDICES[base_id])] = 0

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation * self.mask
