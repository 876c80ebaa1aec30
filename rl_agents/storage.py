"""Preallocated rollout storage: one ``[num_steps, num_envs, ...]`` tensor per collected key."""

from __future__ import annotations

import torch

from rl_agents.agent import Batch


class RolloutStorage:
    """Fixed-size on-policy storage. Fields declared up front are allocated at once; fields whose
    shape is only known from the first ``act`` output are allocated on first write."""

    def __init__(self, num_steps: int, num_envs: int, device: torch.device):
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = device
        self.tensors: Batch = {}

    def allocate(self, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.tensors[key] = torch.zeros((self.num_steps, self.num_envs, *shape), dtype=dtype, device=self.device)

    def write(self, step: int, values: Batch) -> None:
        for key, value in values.items():
            if key not in self.tensors:
                self.allocate(key, tuple(value.shape[1:]), value.dtype)
            self.tensors[key][step].copy_(value)

    def batch(self) -> Batch:
        """A shallow copy: agents may add keys without touching the stored tensors' dict."""
        return dict(self.tensors)
