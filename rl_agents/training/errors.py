"""The errors that stop training on bad numbers."""

from __future__ import annotations

from typing import Any

from rl_agents.core.agent import ContractError
from rl_agents.envs.errors import EnvError


class NonFiniteError(FloatingPointError):
    """A NaN or infinite number stopped training. ``checkpoint``: where ``train(..., save_on_error=...)``
    saved the trainer before raising (None otherwise)."""

    checkpoint: Any = None


class NonFiniteLossError(NonFiniteError):
    """A loss term or gradient became NaN or infinite; the message names the agent and the loss term
    (or the agent whose parameters hold the non-finite gradient)."""


class NonFiniteProvidedError(ContractError, NonFiniteError):
    """An agent's ``preprocess`` wrote a NaN or infinite value into a key it provides; the message names
    that agent (not the one that would have read it), the key, how many values are NaN and inf, and the
    update. A ContractError, and a NonFiniteError so that the update rolls back and ``train(...,
    save_on_error=...)`` saves ``last_good``; ``skip_non_finite_updates`` never skips it."""


class NonFiniteObservationError(NonFiniteError, EnvError):
    """An environment returned a NaN or infinite observation or reward; ``indices`` are the envs."""

    def __init__(self, message: Any, indices: Any = None):
        EnvError.__init__(self, message, indices)


class CollectionError(RuntimeError):
    """Collection cannot go on (e.g. remote workers failed too often); the trainer is left at an
    update boundary. ``checkpoint``: where ``train(..., save_on_error=...)`` saved it (None otherwise)."""

    checkpoint: Any = None
