"""Exploration bonuses: turning a per-step novelty into a reward stream (shared by RND and ICM)."""

from __future__ import annotations

import math

import torch

from rl_agents.core.normalize import ReturnScaler


def intrinsic_reward(
    raw: torch.Tensor, valid: torch.Tensor, scaler: ReturnScaler, prefix: str, *, normalize: bool = True
) -> tuple[torch.Tensor, dict[str, float]]:
    """The reward ``[T, N]`` of a rollout's raw novelty ``[T, N]`` and its metrics.

    With ``normalize`` the raw novelty feeds ``scaler``'s never-reset (non-episodic) discounted return,
    restricted to the ``valid`` steps, and the reward is the novelty divided by that return's running
    std, zero where not ``valid``; without it the reward is ``raw`` itself and ``scaler`` is left alone.

    Metrics, over the valid steps: ``<prefix>_reward_mean``, ``_reward_std``, ``_reward_max``,
    ``_reward_raw_mean`` (NaN when there are too few steps) and ``<prefix>_return_std``, the
    scaler's running std of the return.
    """
    reward = raw
    if normalize:
        scaler.update(raw, dones=torch.zeros_like(valid), valid=valid)  # never resets: non-episodic
        reward = scaler.scale(raw).float() * valid
    valid_reward, valid_raw = reward[valid], raw[valid]
    metrics = {
        f"{prefix}_reward_mean": _mean(valid_reward),
        f"{prefix}_reward_std": _std(valid_reward),
        f"{prefix}_reward_max": float(valid_reward.max()) if valid_reward.numel() else math.nan,
        f"{prefix}_reward_raw_mean": _mean(valid_raw),
        f"{prefix}_return_std": float(scaler.stats.var.sqrt()),
    }
    return reward, metrics


def _mean(x: torch.Tensor) -> float:
    return float(x.mean()) if x.numel() else math.nan


def _std(x: torch.Tensor) -> float:
    return float(x.std()) if x.numel() > 1 else math.nan
