"""State dicts: the checks every stateful component runs before it loads one.

Components load in two phases, :meth:`prepare_load` (check everything, change nothing, return the
function that applies it) and the apply itself, so that a state that does not fit is refused with a
:class:`StateError` naming what and where, and leaves the component as it was. A trainer prepares all
its components first and applies them only when every one accepted its part.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Apply = Callable[[], None]


class StateError(ValueError):
    """A state dict that does not fit the component loading it; the message names the part."""


def is_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    """isinstance, except that a bool is no number (JSON's true is not 1 here)."""
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return False
    return isinstance(value, kinds)


def entry(state: Any, key: str, expected: type | tuple[type, ...], where: str) -> Any:
    """``state[key]``, refused unless ``state`` is a dict holding it with the expected type."""
    if not isinstance(state, dict):
        raise StateError(f"{where}: expected an object, got {type(state).__name__}")
    if key not in state:
        raise StateError(f"{where}: missing key {key!r}")
    value = state[key]
    if not is_type(value, expected):
        raise StateError(f"{where}: key {key!r} has the wrong type ({type(value).__name__})")
    return value


def count(state: Any, key: str, where: str) -> int:
    """A whole number >= 0 (a counter or a step)."""
    value = entry(state, key, int, where)
    if value < 0:
        raise StateError(f"{where}: key {key!r} is negative ({value})")
    return value


def numbers(state: Any, key: str, kind: type | tuple[type, ...], length: int | None, where: str, what: str) -> list:
    """A list of ``kind`` values (of ``length`` items when given); ``what`` describes it in the error."""
    values = entry(state, key, list, where)
    if (length is not None and len(values) != length) or not all(is_type(v, kind) for v in values):
        raise StateError(f"{where}: {key} must hold {what}")
    return values


def check_tensor(saved: Any, current: torch.Tensor, what: str) -> torch.Tensor:
    """``saved``, refused unless it is a tensor of ``current``'s shape and dtype."""
    if not isinstance(saved, torch.Tensor):
        raise StateError(f"{what} is missing or not a tensor")
    if tuple(saved.shape) != tuple(current.shape):
        raise StateError(f"{what} has shape {list(saved.shape)} in the checkpoint, {list(current.shape)} here")
    if saved.dtype != current.dtype:
        raise StateError(f"{what} has dtype {saved.dtype} in the checkpoint, {current.dtype} here")
    return saved


def prepare_module_load(module: nn.Module, state: Any, who: str, path: str) -> Apply:
    """Check ``state`` against ``module.state_dict()`` (the same keys, shapes and dtypes; JSON extra
    state where the module has it) and return the function that loads it. ``who`` names the module
    in messages ("agent 'ppo'"); ``path`` is where its state sits in the checkpoint ("agents/ppo")."""
    if not isinstance(state, dict):
        raise StateError(f"{who}: state must be an object, got {type(state).__name__}")
    loaded: dict[str, Any] = {}
    for key, current in module.state_dict().items():
        if key not in state:
            kind = "tensor" if isinstance(current, torch.Tensor) else "extra state"
            raise StateError(f"{who}: missing {kind} {key!r} (was it built with other options?)")
        if isinstance(current, torch.Tensor):
            loaded[key] = check_tensor(state[key], current, f"{who}: tensor {key!r}")
        else:
            loaded[key] = state[key]
    unexpected = sorted(set(state) - set(loaded))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise StateError(
            f"{who}: checkpoint has tensor '{path}/{unexpected[0]}' that this trainer does not{more}"
            " (was the agent built with other options?)"
        )

    def apply() -> None:
        module.load_state_dict(loaded, strict=True)

    return apply
