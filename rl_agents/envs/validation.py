"""What one env's ``step`` may return as its reward and flags (the rules of
:mod:`rl_agents.training.env_checks`, for a single env: :class:`~rl_agents.envs.IndexedEnv` applies
them before a vector env converts the values and the env that returned them can no longer be told).

Gymnasium's ``env_step_passive_checker`` warns when the reward is not an ``np.integer`` or
``np.floating`` (Python ints and floats are) and when ``terminated`` or ``truncated`` is not a
``bool`` or ``np.bool_``; these are errors here. A bool reward counts as a number (0 or 1), and a
0-d array of a number or a bool as one.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_number(value: Any) -> bool:
    """A reward: a Python or numpy bool, int or float, or a 0-d array of one (not a string)."""
    if isinstance(value, (int, float, np.integer, np.floating, np.bool_)):  # a Python bool is an int
        return True
    return isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "biuf"


def is_bool(value: Any) -> bool:
    """A flag: a Python or numpy bool, or a 0-d bool array (not an int 0/1, not a string)."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return isinstance(value, np.ndarray) and value.shape == () and value.dtype == np.bool_


def describe_value(value: Any, limit: int = 60) -> str:
    """``value`` for an error message: its repr on one line (shortened) and its type."""
    text = " ".join(repr(value).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"
