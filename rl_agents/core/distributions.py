"""Action distributions for Discrete, Box and MultiDiscrete spaces, sampled from an explicit generator.

Sampling goes through a ``torch.Generator`` owned by the Trainer rather than the global RNG, so runs
are reproducible and resumable without touching global state.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn


class ActionHead(nn.Module):
    """Turns the actor network's output into actions, log-probabilities and entropies."""

    out_dim: int

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.log_prob_entropy(params, action)[0]

    def sample_with_log_prob(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An action and its log-probability; heads override it where both share work."""
        action = self.sample(params, generator)
        return action, self.log_prob(params, action)

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def sample_categorical(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverse-CDF sampling: one uniform draw per row (cheaper than torch.multinomial for small batches)."""
    cdf = torch.softmax(logits, dim=-1).cumsum_(dim=-1)
    uniform = torch.rand(cdf.shape[:-1] + (1,), generator=generator, device=logits.device, dtype=cdf.dtype)
    # Scaling by the last cdf entry guards against it summing to slightly less than 1.
    return (cdf < uniform.mul_(cdf[..., -1:])).sum(dim=-1).clamp_(max=logits.shape[-1] - 1)


def categorical_log_prob_entropy(logits: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Same values as torch.distributions.Categorical without its per-call validation overhead."""
    log_probs = torch.log_softmax(logits, dim=-1)
    log_prob = log_probs.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return log_prob, entropy


class CategoricalHead(ActionHead):
    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.out_dim = n
        self.start = start

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action + self.start if self.start else action

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return sample_categorical(params, generator)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(dim=-1)

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return categorical_log_prob_entropy(params, action)

    def log_prob(self, params: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(params, dim=-1).gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def sample_with_log_prob(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs = torch.log_softmax(params, dim=-1)
        action = sample_categorical(log_probs, generator)
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)


class MultiCategoricalHead(ActionHead):
    def __init__(self, nvec: np.ndarray):
        super().__init__()
        self.sizes = [int(n) for n in np.asarray(nvec).reshape(-1)]
        self.out_dim = sum(self.sizes)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(params, self.sizes, dim=-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.stack([sample_categorical(p, generator) for p in self._split(params)], -1)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.argmax(-1) for p in self._split(params)], -1)

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [categorical_log_prob_entropy(p, action[..., i]) for i, p in enumerate(self._split(params))]
        return torch.stack([lp for lp, _ in pairs], -1).sum(-1), torch.stack([e for _, e in pairs], -1).sum(-1)


class DiagonalGaussianHead(ActionHead):
    """State-independent log standard deviation, initialized to 0 (std 1), as in CleanRL's PPO.

    Sampled actions are stored unclipped (their log-probabilities stay exact); the action sent to
    the environment is clipped to the space's bounds, like Gymnasium's ClipAction wrapper.
    """

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.out_dim = int(np.prod(space.shape))
        self.shape = space.shape
        self.log_std = nn.Parameter(torch.zeros(1, self.out_dim))
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32).reshape(-1))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32).reshape(-1))

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return self.sample_with_log_prob(params, generator)[0]

    def sample_with_log_prob(
        self, params: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn(params.shape, generator=generator, device=params.device, dtype=params.dtype)
        action = params + self.log_std.exp() * noise
        # (action - mean) / std is the noise itself, so the log-density needs no division.
        log_prob = (noise.square().mul_(-0.5) - self.log_std - _HALF_LOG_2PI).sum(-1)
        return action, log_prob

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_std = self.log_std.expand_as(params)
        log_prob = -0.5 * ((action - params) / log_std.exp()).square() - log_std - _HALF_LOG_2PI
        entropy = (0.5 + _HALF_LOG_2PI + log_std).sum(-1)
        return log_prob.sum(-1), entropy

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(action, self.high), self.low).reshape(-1, *self.shape)


def make_action_head(space: gym.Space) -> ActionHead | None:
    """The head for a space, or None when the space is not supported."""
    if isinstance(space, gym.spaces.Discrete):
        return CategoricalHead(int(space.n), int(space.start))
    if isinstance(space, gym.spaces.MultiDiscrete) and not np.any(space.start):
        return MultiCategoricalHead(space.nvec)
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating) and math.prod(space.shape) > 0:
        return DiagonalGaussianHead(space)
    return None
