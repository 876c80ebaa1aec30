"""Encoders and normalizers for structured (Dict / Tuple) observations.

A Dict or Tuple observation arrives as a tree of tensors (see :mod:`rl_agents.core.tree`), batch
dimension first. :class:`ObservationEncoder` turns it into one ``[B, features]`` float32 tensor, each
leaf by the encoder its space calls for (a CNN for images, one-hots for discrete leaves, a flatten for
vectors); :class:`ObservationNormalizer` keeps running statistics for the leaves a normalizer should
touch (float vectors) and leaves the others alone. Both also take a plain (non-structured) space, so an
agent can use them whatever its environment's observations look like.

Unlike Stable-Baselines3's ``CombinedExtractor``: Discrete and MultiDiscrete leaves with ``start != 0``
are one-hot encoded correctly, nested Dicts and Tuples work, a leaf nobody can encode is refused when
the agent is built (naming the leaf) instead of failing inside a forward pass, and any leaf's encoder
can be replaced by the user's own module.

Leaves are named by their path (``"image"``, ``"a.b"``, ``"0"``; ``""`` for a non-structured space), as
:func:`~rl_agents.core.tree.space_items` names them.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rl_agents.core.agent import CompositionError
from rl_agents.core.nets import NatureCNN, is_image_space
from rl_agents.core.normalize import RunningMeanStd
from rl_agents.core.tree import Tree, space_items

# The module key of the leaf of a non-structured space (path ""): a module name cannot be empty.
ROOT_KEY = "obs"

Getter = Callable[[Tree], torch.Tensor]


# ------------------------------------------------------------------------------------------ leaf paths
def module_key(path: str) -> str:
    """The ``nn.ModuleDict`` key of a leaf: its path with ``"."`` replaced by ``"__"`` (module names
    cannot contain dots), :data:`ROOT_KEY` for the leaf of a non-structured space."""
    return path.replace(".", "__") if path else ROOT_KEY


def _leaf_keys(space: gym.Space) -> Iterator[tuple[Any, ...]]:
    """The dict keys / tuple indices leading to each leaf, in :func:`space_items` order.

    Accessors are built from these rather than by splitting a path on dots, since a Dict key may
    itself contain a dot."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            yield from ((key, *rest) for rest in _leaf_keys(sub))
    elif isinstance(space, gym.spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            yield from ((index, *rest) for rest in _leaf_keys(sub))
    else:
        yield ()


def _get_nested(keys: tuple[Any, ...], tree: Tree) -> torch.Tensor:
    for key in keys:
        tree = tree[key]
    return tree


def _getter(keys: tuple[Any, ...]) -> Getter:
    """A fast, picklable accessor for the leaf at ``keys``: ``itemgetter`` for a top-level leaf."""
    if len(keys) == 1:
        return operator.itemgetter(keys[0])
    return functools.partial(_get_nested, keys)


def _leaves(space: gym.Space) -> list[tuple[str, tuple[Any, ...], gym.Space]]:
    """``(path, keys, leaf space)`` per leaf; refuses two leaves whose paths or module keys coincide
    (a Dict key ``"a.b"`` beside a nested ``{"a": {"b": ...}}``), which could not be told apart."""
    leaves = [(path, keys, leaf) for (path, leaf), keys in zip(space_items(space), _leaf_keys(space))]
    seen: dict[str, str] = {}
    for path, _, _ in leaves:
        key = module_key(path)
        if key in seen:
            raise CompositionError(
                f"observation leaves {seen[key]!r} and {path!r} cannot be told apart (their names coincide "
                "once '.' is read as nesting); rename one of the keys"
            )
        seen[key] = path
    return leaves


def _describe(path: str) -> str:
    return f"observation leaf {path!r}" if path else "the observation"


def _add(modules: nn.ModuleDict, key: str, module: nn.Module) -> None:
    """``modules[key] = module`` even for keys that name a ModuleDict attribute (a Dict observation
    key such as ``"type"`` or ``"items"``), which ``__setitem__`` refuses. The key is only ever used
    for indexing and state_dict names, never as an attribute."""
    modules._modules[key] = module


# ------------------------------------------------------------------------------------- leaf encoders
class OneHot(nn.Module):
    """A ``Discrete(n, start)`` leaf (float32 ``[B]`` holding the integer) as an ``n``-wide one-hot.

    Rows of an identity matrix picked by ``index_select``: on the CPU, ``F.one_hot`` costs several
    times more (it reads the min and max back to check them). An index outside ``[0, n)`` still fails
    (IndexError on the CPU, a device assert on a GPU) rather than encoding garbage.
    """

    def __init__(self, space: gym.spaces.Discrete):
        super().__init__()
        self.n = int(space.n)
        self.start = int(space.start)
        self.out_dim = self.n
        # Derived from the space, so kept out of the state_dict; a buffer so it follows .to(device).
        self.register_buffer("table", torch.eye(self.n), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x.long() if self.start == 0 else (x - self.start).long()
        return self.table.index_select(0, index.reshape(-1))


class MultiOneHot(nn.Module):
    """A ``MultiDiscrete`` leaf (float32 ``[B, *nvec.shape]``) as its components' one-hots side by side.

    One row pick from an identity of the widest component's width (as :class:`OneHot`), then, when
    the widths differ, one column gather keeping each component's first ``nvec[i]`` columns: a fixed
    number of kernels whatever the number of components. (A value in ``[nvec[i], max(nvec))`` would
    encode as zeros, not fail; values outside the space are the environment's bug.)
    """

    def __init__(self, space: gym.spaces.MultiDiscrete):
        super().__init__()
        nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)
        start = np.asarray(getattr(space, "start", np.zeros_like(nvec)), dtype=np.int64).reshape(-1)
        self.width = int(nvec.max())
        self.out_dim = int(nvec.sum())
        # Derived from the space, so kept out of the state_dict; buffers so they follow .to(device).
        self.register_buffer("table", torch.eye(self.width), persistent=False)
        shift = torch.as_tensor(start, dtype=torch.float32) if np.any(start != 0) else None
        self.register_buffer("start", shift, persistent=False)
        keep = None
        if np.any(nvec != self.width):
            keep = torch.as_tensor(np.concatenate([i * self.width + np.arange(n) for i, n in enumerate(nvec)]))
        self.register_buffer("keep", keep, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)
        index = x.long() if self.start is None else (x - self.start).long()
        hot = self.table.index_select(0, index.reshape(-1)).reshape(x.shape[0], -1)
        return hot if self.keep is None else hot.index_select(1, self.keep)


class Flatten(nn.Module):
    """A vector, MultiBinary or other numeric leaf as ``prod(shape)`` float features."""

    def __init__(self, space: gym.Space):
        super().__init__()
        self.out_dim = int(np.prod(space.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).float()


def _is_numeric_box(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and (
        np.issubdtype(space.dtype, np.number) or np.issubdtype(space.dtype, np.bool_)
    )


def default_leaf_encoder(path: str, space: gym.Space, image_features: int | None = None) -> nn.Module:
    """The encoder a leaf of ``space`` gets unless the user gives one; CompositionError for a space
    no default encoder reads (Text, Graph, Sequence, ...)."""
    if is_image_space(space):
        try:
            return NatureCNN(space, image_features)
        except RuntimeError as error:  # a view too small for the convolutions
            raise CompositionError(
                f"{_describe(path)} ({space}) is too small for the default image encoder "
                f"({' '.join(str(error).split())}); give your own with encoders={{{path!r}: module}}"
            ) from None
    if isinstance(space, gym.spaces.Discrete):
        return OneHot(space)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiOneHot(space)
    if isinstance(space, gym.spaces.MultiBinary) or _is_numeric_box(space):
        return Flatten(space)
    raise CompositionError(
        f"{_describe(path)} has space {space}, which no observation encoder reads; "
        "drop it with gymnasium.wrappers.FilterObservation"
    )


def _check_user_encoder(path: str, module: Any) -> None:
    if not isinstance(module, nn.Module):
        raise ValueError(f"the encoder given for {_describe(path)} must be an nn.Module, got {type(module).__name__}")
    out_dim = getattr(module, "out_dim", None)
    if not isinstance(out_dim, int) or isinstance(out_dim, bool) or out_dim < 1:
        raise ValueError(
            f"the encoder given for {_describe(path)} ({type(module).__name__}) needs an integer attribute "
            f"out_dim >= 1 (its number of output features), got {out_dim!r}"
        )


# ------------------------------------------------------------------------------------------ encoder
class ObservationEncoder(nn.Module):
    """Encodes an observation tree (or a plain tensor) as one ``[B, out_dim]`` float32 tensor.

    Each leaf gets, unless ``encoders`` names it: an image Box the :class:`NatureCNN` (MiniGrid encoder
    for small views), ``Discrete`` / ``MultiDiscrete`` one-hots (``start`` respected), ``MultiBinary``
    and other numeric Boxes a flatten. The features are concatenated in leaf order.

    Args:
        space: the observation space (Dict, Tuple, nested, or a single leaf space).
        encoders: the user's modules for some leaves, by path; each takes the leaf as stored (uint8
            images stay uint8, everything else float32, batch first), returns float32 ``[B, out_dim]``
            and has an integer ``out_dim``. A leaf given here is never refused, whatever its space.
        image_features: width of the image encoders' last layer (default: 512 for frames, 64 for
            small views).
    """

    def __init__(
        self,
        space: gym.Space,
        encoders: Mapping[str, nn.Module] | None = None,
        image_features: int | None = None,
    ):
        super().__init__()
        leaves = _leaves(space)
        self.leaf_paths: list[str] = [path for path, _, _ in leaves]
        given = dict(encoders or {})
        unknown = sorted(set(given) - set(self.leaf_paths))
        if unknown:
            raise ValueError(
                f"encoders given for unknown observation leaves {unknown}; the leaves are {self.leaf_paths}"
            )
        self.encoders = nn.ModuleDict()
        self.image_paths: list[str] = []
        # (accessor, callable) per leaf, so forward does no string work. Built-in leaf encoders are
        # called through .forward (they have no hooks), skipping nn.Module.__call__'s bookkeeping,
        # which costs more than a one-hot; the user's modules and the CNNs go through __call__.
        self._plan: list[tuple[Getter | None, Callable[[torch.Tensor], torch.Tensor]]] = []
        for path, keys, leaf in leaves:
            if path in given:
                module = given[path]
                _check_user_encoder(path, module)
                call: Callable[[torch.Tensor], torch.Tensor] = module
            else:
                module = default_leaf_encoder(path, leaf, image_features)
                call = module if isinstance(module, NatureCNN) else module.forward
            if is_image_space(leaf):
                self.image_paths.append(path)
            _add(self.encoders, module_key(path), module)
            self._plan.append((_getter(keys) if keys else None, call))
        self.out_dim: int = sum(int(module.out_dim) for module in self.encoders.values())
        if self.out_dim == 0:
            raise CompositionError(f"the observation space {space} gives no features to encode")
        self._single = self._plan[0][1] if len(self._plan) == 1 and self._plan[0][0] is None else None

    def forward(self, obs: Tree) -> torch.Tensor:
        if self._single is not None:  # a non-structured space: just its leaf's encoder
            return self._single(obs)
        return torch.cat([encode(get(obs)) for get, encode in self._plan], dim=1)


# --------------------------------------------------------------------------------------- normalizer
def is_normalized_leaf(space: gym.Space) -> bool:
    """Leaves with running-statistics normalization: numeric Boxes other than images and uint8 data
    (pixels and symbolic grids are scaled by their encoders; one-hots and bits need no scaling)."""
    return (
        isinstance(space, gym.spaces.Box)
        and np.issubdtype(space.dtype, np.number)
        and space.dtype != np.uint8
        and not is_image_space(space)
    )


class ObservationNormalizer(nn.Module):
    """Running mean/std normalization of an observation tree's float vector leaves, one
    :class:`RunningMeanStd` per leaf (so each leaf keeps its own scale); other leaves pass through.

    For a non-structured Box space this is exactly one ``RunningMeanStd`` as the agents use it (same
    numbers, bit for bit), so a caller can use it whatever the space. The statistics are held in
    ``self.stats`` (keys: :func:`module_key` of the paths) and therefore travel in ``state_dict()``.
    """

    def __init__(self, space: gym.Space):
        super().__init__()
        self.stats = nn.ModuleDict()
        self.normalized_paths: list[str] = []
        self._plan: list[tuple[Getter | None, RunningMeanStd, tuple[int, ...]]] = []
        for path, keys, leaf in _leaves(space):
            if not is_normalized_leaf(leaf):
                continue
            shape = tuple(leaf.shape)
            rms = RunningMeanStd(shape)
            _add(self.stats, module_key(path), rms)
            self.normalized_paths.append(path)
            self._plan.append((_getter(keys) if keys else None, rms, shape))
        # Mirror of the observation tree: the RunningMeanStd at each normalized leaf, None for any
        # subtree without one (normalize returns such subtrees as they are, without walking them).
        self._spec = _spec_tree(space, iter(rms for _, rms, _ in self._plan), is_normalized_leaf)

    @torch.no_grad()
    def update(self, obs: Tree) -> None:
        """Merge a batch into the statistics; leaves may have any leading dimensions."""
        for get, rms, shape in self._plan:
            leaf = obs if get is None else get(obs)
            rms.update(leaf.reshape(-1, *shape))

    def normalize(self, obs: Tree, clip: float | None = None) -> Tree:
        """A new tree whose normalized leaves are float32 ``(x - mean) / std`` (clipped to ``±clip``);
        the other leaves (and untouched subtrees) are the very objects passed in."""
        return _normalize(obs, self._spec, clip)


def _spec_tree(space: gym.Space, stats: Iterator[RunningMeanStd], selected: Callable[[gym.Space], bool]) -> Any:
    """The tree of ``stats`` (taken in leaf order) at the ``selected`` leaves; None for subtrees
    holding none of them."""
    if isinstance(space, gym.spaces.Dict):
        subs = {key: _spec_tree(sub, stats, selected) for key, sub in space.spaces.items()}
        return {key: spec for key, spec in subs.items() if spec is not None} or None
    if isinstance(space, gym.spaces.Tuple):
        subs_tuple = tuple(_spec_tree(sub, stats, selected) for sub in space.spaces)
        return subs_tuple if any(spec is not None for spec in subs_tuple) else None
    return next(stats) if selected(space) else None


def _normalize(tree: Tree, spec: Any, clip: float | None) -> Tree:
    if spec is None:
        return tree
    if isinstance(spec, RunningMeanStd):
        return spec.normalize(tree.float(), clip=clip).float()
    if isinstance(spec, dict):
        return {key: _normalize(value, spec[key], clip) if key in spec else value for key, value in tree.items()}
    return tuple(_normalize(value, sub, clip) for value, sub in zip(tree, spec))
