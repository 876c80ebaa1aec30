"""Gymnasium spaces as JSON records and back, so that a checkpoint knows its environment's spaces.

A trained policy is rebuilt from a checkpoint without its environment (:class:`rl_agents.Policy`): the
agent's networks are shaped by the observation and action spaces, so the checkpoint records them.
Records are plain JSON (never pickles); reading one checks every field, since a checkpoint is data
from elsewhere. A Box whose bounds are all equal records them as one number, so an Atari frame stack
costs a few bytes, not 28,224 numbers per bound.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_agents.core.tree import map_space, space_items

# Dtypes a recorded space may name: numbers only (no objects, strings or structured dtypes).
NUMERIC_DTYPES = frozenset(
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"]
)
MAX_ELEMENTS = 100_000_000  # more numbers than any observation a policy network takes
MAX_SUBSPACES = 10_000


def observation_tensor_dtype(space: gym.Space) -> torch.dtype:
    """How observations of ``space`` are held as tensors: uint8 images stay uint8 (a quarter of the
    memory; networks scale them), everything else is float32."""
    return torch.uint8 if getattr(space, "dtype", None) == np.uint8 else torch.float32


# Leaf spaces whose observations are fixed-shape numbers, which tensors (and so storage) can hold.
TENSOR_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def require_tensor_observations(space: gym.Space) -> None:
    """Refuse an observation space with a leaf that is not fixed-shape numbers (Text, Graph, Sequence,
    ...), naming the leaf: nothing could store it, and dropping it silently would change the task."""
    for path, leaf in space_items(space, "observation"):
        if not isinstance(leaf, TENSOR_SPACES):
            raise UnsupportedObservationError(
                f"{path} is {leaf}, which cannot be held as a tensor; drop it with "
                "gymnasium.wrappers.FilterObservation (Dict spaces) or encode it as numbers with a wrapper"
            )


class UnsupportedObservationError(ValueError):
    """An observation space with a leaf that tensors cannot hold."""


def observation_layout(space: gym.Space) -> Any:
    """The ``(shape, tensor dtype)`` of each leaf of ``space``, as a tree of its observations' shape
    (one pair for a space that is not a Dict or Tuple)."""
    require_tensor_observations(space)
    return map_space(lambda leaf: (tuple(leaf.shape), observation_tensor_dtype(leaf)), space)


class SpaceRecordError(ValueError):
    """A space record that is not one :func:`space_record` writes."""


def space_record(space: gym.Space) -> dict[str, Any]:
    """``space`` as JSON values; a space this module cannot record gives ``{"type": None, "repr": ...}``
    (saving never fails for it; rebuilding it is refused with its description)."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "nvec": space.nvec.reshape(-1).tolist(),
            "start": space.start.reshape(-1).tolist(),
        }
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {key: space_record(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_record(sub) for sub in space.spaces]}
    return {"type": None, "repr": repr(space)}


def _bound(values: np.ndarray) -> float | int | list:
    flat = values.reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return flat[0].item()
    return flat.tolist()


def space_from_record(record: Any, where: str) -> gym.Space:
    """The space a :func:`space_record` describes; SpaceRecordError (naming ``where``) otherwise."""
    if not isinstance(record, dict):
        raise SpaceRecordError(f"{where}: expected an object, got {type(record).__name__}")
    kind = record.get("type")
    if kind is None and "repr" in record:
        raise SpaceRecordError(f"{where}: the space {str(record['repr'])[:200]} could not be recorded")
    builder = _BUILDERS.get(kind) if isinstance(kind, str) else None
    if builder is None:
        raise SpaceRecordError(f"{where}: unknown space type {kind!r} (known: {', '.join(sorted(_BUILDERS))})")
    try:
        return builder(record, where)
    except SpaceRecordError:
        raise
    except (TypeError, ValueError, OverflowError, AssertionError) as error:  # gymnasium's own checks
        raise SpaceRecordError(f"{where}: not a valid {kind} space ({' '.join(str(error).split())})") from None


def _shape(record: dict[str, Any], where: str) -> tuple[int, ...]:
    shape = record.get("shape")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise SpaceRecordError(f"{where}: shape must be a list of non-negative integers, got {shape!r}")
    if math.prod(shape) > MAX_ELEMENTS:
        raise SpaceRecordError(f"{where}: shape {shape} has more than {MAX_ELEMENTS:,} elements")
    return tuple(shape)


def _dtype(record: dict[str, Any], where: str) -> np.dtype:
    name = record.get("dtype")
    if name not in NUMERIC_DTYPES:
        raise SpaceRecordError(f"{where}: dtype must be one of {', '.join(sorted(NUMERIC_DTYPES))}, got {name!r}")
    return np.dtype(name)


def _numbers(value: Any, shape: tuple[int, ...], dtype: np.dtype, field: str, where: str) -> np.ndarray:
    """A bound recorded as one number or as ``prod(shape)`` numbers, as an array of ``shape``."""
    if _is_number(value):
        return np.full(shape, value, dtype=dtype)
    if not isinstance(value, list) or len(value) != math.prod(shape) or not all(_is_number(v) for v in value):
        raise SpaceRecordError(f"{where}: {field} must be a number or {math.prod(shape)} numbers")
    return np.asarray(value, dtype=dtype).reshape(shape)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _box(record: dict[str, Any], where: str) -> gym.Space:
    shape, dtype = _shape(record, where), _dtype(record, where)
    low = _numbers(record.get("low"), shape, dtype, "low", where)
    high = _numbers(record.get("high"), shape, dtype, "high", where)
    return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)


def _discrete(record: dict[str, Any], where: str) -> gym.Space:
    n, start = record.get("n"), record.get("start", 0)
    if not _is_int(n) or n < 1 or not _is_int(start):
        raise SpaceRecordError(f"{where}: Discrete needs an integer n >= 1 and an integer start, got {n!r}, {start!r}")
    return gym.spaces.Discrete(n, start=start)


def _multi_discrete(record: dict[str, Any], where: str) -> gym.Space:
    shape, dtype = _shape(record, where), _dtype(record, where)
    nvec = _numbers(record.get("nvec"), shape, np.dtype(np.int64), "nvec", where)
    start = _numbers(record.get("start", 0), shape, np.dtype(np.int64), "start", where)
    return gym.spaces.MultiDiscrete(nvec, dtype=dtype, start=start)


def _multi_binary(record: dict[str, Any], where: str) -> gym.Space:
    return gym.spaces.MultiBinary(list(_shape(record, where)))


def _dict(record: dict[str, Any], where: str) -> gym.Space:
    spaces = record.get("spaces")
    if not isinstance(spaces, dict) or not 0 < len(spaces) <= MAX_SUBSPACES:
        raise SpaceRecordError(f"{where}: Dict needs 'spaces', an object of 1 to {MAX_SUBSPACES} spaces")
    return gym.spaces.Dict({key: space_from_record(sub, f"{where}.{key}") for key, sub in spaces.items()})


def _tuple(record: dict[str, Any], where: str) -> gym.Space:
    spaces = record.get("spaces")
    if not isinstance(spaces, list) or not 0 < len(spaces) <= MAX_SUBSPACES:
        raise SpaceRecordError(f"{where}: Tuple needs 'spaces', a list of 1 to {MAX_SUBSPACES} spaces")
    return gym.spaces.Tuple([space_from_record(sub, f"{where}[{index}]") for index, sub in enumerate(spaces)])


_BUILDERS = {
    "Box": _box,
    "Discrete": _discrete,
    "MultiDiscrete": _multi_discrete,
    "MultiBinary": _multi_binary,
    "Dict": _dict,
    "Tuple": _tuple,
}
