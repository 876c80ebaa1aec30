"""The errors of environments, and the wrapper that names the failing env in them.

Every env :func:`rl_agents.envs.make_envs` builds is wrapped in :class:`IndexedEnv`, so an exception
raised by one env's ``step`` or ``reset``, or an observation whose shape or dtype does not fit the
observation space, becomes an :class:`EnvError` naming the env's index in the vector env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np


class EnvCreationError(ValueError):
    """The environment id is unknown or its family is not installed."""


class EnvError(RuntimeError):
    """An environment failed: it raised in ``step`` or ``reset``, returned an observation that does not
    fit its observation space, or its worker process died.

    ``indices`` are the failing envs' positions in the vector env, when known (empty otherwise);
    ``checkpoint`` is where ``Trainer.train(..., save_on_error=...)`` saved the trainer before raising.
    """

    checkpoint: Any = None

    def __init__(self, message: Any, indices: Sequence[int] | None = None):
        # An AsyncVectorEnv re-raises a worker's exception as ``type(error)(error)``: keep its indices.
        if indices is None and isinstance(message, EnvError):
            indices = message.indices
        super().__init__(str(message))
        self.indices: tuple[int, ...] = tuple(int(index) for index in indices) if indices is not None else ()

    def __reduce__(self) -> tuple:  # pickled between an async worker and the main process
        return (type(self), (str(self), self.indices))


class IndexedEnv(gym.Wrapper):
    """Names the env's ``index`` in its vector env in every error it raises.

    An exception raised by the wrapped env's ``step`` or ``reset`` becomes an :class:`EnvError`
    (chained to the original), and an observation whose shape differs from a Box observation space's,
    or whose dtype cannot be cast to it (e.g. floats for a uint8 image), is refused before the vector
    env stacks it. :func:`make_envs` wraps every env; wrap your own when building a vector env by hand::

        gym.vector.SyncVectorEnv([lambda i=i: IndexedEnv(MyEnv(), i) for i in range(num_envs)])

    Without it the Trainer still stops with an :class:`EnvError`, but can name the env only for an
    ``AsyncVectorEnv`` (whose failed worker it finds) or for non-finite values.
    """

    def __init__(self, env: gym.Env, index: int):
        super().__init__(env)
        self.index = int(index)
        space = env.observation_space
        # Plain values only (a tuple and a dtype string), so that the env's state stays capturable.
        self._shape: tuple[int, ...] | None = tuple(space.shape) if isinstance(space, gym.spaces.Box) else None
        self._dtype: str | None = space.dtype.str if isinstance(space, gym.spaces.Box) else None

    def step(self, action: Any) -> tuple:
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except EnvError:
            raise
        except Exception as error:
            raise EnvError(f"env {self.index} failed in step: {type(error).__name__}: {error}", [self.index]) from error
        if self._shape is not None:
            self._check(obs, "step")
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple:
        try:
            obs, info = self.env.reset(**kwargs)
        except EnvError:
            raise
        except Exception as error:
            raise EnvError(
                f"env {self.index} failed in reset: {type(error).__name__}: {error}", [self.index]
            ) from error
        if self._shape is not None:
            self._check(obs, "reset")
        return obs, info

    def _check(self, obs: Any, during: str) -> None:
        shape = getattr(obs, "shape", None)
        if shape is None:
            try:
                shape = np.shape(obs)
            except ValueError:  # a ragged nesting of lists
                shape = "ragged"
        if shape != self._shape:
            raise EnvError(
                f"env {self.index} returned an observation of shape {shape} from {during}; "
                f"its observation space has shape {self._shape}",
                [self.index],
            )
        dtype = getattr(obs, "dtype", None)
        if (
            dtype is not None
            and dtype.str != self._dtype
            and not np.can_cast(dtype, np.dtype(self._dtype), "same_kind")
        ):
            raise EnvError(
                f"env {self.index} returned an observation of dtype {dtype} from {during}; "
                f"its observation space has dtype {np.dtype(self._dtype)}",
                [self.index],
            )
