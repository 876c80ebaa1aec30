"""Running statistics for observation and reward normalization.

Both are ``nn.Module`` s whose statistics are buffers, so they travel in an agent's state_dict
(and therefore in checkpoints) with no extra code.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance over all samples seen, merged batch by batch (Chan et al. parallel update).

    The count starts at ``epsilon`` (as in Gymnasium's and Stable-Baselines3's versions) so the first
    batch dominates without dividing by zero.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        if batch.device.type == "cpu" and self.mean.device.type == "cpu":
            # numpy's per-call overhead is a fraction of torch's: this runs once per env step in PPO.
            self._update_on_host(batch.reshape(-1, *self.mean.shape).numpy())
            return
        batch = batch.reshape(-1, *self.mean.shape).to(torch.float64)
        self._merge(batch.mean(dim=0), batch.var(dim=0, unbiased=False), batch.shape[0])

    def _update_on_host(self, batch: np.ndarray) -> None:
        batch = batch.astype(np.float64, copy=False)
        mean, var, count = self.mean.numpy(), self.var.numpy(), float(self.count)
        batch_count = batch.shape[0]
        batch_mean = batch.mean(axis=0)
        batch_var = batch.var(axis=0) if batch_count > 1 else np.zeros_like(batch_mean)
        delta = batch_mean - mean
        total = count + batch_count
        m2 = var * count + batch_var * batch_count + np.square(delta) * (count * batch_count / total)
        mean += delta * (batch_count / total)
        np.divide(m2, total, out=var)
        self.count.fill_(total)

    def _merge(self, batch_mean: torch.Tensor, batch_var: torch.Tensor, batch_count: int) -> None:
        delta = batch_mean - self.mean
        total = self.count + batch_count
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor, clip: float | None = None, epsilon: float = 1e-8) -> torch.Tensor:
        mean = self.mean.to(x.dtype if x.is_floating_point() else torch.float32)
        std = torch.sqrt(self.var + epsilon).to(mean.dtype)
        out = (x - mean) / std
        return out.clamp(-clip, clip) if clip is not None else out


class ReturnScaler(nn.Module):
    """Scales rewards by the running standard deviation of the discounted return.

    This is the reward normalization of Engstrom et al. (2020) used by CleanRL's continuous PPO
    (through Gymnasium's NormalizeReward) and, for intrinsic rewards, by RND. Rewards are divided,
    never shifted, so their sign is kept.
    """

    def __init__(self, num_envs: int, gamma: float):
        super().__init__()
        self.gamma = gamma
        self.stats = RunningMeanStd(())
        self.register_buffer("running_return", torch.zeros(num_envs, dtype=torch.float64))

    @torch.no_grad()
    def update(self, rewards: torch.Tensor, dones: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Feed a ``[T, N]`` block of rewards; the return restarts after each step where ``dones`` is set.

        Steps where ``valid`` is False (not real transitions) neither advance the return nor enter
        the statistics.
        """
        returns = torch.empty_like(rewards, dtype=torch.float64)
        running = self.running_return
        for t in range(rewards.shape[0]):
            advanced = running * self.gamma + rewards[t].to(torch.float64)
            running = advanced if valid is None else torch.where(valid[t], advanced, running)
            returns[t] = running
            running = running * (~dones[t]).to(torch.float64)
        self.running_return.copy_(running)
        selected = returns.reshape(-1) if valid is None else returns[valid]
        if selected.numel() > 0:
            self.stats.update(selected)

    def scale(self, rewards: torch.Tensor, clip: float | None = None, epsilon: float = 1e-8) -> torch.Tensor:
        scaled = rewards / torch.sqrt(self.stats.var + epsilon).to(rewards.dtype)
        return scaled.clamp(-clip, clip) if clip is not None else scaled
