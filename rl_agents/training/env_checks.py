"""What a vector env returns, checked at the boundary between the environments and the collector.

The collector checks every observation, reward and flag array before storing anything, whether it
steps its own envs (``Trainer.train``) or a hand-written loop passes them (``Trainer.observe``). The
rules follow Gymnasium's ``PassiveEnvChecker`` (``gymnasium.utils.passive_env_checker``), which only
warns; here a violation is an :class:`~rl_agents.envs.EnvError`, in one line, naming the env index
when one env's value is at fault:

* observations: the single observation space's dtype exactly (as ``check_obs``, which warns when
  ``obs.dtype != observation_space.dtype``) and the shape ``(num_envs, *space.shape)``, for the spaces
  the collector stores (Box, Discrete, MultiBinary, MultiDiscrete), leaf by leaf for a Dict or Tuple
  space (a missing or extra key is refused, naming it). Only dtype and shape are checked, not
  ``space.contains`` (bounds), which would cost a pass over every element.
* rewards: ``(num_envs,)`` numbers of a bool, int or float dtype (``env_step_passive_checker`` wants
  ``np.integer`` or ``np.floating``; bool is accepted too, as 0 and 1). Strings and object arrays are
  refused: numpy would turn ``"1.5"`` into 1.5.
* terminated and truncated: ``(num_envs,)`` of dtype bool (the checker wants ``bool`` or ``np.bool_``,
  and Gymnasium's vector envs return ``np.bool_`` arrays). A list of Python bools is accepted (numpy
  makes it a bool array); int 0/1 and strings are refused (as a bool, the string ``"False"`` is True).
* NaN or inf in an observation or reward: :class:`NonFiniteObservationError` naming the env. A finite
  value stored as float32 that overflows it (``|x| > 3.4028235e+38``, e.g. a float64 reward of 1e39)
  is an EnvError saying "overflows float32", not "non-finite".

The hot path costs a shape and dtype comparison per array and one reduction over the float data (a
``sum``; for float64 data, which float32 storage could overflow, a dot product with itself); only
when that reduction is out of range are the values looked at one by one, to name the env.

Gymnasium's ``SyncVectorEnv`` and ``AsyncVectorEnv`` write each env's reward into a float64 array and
its flags into a bool array before the collector sees them, so there a string reward or flag is
converted silently: :class:`~rl_agents.envs.IndexedEnv` (which :func:`~rl_agents.envs.make_envs` wraps
around every env) checks each env's values before that, and names the env.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import gymnasium as gym
import numpy as np

from rl_agents.core.tree import is_structured, map_space, map_tree, space_items, tree_leaves
from rl_agents.envs import EnvError
from rl_agents.envs.validation import describe_value, is_bool, is_number
from rl_agents.training.errors import NonFiniteObservationError

FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_MAX_SQUARED = FLOAT32_MAX * FLOAT32_MAX  # 1.16e77, well within float64
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned int, float


def _envs(indices: list[int]) -> str:
    return "env" + ("s " if len(indices) > 1 else " ") + ", ".join(map(str, indices))


def _describe_elements(row: np.ndarray, bad: np.ndarray) -> str:
    """The values of ``row`` where ``bad`` (a bool mask of the same shape) is set."""
    flat, positions = np.ravel(row), np.flatnonzero(np.ravel(bad))
    if flat.size == 1:
        return str(flat[0])
    shown = ", ".join(f"element {int(i)} is {flat[i]}" for i in positions[:3])
    return shown + (f" (and {len(positions) - 3} more)" if len(positions) > 3 else "")


def _per_env(values: np.ndarray, bad_rows: np.ndarray, indices: list[int]) -> str:
    if len(indices) == 1:
        return _describe_elements(values[indices[0]], bad_rows[indices[0]])
    return "; ".join(f"env {i}: {_describe_elements(values[i], bad_rows[i])}" for i in indices[:4])


def as_array(values: Any, what: str, row_shape: tuple[int, ...] = ()) -> np.ndarray:
    """``np.asarray(values)``; values that cannot be stacked (one env's has another shape) are an
    EnvError naming the envs whose value does not have ``row_shape``."""
    try:
        return np.asarray(values)
    except ValueError:  # numpy cannot stack a ragged nesting
        shapes = []
        for value in values:
            try:
                shapes.append(np.shape(value))
            except ValueError:
                shapes.append("ragged")
        odd = [i for i, shape in enumerate(shapes) if shape != row_shape]
        details = ", ".join(f"env {i}: {shapes[i]}" for i in odd[:4])
        raise EnvError(f"{what} cannot be stacked: shapes {details}; expected {row_shape} per env", odd) from None


def raise_if_non_finite(values: np.ndarray, what: str, source: str, global_step: int) -> None:
    """NonFiniteObservationError naming the envs whose row of ``values`` holds NaN or inf; else an
    EnvError naming those whose finite values overflow float32; else nothing (a finite sum that
    overflowed)."""
    rows = values.reshape(len(values), -1)
    bad = ~np.isfinite(rows)
    indices = np.flatnonzero(bad.any(axis=1)).tolist()
    if indices:
        message = f"non-finite {what} of {_envs(indices)} {source} at global step {global_step}"
        raise NonFiniteObservationError(f"{message}: {_per_env(values, bad, indices)}", indices)
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4:
        return
    bad = np.abs(rows) > FLOAT32_MAX
    indices = np.flatnonzero(bad.any(axis=1)).tolist()
    if indices:
        message = f"{what} of {_envs(indices)} {source} at global step {global_step} overflows float32"
        raise EnvError(
            f"{message}: {_per_env(values, bad, indices)} (the largest float32 is {FLOAT32_MAX:.8g})", indices
        )


def storable(values: np.ndarray) -> bool:
    """Whether numeric ``values`` are finite and stay finite as float32, checked with one reduction.
    True for ints and bools; False may also mean finite values whose sum (or sum of squares) is out of
    range: :func:`raise_if_non_finite` looks at each value."""
    if values.dtype.kind != "f":
        return True
    if values.dtype.itemsize > 4:  # float64: a finite 1e39 would become inf as float32
        # The sum of squares (one dot product) is at least the largest square; NaN and inf propagate.
        return bool(np.vdot(values, values) <= FLOAT32_MAX_SQUARED)
    return math.isfinite(values.sum())  # NaN and inf propagate through the sum


def _refuse_dtype(values: np.ndarray, what: str, fits: Any, expected: str) -> EnvError:
    """The EnvError for ``what`` (reward, terminated, truncated) of the wrong dtype: naming the envs
    whose elements do not ``fit`` in an object array, else showing the dtype and the first values."""
    bad = [i for i in range(len(values)) if not fits(values[i])] if values.dtype == object else []
    if len(bad) == 1:
        return EnvError(f"{what} of env {bad[0]} returned by step is {describe_value(values[bad[0]])}; {expected}", bad)
    if bad:
        details = "; ".join(f"env {i}: {describe_value(values[i])}" for i in bad[:4])
        return EnvError(f"{what} of {_envs(bad)} returned by step: {details}; {expected}", bad)
    shown = ", ".join(repr(value) for value in values[:4].tolist()) + (", ..." if len(values) > 4 else "")
    return EnvError(f"{what} returned by step: dtype {values.dtype} [{shown}]; {expected}")


class EnvOutputChecks:
    """The checks of one collector's env outputs (see the module's docstring)."""

    def __init__(self, num_envs: int, observation_space: gym.Space):
        self.num_envs = num_envs
        self.structured = is_structured(observation_space)
        self.leaves = [
            _LeafCheck(num_envs, path if self.structured else "", leaf) for path, leaf in space_items(observation_space)
        ]
        self.obs_shape = self.leaves[0].shape  # (a plain space's only leaf)
        self.observation_space = observation_space
        self.layout = map_space(lambda leaf: None, observation_space)  # what the obs are walked against

    def observations(self, obs: Any, source: str, global_step: int) -> Any:
        """``obs`` as an array (a tree of arrays for a Dict or Tuple space), after cheap checks of each
        leaf's shape, dtype and (float data) finiteness."""
        if not self.structured:
            return self.leaves[0].check(self, obs, source, global_step)
        try:
            arrays = map_tree(lambda _, value: np.asarray(value), self.layout, obs)
        except (KeyError, IndexError, TypeError) as error:
            raise EnvError(
                f"observations {source} do not have the structure of the observation space "
                f"{self.observation_space} ({type(error).__name__}: {error})"
            ) from None
        _refuse_extra_keys(obs, self.observation_space, f"observations {source}")
        checked = dict(zip((leaf.path for leaf in self.leaves), tree_leaves(arrays)))
        for leaf in self.leaves:
            leaf.check(self, checked[leaf.path], source, global_step)
        return arrays

    def with_final_observations(self, next_obs: Any, done: np.ndarray, info: dict[str, Any], global_step: int) -> Any:
        """A same-step autoreset's next observations with each finished env's final observation (from
        ``info["final_obs"]``) in place of its reset observation. Each final observation is checked as
        the step's are (structure, each leaf's shape and dtype, finiteness), naming the env and leaf."""
        patched = map_tree(lambda leaf: np.array(leaf, copy=True), next_obs)
        for index in np.flatnonzero(info.get("_final_obs", done)):
            map_tree(
                functools.partial(_set_row, index), patched, self._final_observation(info["final_obs"][index], index)
            )
        for leaf, values in zip(self.leaves, tree_leaves(patched)):
            if leaf.float:
                self.finite(values, f"final {leaf.name}", "in info['final_obs']", global_step)
        return patched

    def _final_observation(self, final: Any, index: int) -> Any:
        """One env's final observation as arrays, refused (EnvError naming the env and leaf) unless it has
        the space's structure and each leaf its shape and dtype: writing it into the batch would broadcast
        a wrong shape and cast a wrong dtype silently."""
        where = f"final observation of env {index} in info['final_obs']"
        if not self.structured:
            arrays = np.asarray(final)
        else:
            try:
                arrays = map_tree(lambda _, value: np.asarray(value), self.layout, final)
            except (KeyError, IndexError, TypeError) as error:
                raise EnvError(
                    f"{where} does not have the structure of the observation space {self.observation_space} "
                    f"({type(error).__name__}: {error})",
                    [index],
                ) from None
            _refuse_extra_keys(final, self.observation_space, where)
        for leaf, value in zip(self.leaves, tree_leaves(arrays)):
            if value.shape != leaf.shape[1:] or value.dtype != leaf.dtype:
                name = f" (leaf {leaf.path!r})" if leaf.path else ""
                raise EnvError(
                    f"{where}{name} has shape {value.shape} and dtype {value.dtype}; the observation space's are "
                    f"{leaf.shape[1:]} and {leaf.dtype}",
                    [index],
                )
        return arrays

    def finite(self, values: np.ndarray, what: str, source: str, global_step: int) -> None:
        """Raise if float ``values`` hold NaN or inf, or values that overflow float32 when stored
        (integers and bools always pass)."""
        if not storable(values):
            raise_if_non_finite(values, what, source, global_step)

    def step(
        self, reward: Any, terminated: Any, truncated: Any, global_step: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(reward as float32, terminated, truncated)`` after the checks of their shape and dtype and
        of the rewards' finiteness."""
        try:
            reward, terminated, truncated = np.asarray(reward), np.asarray(terminated), np.asarray(truncated)
        except ValueError:  # which one cannot be stacked: raises, naming the envs
            for name, values in (("rewards", reward), ("terminated", terminated), ("truncated", truncated)):
                as_array(values, f"{name} returned by step")
            raise
        expected = (self.num_envs,)
        if reward.shape != expected or terminated.shape != expected or truncated.shape != expected:
            raise EnvError(
                f"the vector env returned rewards, terminated and truncated of shapes {reward.shape}, "
                f"{terminated.shape} and {truncated.shape}; expected {expected} each"
            )
        if reward.dtype.kind not in NUMERIC_KINDS:
            raise _refuse_dtype(reward, "reward", is_number, "expected numbers (bool, int or float)")
        if terminated.dtype != np.bool_ or truncated.dtype != np.bool_:
            name, flags = ("terminated", terminated) if terminated.dtype != np.bool_ else ("truncated", truncated)
            raise _refuse_dtype(flags, name, is_bool, "expected bools (True or False; int 0/1 is refused)")
        self.finite(reward, "reward", "returned by step", global_step)
        return np.asarray(reward, dtype=np.float32), terminated, truncated


class _LeafCheck:
    """The shape and dtype one observation leaf must have, and whether its values are checked."""

    def __init__(self, num_envs: int, path: str, space: gym.Space):
        self.path = path
        self.name = f"observation {path!r}" if path else "observation"
        self.shape = (num_envs, *space.shape)
        self.dtype = np.dtype(space.dtype)
        self.float = self.dtype.kind == "f"  # uint8 images and integers are never checked

    def check(self, checks: EnvOutputChecks, obs: Any, source: str, global_step: int) -> np.ndarray:
        what = f"observation {self.path!r} {source}" if self.path else f"observations {source}"
        try:
            obs = np.asarray(obs)
        except ValueError:
            as_array(obs, what, self.shape[1:])  # raises, naming the envs
            raise
        if obs.shape != self.shape:
            raise EnvError(
                f"{what} have shape {obs.shape}; expected {self.shape} "
                f"({self.shape[0]} envs x the observation space's shape {self.shape[1:]})"
            )
        if obs.dtype != self.dtype:
            raise EnvError(f"{what} have dtype {obs.dtype}, not the observation space's {self.dtype}")
        if self.float:
            checks.finite(obs, self.name, source, global_step)
        return obs


def _refuse_extra_keys(obs: Any, space: gym.Space, what: str) -> None:
    """A dict observation with keys its Dict space does not have (they would be dropped unseen)."""
    if isinstance(space, gym.spaces.Dict) and isinstance(obs, dict):
        extra = obs.keys() - space.spaces.keys()
        if extra:
            raise EnvError(f"{what} have keys {sorted(extra)} that the observation space {space} does not have")
        for key, sub in space.spaces.items():
            _refuse_extra_keys(obs[key], sub, what)
    elif isinstance(space, gym.spaces.Tuple) and isinstance(obs, tuple):
        for value, sub in zip(obs, space.spaces):
            _refuse_extra_keys(value, sub, what)


def _set_row(index: int, array: np.ndarray, value: Any) -> None:
    array[index] = value
