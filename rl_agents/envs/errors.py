"""The errors of environments, and the wrapper that names the failing env in them.

Every env :func:`rl_agents.envs.make_envs` builds is wrapped in :class:`IndexedEnv`, so an exception
raised by one env's ``step`` or ``reset``, an observation whose shape or dtype is not the observation
space's, or a reward or flag of the wrong type, becomes an :class:`EnvError` naming the env's index in
the vector env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rl_agents.envs.validation import describe_value, is_bool, is_number


class EnvCreationError(ValueError):
    """The environment id is unknown or its family is not installed."""


class EnvError(RuntimeError):
    """An environment failed: it raised in ``step`` or ``reset``, returned an observation that does not
    fit its observation space, a reward that is not a number or a flag that is not a bool (see
    :mod:`rl_agents.training.env_checks`), or its worker process died.

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
    (chained to the original). An observation whose shape or dtype differs from a Box observation
    space's, a reward that is not a number (bool, int or float; not a string) and a ``terminated`` or
    ``truncated`` that is not a bool (not an int 0/1, not a string) are refused before the vector env
    converts them (it would store the reward ``"1.5"`` as 1.5 and the flag ``"False"`` as True).
    :func:`make_envs` wraps every env; wrap your own when building a vector env by hand::

        gym.vector.SyncVectorEnv([lambda i=i: IndexedEnv(MyEnv(), i) for i in range(num_envs)])

    Without it the Trainer still stops with an :class:`EnvError`, but can name the env only for an
    ``AsyncVectorEnv`` (whose failed worker it finds) or for non-finite values, and cannot see a string
    reward or flag that the vector env converted.
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
        plain = type(reward) in (float, int) and type(terminated) is bool and type(truncated) is bool  # fast path
        if not plain and not (is_number(reward) and is_bool(terminated) and is_bool(truncated)):
            self._refuse_step_values(reward, terminated, truncated)
        return obs, reward, terminated, truncated, info

    def _refuse_step_values(self, reward: Any, terminated: Any, truncated: Any) -> None:
        if not is_number(reward):
            raise EnvError(
                f"env {self.index} returned a reward of {describe_value(reward)} from step; "
                "expected a number (bool, int or float)",
                [self.index],
            )
        name, flag = ("terminated", terminated) if not is_bool(terminated) else ("truncated", truncated)
        raise EnvError(
            f"env {self.index} returned {name}={describe_value(flag)} from step; expected a bool (True or False)",
            [self.index],
        )

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
        dtype = getattr(obs, "dtype", None)  # (a list takes the space's dtype in the vector env)
        if dtype is not None and dtype.str != self._dtype:
            raise EnvError(
                f"env {self.index} returned an observation of dtype {dtype} from {during}; "
                f"its observation space has dtype {np.dtype(self._dtype)}",
                [self.index],
            )
