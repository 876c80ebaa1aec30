"""Preallocated rollout storage: one ``[num_steps, num_envs, ...]`` tensor per collected key.

Data that comes from the environment (observations, rewards, flags) is written into host memory
through NumPy views, one cheap assignment per step, and moved to the training device once per
rollout. Data the agents compute on the device (log-probs, values) stays there.

A structured observation (a Dict or Tuple space) is stored as a tree of such tensors, one per leaf
(:mod:`rl_agents.core.tree`): ``host[key]`` is then a dict or tuple of tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from rl_agents.core.agent import Batch
from rl_agents.core.tree import Tree, map_tree


class RolloutStorage:
    def __init__(self, num_steps: int, num_envs: int, device: torch.device):
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = device
        self.host: Batch = {}
        self.host_views: dict[str, Tree] = {}
        self.device_tensors: Batch = {}

    def allocate_host(self, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.allocate_host_tree(key, (shape, dtype))

    def allocate_host_tree(self, key: str, layout: Tree) -> None:
        """Host storage for ``key`` from a tree of ``(shape, dtype)`` leaves (one leaf: one tensor)."""
        self.host[key] = map_tree(self._host_tensor, layout, is_leaf=_is_layout)
        self.host_views[key] = map_tree(torch.Tensor.numpy, self.host[key])

    def _host_tensor(self, layout: tuple[tuple[int, ...], torch.dtype]) -> torch.Tensor:
        shape, dtype = layout
        tensor = torch.zeros((self.num_steps, self.num_envs, *shape), dtype=dtype)
        return tensor.pin_memory() if self.device.type == "cuda" else tensor

    def write_host(self, step: int, key: str, value: Tree) -> None:
        view = self.host_views[key]
        if isinstance(view, np.ndarray):
            view[step] = value
        else:
            map_tree(lambda leaf, new: leaf.__setitem__(step, new), view, value)

    def write_device(self, step: int, values: Batch) -> None:
        """Store agent outputs; fields are allocated from the first write's shapes and dtypes."""
        for key, value in values.items():
            stored = self.device_tensors.get(key)
            if stored is None:
                stored = map_tree(self._device_tensor, value)
                self.device_tensors[key] = stored
            if isinstance(stored, torch.Tensor):
                stored[step].copy_(value)
            else:
                map_tree(lambda leaf, new: leaf[step].copy_(new), stored, value)

    def _device_tensor(self, value: torch.Tensor) -> torch.Tensor:
        return torch.zeros((self.num_steps, *value.shape), dtype=value.dtype, device=self.device)

    def __contains__(self, key: str) -> bool:
        return key in self.host or key in self.device_tensors

    def batch(self) -> Batch:
        """Every field on the training device, as a fresh dict that agents may add keys to."""
        batch = {key: map_tree(self._to_device, tensor) for key, tensor in self.host.items()}
        batch.update(self.device_tensors)
        return batch

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(self.device, non_blocking=True)


def _is_layout(node: object) -> bool:
    """A ``(shape, dtype)`` leaf of an allocation layout (not a Tuple space's tuple of subtrees)."""
    return isinstance(node, tuple) and len(node) == 2 and isinstance(node[1], torch.dtype)
