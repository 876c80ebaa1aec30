"""Advantage and return estimators: pure functions over ``[T, N]`` tensors."""

from __future__ import annotations

import torch

from rl_agents.agent import N_STEPS, TERMINATED, RewardStream


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



def replay_td_targets(
    minibatch: dict[str, torch.Tensor],
    streams: tuple[RewardStream, ...],
    next_values: torch.Tensor,
    gammas: torch.Tensor,
    episodic: torch.Tensor,
) -> torch.Tensor:
    """``[batch, streams]`` TD targets of replayed (possibly n-step) transitions:
    ``reward + gamma ** n_steps * (1 - terminated if episodic) * next_value`` per reward stream.

    ``next_values`` ``[batch, streams]`` are evaluated at ``bootstrap_obs``; ``gammas`` and ``episodic``
    ``[streams]`` are the streams' discounts and episodic flags (as floats).
    """
    rewards = torch.stack([minibatch[stream.key].float() for stream in streams], dim=1)
    discount = gammas ** minibatch[N_STEPS].unsqueeze(1)
    bootstrap = 1.0 - minibatch[TERMINATED].float().unsqueeze(1) * episodic
    return rewards + discount * bootstrap * next_values
