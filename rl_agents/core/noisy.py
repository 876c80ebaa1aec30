"""Noisy linear layers with factorized Gaussian noise (Fortunato et al. 2018, "Noisy Networks for
Exploration"), as Rainbow uses them in place of epsilon-greedy exploration.

``y = (mu_w + sigma_w * (f(e_out) f(e_in)^T)) x + mu_b + sigma_b * f(e_out)`` with ``f(e) = sgn(e) sqrt(|e|)``
and ``e_in``, ``e_out`` standard normal, drawn anew at every forward pass that is given a generator (one
draw per pass, shared by the batch); without one the layer is its mean, ``mu_w x + mu_b`` (greedy,
deterministic acting). Initialization is the paper's for factorized noise: ``mu ~ U(-1/sqrt(p), 1/sqrt(p))``
and ``sigma = sigma_0 / sqrt(p)``, ``p`` the input width, ``sigma_0 = 0.5``.

The noise is never stored: a layer holds only its trained parameters, so checkpoints and rollbacks need
nothing more, and the generator (the Learner's) makes every draw reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _scaled_noise(size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    noise = torch.randn(size, generator=generator, device=generator.device).to(device)
    return noise.sign() * noise.abs().sqrt()


class NoisyLinear(nn.Module):
    """A linear layer with learned, factorized Gaussian noise on its weights and biases."""

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), std_init * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), std_init * bound))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        if generator is None:
            return mean
        noise_in = _scaled_noise(self.in_features, generator, x.device)
        noise_out = _scaled_noise(self.out_features, generator, x.device)
        # (sigma_w * outer(out, in)) x == out * (sigma_w (in * x)): no [out, in] noise matrix is built.
        return mean + noise_out * (F.linear(x * noise_in, self.weight_sigma) + self.bias_sigma)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
