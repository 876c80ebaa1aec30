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
from torch.distributions import Categorical, Normal


class ActionHead(nn.Module):
    """Turns the actor network's output into actions, log-probabilities and entropies."""

    out_dim: int

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action


class CategoricalHead(ActionHead):
    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.out_dim = n
        self.start = start

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        return action + self.start if self.start else action

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.multinomial(torch.softmax(params, dim=-1), 1, generator=generator).squeeze(-1)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(dim=-1)

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = Categorical(logits=params)
        return dist.log_prob(action.long()), dist.entropy()


class MultiCategoricalHead(ActionHead):
    def __init__(self, nvec: np.ndarray):
        super().__init__()
        self.sizes = [int(n) for n in np.asarray(nvec).reshape(-1)]
        self.out_dim = sum(self.sizes)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(params, self.sizes, dim=-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.stack(
            [torch.multinomial(torch.softmax(p, -1), 1, generator=generator).squeeze(-1) for p in self._split(params)], -1
        )

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([p.argmax(-1) for p in self._split(params)], -1)

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dists = [Categorical(logits=p) for p in self._split(params)]
        log_prob = torch.stack([d.log_prob(action[..., i].long()) for i, d in enumerate(dists)], -1).sum(-1)
        entropy = torch.stack([d.entropy() for d in dists], -1).sum(-1)
        return log_prob, entropy


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
        noise = torch.randn(params.shape, generator=generator, device=params.device, dtype=params.dtype)
        return params + self.log_std.exp() * noise

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = Normal(params, self.log_std.expand_as(params).exp())
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1)

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
