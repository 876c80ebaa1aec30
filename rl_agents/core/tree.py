"""Structured observations: trees of tensors (or arrays) shaped like a Dict or Tuple space.

An observation of a ``gymnasium.spaces.Dict`` space is a ``dict`` of its keys' observations, of a
``Tuple`` space a ``tuple``; any other space's observation is one tensor (a leaf). The machinery
(storage, replay, minibatches, checkpoints, distributed collection) maps its per-tensor operations over
the leaves with :func:`map_tree`; a plain tensor is its own one-leaf tree and costs one ``isinstance``.

Hand-written rather than ``torch.utils._pytree``: that module is private, and the plain-tensor case is
on the per-step hot path, where a generic flatten/unflatten costs more than the step's copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gymnasium as gym

Leaf = TypeVar("Leaf")
Out = TypeVar("Out")
# A tensor, an array, or a dict/tuple of trees (recursively).
Tree = Any


def is_structured(space: gym.Space) -> bool:
    """Whether observations of ``space`` are dicts or tuples rather than one tensor."""
    return isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple))


def map_tree(fn: Callable[..., Out], tree: Tree, *others: Tree, is_leaf: Callable[[Any], bool] | None = None) -> Tree:
    """``fn`` applied to each leaf of ``tree`` (and the leaves at the same place in ``others``), in a
    tree of the same shape. Dicts keep their key order. ``is_leaf`` marks nodes to treat as leaves
    (e.g. ``(shape, dtype)`` pairs, which are tuples)."""
    if is_leaf is not None and is_leaf(tree):
        return fn(tree, *others)
    if isinstance(tree, dict):
        return {
            key: map_tree(fn, value, *(other[key] for other in others), is_leaf=is_leaf) for key, value in tree.items()
        }
    if isinstance(tree, tuple):
        return tuple(
            map_tree(fn, value, *(other[index] for other in others), is_leaf=is_leaf)
            for index, value in enumerate(tree)
        )
    return fn(tree, *others)


def tree_leaves(tree: Tree) -> list[Any]:
    """The leaves in order (dict keys in their order, tuple entries by index)."""
    return [leaf for _, leaf in tree_items(tree)]


def tree_items(tree: Tree, name: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, leaf)`` pairs; a path names the leaf as ``name.key`` / ``name.0`` (``name`` for a leaf)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from tree_items(value, f"{name}.{key}" if name else str(key))
    elif isinstance(tree, tuple):
        for index, value in enumerate(tree):
            yield from tree_items(value, f"{name}.{index}" if name else str(index))
    else:
        yield name, tree


def first_leaf(tree: Tree) -> Any:
    """The first leaf (e.g. to read the batch size of an observation tree)."""
    while isinstance(tree, (dict, tuple)):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tree


def map_space(fn: Callable[[gym.Space], Out], space: gym.Space) -> Tree:
    """``fn`` applied to each leaf space of a (possibly nested) Dict or Tuple space, as a tree of the
    observations' shape."""
    if isinstance(space, gym.spaces.Dict):
        return {key: map_space(fn, sub) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(map_space(fn, sub) for sub in space.spaces)
    return fn(space)


def space_items(space: gym.Space, name: str = "") -> Iterator[tuple[str, gym.Space]]:
    """``(path, leaf space)`` pairs, named as :func:`tree_items` names the leaves."""
    if isinstance(space, gym.spaces.Dict):
        for key, sub in space.spaces.items():
            yield from space_items(sub, f"{name}.{key}" if name else str(key))
    elif isinstance(space, gym.spaces.Tuple):
        for index, sub in enumerate(space.spaces):
            yield from space_items(sub, f"{name}.{index}" if name else str(index))
    else:
        yield name, space


def named_leaves(tree: Tree, name: str) -> Tree:
    """``tree`` with each leaf replaced by its path (``name.key``): where the leaf lives in a flat batch."""
    if isinstance(tree, dict):
        return {key: named_leaves(value, f"{name}.{key}") for key, value in tree.items()}
    if isinstance(tree, tuple):
        return tuple(named_leaves(value, f"{name}.{index}") for index, value in enumerate(tree))
    return name


def flatten_structured(batch: dict[str, Tree], structures: dict[str, Tree]) -> dict[str, Any]:
    """``batch`` with each structured value (a key of ``structures``, a tree of flat names from
    :func:`named_leaves`) spread over one flat key per leaf; a structured value under a key that is
    not in ``structures`` raises ValueError (it could not be put back together)."""
    flat: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, (dict, tuple)):
            if key not in structures:
                raise ValueError(f"{key!r} holds a dict or tuple of tensors; only observations may be structured")
            for name, leaf in zip(tree_leaves(structures[key]), tree_leaves(value)):
                flat[name] = leaf
        else:
            flat[key] = value
    return flat


def nest_structured(flat: dict[str, Any], structures: dict[str, Tree]) -> dict[str, Any]:
    """The inverse of :func:`flatten_structured` for the structured keys whose leaves ``flat`` holds."""
    if not structures:
        return flat
    nested = dict(flat)
    for key, names in structures.items():
        leaves = tree_leaves(names)
        if leaves and leaves[0] in nested:
            nested[key] = map_tree(nested.pop, names)
    return nested
