"""Advantage and return estimators: pure functions over ``[T, N]`` tensors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from rl_agents.core.agent import N_STEPS, TERMINATED, RewardStream
from rl_agents.core.tree import map_tree


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


def next_state_values(
    values: torch.Tensor,
    done: torch.Tensor,
    next_obs: Any,
    value_of: Callable[[Any, tuple[torch.Tensor, ...]], torch.Tensor],
) -> torch.Tensor:
    """Value of each step's true next state ``[T, N, num_streams]``.

    Mid-rollout it is the next step's stored value (``values[t + 1]``); where an episode ended (the
    next stored observation is then a reset one) and at the rollout's last step, ``value_of`` evaluates
    the stored next observations: ``value_of(next_obs[index], index)``, rows ``[B, ...]`` and the
    ``(steps, envs)`` index they were taken at (e.g. to take each row's carried state) in, values
    ``[B, num_streams]`` out.
    """
    next_values = torch.empty_like(values)
    next_values[:-1] = values[1:]
    evaluate = done.clone()
    evaluate[-1] = True
    index = evaluate.nonzero(as_tuple=True)
    rows = map_tree(lambda leaf: leaf[index], next_obs)  # (a tree for Dict / Tuple observations)
    next_values[index] = value_of(rows, index).to(values.dtype)
    return next_values


def stream_advantages(
    values: torch.Tensor,
    next_values: torch.Tensor,
    rewards_of: Callable[[RewardStream], torch.Tensor],
    terminated: torch.Tensor,
    done: torch.Tensor,
    valid: torch.Tensor,
    streams: tuple[RewardStream, ...],
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Per-stream GAE, mixed into one policy advantage.

    Each stream gets its own GAE with its own discount; episodic streams do not bootstrap through
    terminal states, non-episodic ones do. The streams are visited in order and ``rewards_of(stream)``
    (``[T, N]`` float rewards) is called once per stream, inside the loop, just before its GAE.

    Args:
        values, next_values: ``[T, N, num_streams]`` stored values and values of the true next states.
        terminated, done, valid: ``[T, N]`` flags.
    Returns:
        ``(advantages [T, N], returns [T, N, num_streams], metrics)``: the advantage is the
        ``coef``-weighted sum of the streams' advantages; the metrics hold the explained variance
        of each stream's value over the valid steps (``explained_variance/<stream name>``).
    """
    advantages = torch.zeros_like(values[..., 0])
    returns = torch.empty_like(values)
    metrics: dict[str, float] = {}
    for index, stream in enumerate(streams):
        rewards = rewards_of(stream)
        stream_terminated = terminated if stream.episodic else torch.zeros_like(terminated)
        stream_values, stream_next_values = values[..., index], next_values[..., index]
        stream_adv = gae(rewards, stream_values, stream_next_values, stream_terminated, done, stream.gamma, gae_lambda)
        returns[..., index] = stream_adv + stream_values
        advantages += stream.coef * stream_adv
        stream_returns = returns[..., index]
        metrics[f"explained_variance/{stream.name}"] = explained_variance(stream_values[valid], stream_returns[valid])
    return advantages, returns, metrics


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """``1 - Var(target - predicted) / Var(target)``; NaN when the target has fewer than 2 elements or
    its variance is zero or not finite.

    The division is by the variance as a tensor (a true division on every device; CUDA would multiply
    by the reciprocal of a Python float instead).
    """
    if target.numel() < 2:
        return math.nan
    target_var = target.var()
    host_var = float(target_var)
    if not math.isfinite(host_var) or host_var == 0.0:
        return math.nan
    return float(1.0 - (target - predicted).var() / target_var)


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


def categorical_projection(
    probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """The distributional Bellman target of C51 (Bellemare et al. 2017, Algorithm 1): the distribution
    ``probs`` ``[..., atoms]`` over ``support`` shifted to ``reward + discount * z`` (clipped to the support's
    range) and projected back onto the support, each atom's mass split between its two neighbours in
    proportion to closeness. ``rewards`` and ``discounts`` are ``[...]``; a discount of 0 (a terminal
    state) puts all the mass next to the reward."""
    atoms = support.shape[0]
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    shifted = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)
    position = ((shifted - v_min) / delta).clamp(0, atoms - 1)  # fractional atom index
    lower, upper = position.floor().long(), position.ceil().long()
    # Where the position is a whole atom (lower == upper) all of its mass goes there.
    lower_share = upper.to(probs.dtype) - position + (lower == upper).to(probs.dtype)
    projected = torch.zeros_like(probs)
    projected.scatter_add_(-1, lower, probs * lower_share)
    projected.scatter_add_(-1, upper, probs * (position - lower.to(probs.dtype)))
    return projected
