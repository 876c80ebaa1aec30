"""Temporally correlated Gaussian exploration noise ("colored" noise, Eberhard et al. 2023, "Pink Noise Is
All You Need: Colored Noise Exploration in Deep Reinforcement Learning").

White noise (``beta`` 0) is independent from step to step; pink noise (``beta`` 1) has a power spectrum
falling as 1/f, so consecutive actions lean the same way for a while: enough to drive a car up
MountainCarContinuous, where white noise cancels itself out. Each value is still a standard normal.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def powerlaw_noise(
    shape: tuple[int, ...], length: int, beta: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``[*shape, length]`` Gaussian sequences with power spectral density proportional to ``1/f**beta``,
    each value of unit variance: random Fourier coefficients scaled by ``f**(-beta/2)`` (frequencies below
    ``1/length`` held at ``1/length``), transformed back (Timmer and Koenig 1995)."""
    frequencies = torch.fft.rfftfreq(length, device=device).clamp(min=1.0 / length)
    scale = frequencies ** (-beta / 2.0)
    # The standard deviation the sequence would have, to normalize it to 1.
    weights = scale[1:].clone()
    weights[-1] *= (1 + (length % 2)) / 2.0  # the Nyquist frequency of an even length has no imaginary part
    sigma = 2.0 * math.sqrt(float(weights.square().sum())) / length
    size = (*shape, frequencies.numel())
    real = torch.randn(size, generator=generator, device=device) * scale
    imag = torch.randn(size, generator=generator, device=device) * scale
    if length % 2 == 0:  # the Nyquist coefficient is real
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    imag[..., 0] = 0.0  # the mean's coefficient is real
    real[..., 0] *= math.sqrt(2.0)
    return torch.fft.irfft(torch.complex(real, imag), n=length) / sigma


class ColoredNoise(nn.Module):
    """One correlated noise sequence per env and action dimension, consumed one step per call and
    drawn again, ``length`` steps at a time, from ``generator`` when used up. The sequences and the
    position are buffers: they are saved in checkpoints, so a resumed run explores as it would have."""

    def __init__(self, num_envs: int, action_dim: int, beta: float, length: int):
        super().__init__()
        if length < 2:
            raise ValueError(f"colored noise needs sequences of at least 2 steps, got {length}")
        self.beta, self.length = beta, length
        self.register_buffer("sequences", torch.zeros(num_envs, action_dim, length))
        self.register_buffer("position", torch.tensor(length))  # used up: drawn on the first call

    def sample(self, generator: torch.Generator | None) -> torch.Tensor:
        """The next ``[num_envs, action_dim]`` noise values."""
        if int(self.position) >= self.length:
            shape = tuple(self.sequences.shape[:2])
            self.sequences.copy_(powerlaw_noise(shape, self.length, self.beta, generator, self.sequences.device))
            self.position.zero_()
        values = self.sequences[:, :, int(self.position)]
        self.position += 1
        return values
