"""Advantage and return estimators: pure functions over ``[T, N]`` tensors."""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalized Advantage Estimation (Schulman et al. 2016) over a rollout.

    Args:
        rewards, values: ``[T, N]``; ``values[t]`` estimates the state the action at t was taken in.
        next_values: ``[T, N]`` value of the true next state of step t (the final observation when the
            episode ended at t, so truncated episodes bootstrap from it).
        terminated: ``[T, N]`` the episode ended in a terminal state at t: no bootstrap.
        done: ``[T, N]`` the episode ended at t for any reason: the advantage chain is cut.
    Returns:
        advantages ``[T, N]``; returns are ``advantages + values``.
    """
    not_terminated = 1.0 - terminated.float()
    not_done = 1.0 - done.float()
    deltas = rewards + gamma * next_values * not_terminated - values
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(deltas[0])
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages

