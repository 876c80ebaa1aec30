"""Preallocated rollout storage: one ``[num_steps, num_envs, ...]`` tensor per collected key.

Data that comes from the environment (observations, rewards, flags) is written into host memory
through NumPy views, one cheap assignment per step, and moved to the training device once per
rollout. Data the agents compute on the device (log-probs, values) stays there.
"""

from __future__ import annotations

import numpy as np
import torch

from rl_agents.core.agent import Batch


class RolloutStorage:
    def __init__(self, num_steps: int, num_envs: int, device: torch.device):
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = device
        self.host: Batch = {}
        self.host_views: dict[str, np.ndarray] = {}
        self.device_tensors: Batch = {}

    def allocate_host(self, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        tensor = torch.zeros((self.num_steps, self.num_envs, *shape), dtype=dtype)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        self.host[key] = tensor
        self.host_views[key] = tensor.numpy()

    def write_host(self, step: int, key: str, value: np.ndarray) -> None:
        self.host_views[key][step] = value

    def write_device(self, step: int, values: Batch) -> None:
        """Store agent outputs; fields are allocated from the first write's shapes and dtypes."""
        for key, value in values.items():
            stored = self.device_tensors.get(key)
            if stored is None:
                stored = torch.zeros((self.num_steps, *value.shape), dtype=value.dtype, device=self.device)
                self.device_tensors[key] = stored
            stored[step].copy_(value)

    def __contains__(self, key: str) -> bool:
        return key in self.host or key in self.device_tensors

    def batch(self) -> Batch:
        """Every field on the training device, as a fresh dict that agents may add keys to."""
        batch = {key: tensor.to(self.device, non_blocking=True) for key, tensor in self.host.items()}
        batch.update(self.device_tensors)
        return batch
