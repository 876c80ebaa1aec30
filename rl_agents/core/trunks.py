"""The observation trunk a policy or value network starts with, for any observation space.

A plain Box keeps the networks the agents always had (an identity or flatten for vectors, the Nature or
MiniGrid CNN for images), so their parameters and results are unchanged; a Dict, Tuple, Discrete,
MultiDiscrete or MultiBinary space, or any space with user-given leaf encoders, gets an
:class:`~rl_agents.core.encoders.ObservationEncoder` (one encoder per leaf, features concatenated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rl_agents.core.agent import CompositionError
from rl_agents.core.encoders import ObservationEncoder, ObservationNormalizer
from rl_agents.core.nets import NatureCNN, flat_dim, is_image_space, is_small_grid_view
from rl_agents.core.normalize import RunningMeanStd
from rl_agents.core.tree import Tree, is_structured, map_tree, space_items


@dataclass
class Trunk:
    """module: observations ``[B, ...]`` (or a tree of them) -> features ``[B, out_dim]``.
    convolutional: the features come from a CNN (with its own dense layer), so the heads on top are
    linear layers; otherwise they are MLPs of the agent's hidden widths."""

    module: nn.Module
    out_dim: int
    convolutional: bool


def observation_trunk(space: gym.Space, encoders: Mapping[str, nn.Module] | None = None) -> Trunk:
    """The trunk for ``space`` (see the module's docstring); ``encoders`` replace leaves' encoders by path."""
    if encoders or not isinstance(space, gym.spaces.Box):
        encoder = ObservationEncoder(space, encoders)
        return Trunk(encoder, encoder.out_dim, bool(encoder.image_paths))
    if is_image_space(space):
        cnn = NatureCNN(space)
        return Trunk(cnn, cnn.out_dim, True)
    return Trunk(nn.Flatten() if len(space.shape) > 1 else nn.Identity(), flat_dim(space), False)


def has_small_grid_view(space: gym.Space) -> bool:
    """Whether some leaf of ``space`` is a small symbolic grid view (MiniGrid's 7x7x3 image)."""
    return any(is_small_grid_view(leaf) for _, leaf in space_items(space))


def has_image(space: gym.Space) -> bool:
    """Whether some leaf of ``space`` is an image."""
    return any(is_image_space(leaf) for _, leaf in space_items(space))


def observation_normalizer(space: gym.Space) -> RunningMeanStd | ObservationNormalizer:
    """Running statistics for observation normalization: one RunningMeanStd for a plain Box (as the
    agents always kept, so their checkpoints keep their names), per float leaf for other spaces."""
    if isinstance(space, gym.spaces.Box):
        return RunningMeanStd(tuple(space.shape))
    return ObservationNormalizer(space)


def normalized(normalizer: nn.Module, obs: Tree, clip: float | None) -> Tree:
    """``obs`` normalized by :func:`observation_normalizer`'s statistics, as float32 (its leaves that a
    normalizer leaves alone, e.g. images and one-hot indices, pass through)."""
    if isinstance(normalizer, ObservationNormalizer):
        return normalizer.normalize(obs, clip=clip)
    return normalizer.normalize(obs.float(), clip=clip).float()


def merge_leading(obs: Tree, dims: int = 2) -> Tree:
    """``[T, N, ...]`` observations (or a tree of them) as ``[T * N, ...]``."""
    return map_tree(lambda leaf: leaf.reshape(-1, *leaf.shape[dims:]), obs)


class ObservationSelector:
    """The part of an observation an observation-embedding bonus (RND, ICM) reads, as one Box.

    A plain Box is read whole. Of a Dict or Tuple observation, ``keys`` (leaf paths) are read: one leaf
    as it is (an image stays an image), several vector leaves flattened and side by side. Without
    ``keys``: the only image leaf if there is exactly one (MiniGrid's view, not its direction), else
    every vector Box leaf."""

    def __init__(self, agent: str, space: gym.Space, keys: Sequence[str] | None):
        self.structured = is_structured(space)
        if not self.structured:
            if keys:
                raise CompositionError(f"agent {agent!r}: obs_keys {list(keys)} given, but {space} has no keys")
            self.space, self.paths = space, [""]
            return
        leaves = dict(space_items(space))
        if keys is None:
            images = [path for path, leaf in leaves.items() if is_image_space(leaf)]
            keys = images if len(images) == 1 else [p for p, leaf in leaves.items() if _is_vector_box(leaf)]
        unknown = [key for key in keys if key not in leaves]
        if unknown or not keys:
            raise CompositionError(
                f"agent {agent!r}: obs_keys must name leaves of the observation space ({', '.join(leaves)}), "
                f"got {list(keys)}"
            )
        chosen = [leaves[key] for key in keys]
        if len(chosen) > 1 and not all(_is_vector_box(leaf) for leaf in chosen):
            raise CompositionError(
                f"agent {agent!r}: obs_keys {list(keys)} mix images or non-Box leaves; give one image leaf, "
                "or vector Box leaves only"
            )
        self.paths = list(keys)
        self._getters = [_path_getter(space, key) for key in keys]
        self._event_dims = [len(leaf.shape) for leaf in chosen]
        if len(chosen) == 1:
            self.space = chosen[0]
        else:
            width = sum(flat_dim(leaf) for leaf in chosen)
            self.space = gym.spaces.Box(-float("inf"), float("inf"), (width,), np.float32)

    def __call__(self, obs: Tree) -> torch.Tensor:
        if not self.structured:
            return obs
        parts = [getter(obs) for getter in self._getters]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([part.flatten(part.dim() - dims) for part, dims in zip(parts, self._event_dims)], dim=-1)


def _is_vector_box(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and not is_image_space(space) and np.issubdtype(space.dtype, np.number)


def _path_getter(space: gym.Space, path: str) -> Callable[[Tree], torch.Tensor]:
    """The function taking the leaf at ``path`` (as :func:`space_items` names it) out of an observation."""
    keys: list[str | int] = []
    node = space
    for part in path.split("."):
        if isinstance(node, gym.spaces.Tuple):
            keys.append(int(part))
            node = node.spaces[int(part)]
        else:
            keys.append(part)
            node = node.spaces[part]

    def get(obs: Tree) -> torch.Tensor:
        for key in keys:
            obs = obs[key]
        return obs

    return get
