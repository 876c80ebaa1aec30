"""How a rollout is cut into minibatches: rows, contiguous slices of them, or whole env sequences.

Every operation maps over observation trees (:mod:`rl_agents.core.tree`), so Dict and Tuple observations
are cut like any other key.
"""

from __future__ import annotations

import torch

from rl_agents.core.agent import SEQUENCE_VALID, VALID, Batch, sequence_key
from rl_agents.core.tree import map_tree


def split_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """Bounds of ``parts`` nearly equal, non-empty slices (like torch.tensor_split)."""
    edges = [length * index // parts for index in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]


def merge_time_and_envs(value: torch.Tensor) -> torch.Tensor:
    """``[T, N, ...]`` -> ``[T * N, ...]``."""
    return value.reshape(-1, *value.shape[2:])


def sequence_minibatch(columns: Batch, envs: torch.Tensor, sequence_keys: frozenset[str]) -> Batch:
    """The minibatch of the envs ``envs`` from ``[T, N, ...]`` columns: every key's valid rows of
    those envs, time-major (``[rows, ...]``), plus ``sequence/<key>`` ``[T, B, ...]`` for the
    sequence keys and ``sequence/valid``, whose True entries line up with the rows."""
    valid = columns[VALID][:, envs]
    minibatch: Batch = {}
    for key, value in columns.items():
        of_envs = map_tree(lambda leaf: leaf[:, envs], value)
        minibatch[key] = map_tree(lambda leaf: leaf[valid], of_envs)
        if key in sequence_keys:
            minibatch[sequence_key(key)] = of_envs
    minibatch[SEQUENCE_VALID] = valid
    return minibatch
