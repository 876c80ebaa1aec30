"""Capture and restore the state of a Gymnasium vector environment, without pickling.

A checkpoint that holds the environments lets a resumed run continue the very episodes it was in,
bit for bit, instead of starting new ones. :func:`capture_env_state` turns a
``gymnasium.vector.SyncVectorEnv`` (optionally inside vector wrappers) into ``(tensors, state)``:
tensors for every numpy array and a JSON-able dict for everything else; :func:`restore_env_state`
writes them into a freshly made, identical vector env.

What is saved, per sub-env, walking its wrapper chain from the outermost wrapper to the unwrapped env:

* every attribute in each object's ``__dict__`` that defines its future: numbers, strings, numpy
  arrays and scalars, lists, tuples, dicts and deques of those (CartPole's ``state`` and
  ``steps_beyond_terminated``, TimeLimit's ``_elapsed_steps``, RecordEpisodeStatistics' accumulators,
  FrameStackObservation's frame queue, ...);
* ``numpy.random.Generator`` / ``RandomState`` bit-generator states (JSON, e.g. PCG64's state dict)
  and the random generators of the action and observation spaces;
* MuJoCo's ``MjData``: every array of it (integration state: qpos, qvel, act, ctrl, warm start,
  applied forces, ...; and the derived quantities some rewards read before the next step) and ``time``;
* the Arcade Learning Environment's emulator state with its RNG (``cloneState(include_rng=True)``,
  serialized), for Atari games without sticky actions (``repeat_action_probability=0``, as the
  ``*NoFrameskip-v4`` ids): ale-py's state lacks the previous action that sticky actions repeat.

Static parts (functions such as TransformReward's ``func``, spaces' shapes, ``EnvSpec``, MuJoCo's
``MjModel``, renderers, constructor-argument records) are left to the fresh env, which has them already.
The vector env's per-env autoreset flags (``_autoreset_envs``) and, optionally, the trainer's last
observation are saved too.

* MiniGrid's plain objects (the ``Grid``, its doors, keys, boxes and walls, rooms), as their attributes,
  rebuilt without running their constructors; references between them are kept. Only classes of the
  ``minigrid`` package are rebuilt this way, never a class named by the saved data alone.

Anything else (an object of an unknown type in an env's state, e.g. Box2D worlds;
Atari with sticky actions, the ``ALE/*-v5`` default; an ``AsyncVectorEnv``, whose envs live in other
processes) raises :class:`EnvStateUnsupported`: the caller then falls back to re-seeding and resetting
the environments on resume.
"""

from __future__ import annotations

import collections
import enum
import functools
import math
import types
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

FORMAT = "rl_agents.envstate"
VERSION = 1
TENSOR_PREFIX = "envs/"

# Attributes that are configuration or references, never state: re-created identically by the env
# constructor (or, for ``env``, walked as the next link of the wrapper chain).
_SKIP_ATTRS = frozenset(
    {
        "env",
        "metadata",
        "_metadata",
        "spec",
        "_cached_spec",
        "render_mode",
        "_saved_kwargs",
        "_ezpickle_args",
        "_ezpickle_kwargs",
    }
)
# Per class: attributes that do not influence the env's future (checker bookkeeping).
_SKIP_CLASS_ATTRS = {
    "gymnasium.wrappers.common.PassiveEnvChecker": frozenset({"_previous_data"}),
}
# Types whose instances are static: created by the env's constructor and never changed by stepping.
_STATIC_TYPE_PATHS = frozenset(
    {
        "mujoco._structs.MjModel",
        "mujoco._structs.MjOption",
        "mujoco._structs.MjVisual",
        "mujoco._structs.MjStatistic",
        "gymnasium.envs.mujoco.mujoco_rendering.MujocoRenderer",
        "gymnasium.envs.registration.EnvSpec",
    }
)
_STATIC_TYPES = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.BuiltinMethodType,
    functools.partial,
    type,
    types.ModuleType,
)
# Packages whose plain objects (no __slots__, default __new__, not envs or spaces) are saved as their
# attributes and rebuilt as such: MiniGrid's Grid, WorldObj subclasses (doors, keys, ...) and rooms;
# MinAtar's game objects (the Environment and each game's Env: positions, maps, RandomState).
_PLAIN_OBJECT_PACKAGES = frozenset({"minigrid", "minatar"})
# dtypes stored as tensors of the same dtype; any other plain dtype is stored as its raw bytes.
_NATIVE_DTYPES = {
    np.dtype(np.bool_): torch.bool,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
}


class EnvStateUnsupported(Exception):
    """The environments' state cannot be captured (the message says which part and why)."""


class EnvStateMismatch(ValueError):
    """A saved environment state does not fit the environments it should be restored into."""


def _type_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------- chains
def _vector_chain(envs: Any) -> tuple[list[Any], gym.vector.SyncVectorEnv]:
    """(vector wrappers from the outside in, the SyncVectorEnv) or EnvStateUnsupported."""
    wrappers = []
    current = envs
    while isinstance(current, gym.vector.VectorWrapper):
        wrappers.append(current)
        current = current.env
    if not isinstance(current, gym.vector.SyncVectorEnv):
        raise EnvStateUnsupported(
            f"{type(current).__name__} is not a gymnasium SyncVectorEnv (an AsyncVectorEnv's envs live in other "
            "processes and cannot be inspected)"
        )
    return wrappers, current


def _env_chain(env: gym.Env) -> list[Any]:
    chain = [env]
    while isinstance(chain[-1], gym.Wrapper):
        chain.append(chain[-1].env)
    return chain


# ---------------------------------------------------------------------------------------------- encoding
class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        # id(object) -> index, so that objects the env shares (an array two wrappers refer to, one
        # generator) are shared again after a restore. Only objects the env holds are recorded.
        self._rng_ids: dict[int, int] = {}
        self._array_ids: dict[int, int] = {}
        self._object_ids: dict[int, int] = {}
        self._alive: list[Any] = []

    def shared_array(self, value: np.ndarray, key: str) -> dict[str, Any]:
        index = self._array_ids.get(id(value))
        if index is not None:
            return {"alias": index}
        self._array_ids[id(value)] = index = len(self._array_ids)
        self._alive.append(value)  # keeps the id unique while encoding
        return {**self.array(value, key), "id": index}

    def array(self, value: np.ndarray, key: str) -> dict[str, Any]:
        if value.dtype.hasobject or value.dtype.fields is not None:
            raise EnvStateUnsupported(f"{key}: numpy array of dtype {value.dtype} cannot be saved without pickling")
        while key in self.tensors:  # two attribute paths that read alike
            key += "'"
        entry: dict[str, Any] = {"array": key, "dtype": value.dtype.str, "shape": list(value.shape)}
        if value.size == 0:
            entry["array"] = None
            return entry
        contiguous = np.array(value, order="C", copy=True)  # (ascontiguousarray would make 0-d arrays 1-d)
        native = _NATIVE_DTYPES.get(contiguous.dtype)
        if native is not None and contiguous.dtype.isnative:
            self.tensors[key] = torch.from_numpy(contiguous)
        else:
            self.tensors[key] = torch.from_numpy(np.frombuffer(contiguous.tobytes(), dtype=np.uint8).copy())
            entry["raw"] = True
        return entry

    def rng(self, value: np.random.Generator | np.random.RandomState, key: str) -> dict[str, Any]:
        bit_generator = value.bit_generator if isinstance(value, np.random.Generator) else value._bit_generator
        index = self._rng_ids.setdefault(id(value), len(self._rng_ids))
        self._alive.append(value)
        return {
            "rng": "Generator" if isinstance(value, np.random.Generator) else "RandomState",
            "id": index,
            "state": _jsonable_rng_state(bit_generator.state, key),
        }

    def encode(self, value: Any, key: str) -> Any:
        if isinstance(value, np.generic):  # before Python's scalars: np.float64 is a float
            if isinstance(value, np.bool_):
                return {"np": "bool", "v": bool(value)}
            if isinstance(value, np.integer):
                return {"np": value.dtype.str, "v": int(value)}
            if isinstance(value, np.floating) and value.dtype.itemsize <= 8:
                return {"np": value.dtype.str, "v": float(value)}
            return {"np0": self.array(np.asarray(value), key)}
        if value is None or isinstance(value, (bool, int, float, str)):
            if type(value) not in (type(None), bool, int, float, str):  # a subclass (IntEnum, ...)
                if isinstance(value, enum.Enum):
                    return {"enum": _type_path(value), "value": self.encode(value.value, key)}
                raise EnvStateUnsupported(f"{key}: {type(value).__name__} values are not supported")
            return {"py": value}
        if isinstance(value, np.ndarray):
            return self.shared_array(value, key)
        if isinstance(value, (np.random.Generator, np.random.RandomState)):
            return self.rng(value, key)
        if isinstance(value, gym.Space):
            rng = value.__dict__.get("_np_random")
            return {"space": _type_path(value), "rng": None if rng is None else self.rng(rng, key + "/rng")}
        if isinstance(value, collections.deque):
            return {"deque": [self.encode(item, f"{key}/{i}") for i, item in enumerate(value)], "maxlen": value.maxlen}
        if type(value) in (list, tuple):
            return {type(value).__name__: [self.encode(item, f"{key}/{i}") for i, item in enumerate(value)]}
        if type(value) is dict:
            if all(isinstance(k, str) for k in value):
                return {"dict": {k: self.encode(item, f"{key}/{k}") for k, item in value.items()}}
            return {
                "items": [
                    [self.encode(k, f"{key}/key{i}"), self.encode(item, f"{key}/{i}")]
                    for i, (k, item) in enumerate(value.items())
                ]
            }
        if isinstance(value, enum.Enum) or (
            hasattr(type(value), "__members__") and isinstance(getattr(value, "value", None), int)
        ):
            # Python enums and pybind11 ones (e.g. ale_py.Action)
            return {"enum": _type_path(value), "value": self.encode(value.value, key)}
        path = _type_path(value)
        if isinstance(value, _STATIC_TYPES) or path in _STATIC_TYPE_PATHS:
            return {"static": path}
        if _is_plain_object(value):
            return self.plain_object(value, key)
        if path == "mujoco._structs.MjData":
            return {"mjdata": self.mjdata(value, key)}
        if path == "ale_py._ale_py.ALEInterface":
            return {"ale": self.ale(value, key)}
        raise EnvStateUnsupported(f"{key}: cannot capture an object of type {path}")

    def plain_object(self, value: Any, key: str) -> dict[str, Any]:
        index = self._object_ids.get(id(value))
        if index is not None:
            return {"ref": index}
        self._object_ids[id(value)] = index = len(self._object_ids)
        self._alive.append(value)
        attrs = {name: self.encode(item, f"{key}/{name}") for name, item in vars(value).items()}
        return {"object": _type_path(value), "id": index, "attrs": attrs}

    def mjdata(self, data: Any, key: str) -> dict[str, Any]:
        arrays = {name: self.array(value, f"{key}/{name}") for name, value in _mjdata_arrays(data).items()}
        return {"time": float(data.time), "arrays": arrays}

    def ale(self, ale: Any, key: str) -> dict[str, Any]:
        try:
            sticky = float(ale.getFloat("repeat_action_probability"))
        except Exception:
            sticky = math.nan
        if not sticky == 0.0:
            # With sticky actions the emulator repeats its previous action at random; ale-py's state
            # (cloneState) does not hold that previous action, so a restored env could act differently.
            raise EnvStateUnsupported(
                f"{key}: the ALE's sticky actions (repeat_action_probability={sticky}) keep the previous action "
                "outside the state ale-py can save; use repeat_action_probability=0 (e.g. *NoFrameskip-v4) "
                "for exact resume"
            )
        try:
            state = ale.cloneState(include_rng=True)
            raw = _ale_serialize(state)
        except Exception as error:
            raise EnvStateUnsupported(
                f"{key}: the ALE's state cannot be serialized ({type(error).__name__}: {error})"
            ) from None
        return {"state": self.array(np.frombuffer(raw, dtype=np.uint8), key + "/state")}


def _is_plain_object(value: Any) -> bool:
    """An instance of a plain Python class from a package whose objects may be rebuilt from their
    attributes (MiniGrid's grid, world objects and rooms): no __slots__, default __new__, not an env."""
    cls = type(value)
    return (
        cls.__module__.split(".")[0] in _PLAIN_OBJECT_PACKAGES
        and not isinstance(value, (gym.Env, gym.Space))
        and cls.__new__ is object.__new__
        and hasattr(value, "__dict__")
        and not any("__slots__" in vars(base) for base in cls.__mro__[:-1])
    )


def _plain_class(path: Any) -> type:
    """The class of a saved plain object, only from the allowed packages (never an arbitrary import)."""
    import importlib

    if not isinstance(path, str) or path.split(".")[0] not in _PLAIN_OBJECT_PACKAGES:
        raise EnvStateMismatch(f"objects of type {path!r} are not restored")
    module_name, _, qualname = path.rpartition(".")
    try:
        cls: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        raise EnvStateMismatch(f"class {path!r} does not exist here") from None
    if not isinstance(cls, type) or cls.__new__ is not object.__new__ or issubclass(cls, (gym.Env, gym.Space)):
        raise EnvStateMismatch(f"{path!r} is not a plain class")
    return cls


def _jsonable_rng_state(state: Any, key: str) -> Any:
    if isinstance(state, dict):
        return {k: _jsonable_rng_state(v, key) for k, v in state.items()}
    if isinstance(state, np.ndarray):
        return {"ndarray": state.tolist(), "dtype": state.dtype.str}
    if isinstance(state, (np.integer, np.floating)):
        return state.item()
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise EnvStateUnsupported(f"{key}: random generator state holds a {type(state).__name__}")


def _rng_state_from_json(state: Any) -> Any:
    if isinstance(state, dict):
        if set(state) == {"ndarray", "dtype"}:
            return np.asarray(state["ndarray"], dtype=np.dtype(state["dtype"]))
        return {k: _rng_state_from_json(v) for k, v in state.items()}
    return state


def _mjdata_arrays(data: Any) -> dict[str, np.ndarray]:
    arrays = {}
    for name in dir(data):
        if name.startswith("_"):
            continue
        try:
            value = getattr(data, name)
        except Exception:
            continue
        if isinstance(value, np.ndarray) and not value.dtype.hasobject and value.dtype.fields is None:
            arrays[name] = value
    return arrays


def _ale_serialize(state: Any) -> bytes:
    raw = state.serialize()
    return raw.encode("latin-1") if isinstance(raw, str) else bytes(raw)


def _ale_deserialize(raw: bytes) -> Any:
    import ale_py

    return ale_py.ALEState(raw)  # ale-py >= 0.9: ALEState(serialized: bytes)


def _attrs_of(obj: Any) -> dict[str, Any]:
    skip = _SKIP_ATTRS | _SKIP_CLASS_ATTRS.get(_type_path(obj), frozenset())
    try:
        attributes = vars(obj)
    except TypeError:
        raise EnvStateUnsupported(f"{_type_path(obj)} keeps its state outside __dict__") from None
    return {name: value for name, value in attributes.items() if name not in skip}


def _capture_object(obj: Any, encoder: _Encoder, key: str) -> dict[str, Any]:
    attrs = {}
    for name, value in _attrs_of(obj).items():
        try:
            attrs[name] = encoder.encode(value, f"{key}/{name}")
        except EnvStateUnsupported as error:
            raise EnvStateUnsupported(f"{type(obj).__name__}.{name}: {error}") from None
    return {"class": _type_path(obj), "attrs": attrs}


# ---------------------------------------------------------------------------------------------- capture
def capture_env_state(envs: Any, obs: Any = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, state)`` describing ``envs`` (and the last observation ``obs``, if given).

    Tensor keys start with ``envs/``; ``state`` is JSON-able. Reads attributes directly (never
    through properties such as ``np_random`` that would seed as a side effect), so capturing changes
    nothing. Raises :class:`EnvStateUnsupported` when some part cannot be saved.
    """
    wrappers, vector = _vector_chain(envs)
    encoder = _Encoder()
    vector_key = TENSOR_PREFIX + "vector"
    state: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "vector_class": _type_path(vector),
        "num_envs": vector.num_envs,
        "autoreset_mode": str(getattr(vector.autoreset_mode, "value", vector.autoreset_mode)),
        "autoreset_envs": [bool(x) for x in vector._autoreset_envs],
        "spaces": {
            name: encoder.encode(getattr(vector, name), f"{vector_key}/{name}")
            for name in ("action_space", "observation_space", "single_action_space", "single_observation_space")
        },
        "vector_wrappers": [_capture_object(w, encoder, f"{vector_key}/wrapper{i}") for i, w in enumerate(wrappers)],
        "envs": [
            [
                _capture_object(level, encoder, f"{TENSOR_PREFIX}{index}/{depth}")
                for depth, level in enumerate(_env_chain(env))
            ]
            for index, env in enumerate(vector.envs)
        ],
        "obs": None if obs is None else encoder.encode(obs, TENSOR_PREFIX + "obs"),
    }
    return encoder.tensors, state


# ---------------------------------------------------------------------------------------------- restore
_KEEP = object()  # decode result: the fresh object was updated in place (or is static); do not assign


class _Decoder:
    def __init__(self, tensors: dict[str, torch.Tensor], apply: bool):
        self.tensors = tensors
        self.apply = apply
        self.used: set[str] = set()
        self._rngs: dict[int, Any] = {}
        self._arrays: dict[int, np.ndarray] = {}  # saved index -> restored array
        self._targets: set[int] = set()  # ids of fresh arrays already restored in place
        self._objects: dict[int, Any] = {}  # saved index -> rebuilt plain object

    def array(self, entry: dict[str, Any], where: str) -> np.ndarray:
        try:
            dtype = np.dtype(entry["dtype"])
            shape = tuple(int(n) for n in entry["shape"])
        except (KeyError, TypeError, ValueError) as error:
            raise EnvStateMismatch(f"{where}: malformed array entry ({error})") from None
        if dtype.hasobject:
            raise EnvStateMismatch(f"{where}: object arrays are refused")
        if entry["array"] is None:
            return np.zeros(shape, dtype=dtype)
        key = entry["array"]
        if not isinstance(key, str) or key not in self.tensors:
            raise EnvStateMismatch(f"{where}: tensor {key!r} is missing")
        self.used.add(key)
        tensor = self.tensors[key]
        if entry.get("raw"):
            if tensor.dtype != torch.uint8 or tensor.numel() != dtype.itemsize * int(np.prod(shape)):
                raise EnvStateMismatch(f"{where}: tensor {key!r} does not hold {shape} {dtype}")
            return np.frombuffer(tensor.numpy().tobytes(), dtype=dtype).reshape(shape).copy()
        if _NATIVE_DTYPES.get(dtype) != tensor.dtype or tuple(tensor.shape) != shape:
            raise EnvStateMismatch(
                f"{where}: tensor {key!r} is {tensor.dtype} {list(tensor.shape)}, expected {dtype} {list(shape)}"
            )
        return tensor.numpy().copy()

    def rng(self, entry: dict[str, Any], current: Any, where: str) -> Any:
        """A generator with the saved state: ``current`` updated in place (returns _KEEP) when it is a
        generator of the same kind, else a new one; a generator saved twice is restored once."""
        kind, index = entry.get("rng"), entry.get("id")
        state = _rng_state_from_json(entry.get("state"))
        if kind not in ("Generator", "RandomState") or not isinstance(state, dict):
            raise EnvStateMismatch(f"{where}: malformed random generator state")
        name = state.get("bit_generator")
        bit_generator_cls = getattr(np.random, name, None) if isinstance(name, str) else None
        if not (isinstance(bit_generator_cls, type) and issubclass(bit_generator_cls, np.random.BitGenerator)):
            raise EnvStateMismatch(f"{where}: unknown bit generator {name!r}")
        if index in self._rngs:
            return self._rngs[index]
        wanted = np.random.Generator if kind == "Generator" else np.random.RandomState
        scratch = wanted(bit_generator_cls())
        try:
            _bit_generator(scratch).state = state
        except (TypeError, ValueError, KeyError) as error:
            raise EnvStateMismatch(f"{where}: invalid random generator state ({error})") from None
        if self.apply and type(current) is wanted and type(_bit_generator(current)) is bit_generator_cls:
            _bit_generator(current).state = state
            self._rngs[index] = current
            return _KEEP
        self._rngs[index] = scratch
        return scratch

    def restored_array(self, entry: dict[str, Any], current: Any, where: str) -> Any:
        """The saved array, written into ``current`` in place (returns _KEEP) when that is a writeable
        array of the same shape and dtype not already restored from another saved array."""
        if "alias" in entry:
            if entry["alias"] not in self._arrays:
                raise EnvStateMismatch(f"{where}: refers to an unknown array")
            return self._arrays[entry["alias"]]
        value = self.array(entry, where)
        in_place = (
            isinstance(current, np.ndarray)
            and current.shape == value.shape
            and current.dtype == value.dtype
            and current.flags.writeable
            and id(current) not in self._targets
        )
        if in_place:
            self._targets.add(id(current))
            if self.apply:
                current[...] = value
            value = current
        if "id" in entry:
            self._arrays[entry["id"]] = value
        return _KEEP if in_place else value

    def decode(self, entry: Any, current: Any, where: str) -> Any:
        """The saved value (or _KEEP when ``current`` was restored in place)."""
        if not isinstance(entry, dict) or len(entry) == 0:
            raise EnvStateMismatch(f"{where}: malformed entry")
        if "py" in entry:
            return entry["py"]
        if "array" in entry or "alias" in entry:
            return self.restored_array(entry, current, where)
        if "np" in entry:
            if entry["np"] == "bool":
                return np.bool_(entry["v"])
            dtype = np.dtype(entry["np"])
            if dtype.kind not in "iuf":
                raise EnvStateMismatch(f"{where}: unexpected scalar dtype {dtype}")
            return dtype.type(entry["v"])
        if "np0" in entry:
            return self.array(entry["np0"], where)[()]
        if "rng" in entry and "space" not in entry:
            return self.rng(entry, current, where)
        if "space" in entry:
            if not isinstance(current, gym.Space) or _type_path(current) != entry["space"]:
                raise EnvStateMismatch(f"{where}: expected a {entry['space']}, found {_type_path(current)}")
            if entry["rng"] is not None:
                rng = self.rng(entry["rng"], current.__dict__.get("_np_random"), where + "/rng")
                if rng is not _KEEP and self.apply:
                    current._np_random = rng
            return _KEEP
        if "deque" in entry:
            items = [self._value(item, None, f"{where}/{i}") for i, item in enumerate(entry["deque"])]
            return collections.deque(items, maxlen=entry.get("maxlen"))
        if "list" in entry or "tuple" in entry:
            items_in = entry.get("list", entry.get("tuple"))
            fresh = (
                current
                if isinstance(current, (list, tuple)) and len(current) == len(items_in)
                else [None] * len(items_in)
            )
            items = [self._value(item, fresh[i], f"{where}/{i}") for i, item in enumerate(items_in)]
            return items if "list" in entry else tuple(items)
        if "dict" in entry:
            fresh = current if isinstance(current, dict) else {}
            return {k: self._value(item, fresh.get(k), f"{where}/{k}") for k, item in entry["dict"].items()}
        if "items" in entry:
            return {self._value(k, None, where): self._value(v, None, where) for k, v in entry["items"]}
        if "enum" in entry:
            if _type_path(current) != entry["enum"]:
                raise EnvStateMismatch(f"{where}: expected a {entry['enum']}, found {_type_path(current)}")
            return type(current)(self.decode(entry["value"], None, where))
        if "object" in entry:
            cls = _plain_class(entry["object"])
            rebuilt = cls.__new__(cls)
            self._objects[entry["id"]] = rebuilt  # before its attributes: they may refer back to it
            attrs = entry["attrs"]
            if not isinstance(attrs, dict):
                raise EnvStateMismatch(f"{where}: malformed object entry")
            rebuilt.__dict__.update({name: self._value(item, None, f"{where}.{name}") for name, item in attrs.items()})
            return rebuilt
        if "ref" in entry:
            if entry["ref"] not in self._objects:
                raise EnvStateMismatch(f"{where}: refers to an unknown object")
            return self._objects[entry["ref"]]
        if "static" in entry:
            return _KEEP
        if "mjdata" in entry:
            self.mjdata(entry["mjdata"], current, where)
            return _KEEP
        if "ale" in entry:
            self.ale(entry["ale"], current, where)
            return _KEEP
        raise EnvStateMismatch(f"{where}: unknown entry kind {sorted(entry)}")

    def _value(self, entry: Any, current: Any, where: str) -> Any:
        """Like decode, but always a value (for items inside containers, which are rebuilt)."""
        value = self.decode(entry, current, where)
        return current if value is _KEEP else value

    def mjdata(self, saved: dict[str, Any], data: Any, where: str) -> None:
        if _type_path(data) != "mujoco._structs.MjData":
            raise EnvStateMismatch(f"{where}: expected MuJoCo MjData, found {_type_path(data)}")
        current = _mjdata_arrays(data)
        values = {}
        for name, entry in saved["arrays"].items():
            value = self.array(entry, f"{where}/{name}")
            target = current.get(name)
            if target is None:
                raise EnvStateMismatch(f"{where}: MjData has no array {name!r} here (another MuJoCo version?)")
            if target.shape == value.shape and target.dtype == value.dtype:
                values[name] = value
            # else: a per-step buffer sized by this step's contacts/constraints, recomputed by mj_step
        if self.apply:
            for name, value in values.items():
                current[name][...] = value
            data.time = float(saved["time"])

    def ale(self, saved: dict[str, Any], ale: Any, where: str) -> None:
        if _type_path(ale) != "ale_py._ale_py.ALEInterface":
            raise EnvStateMismatch(f"{where}: expected an ALEInterface, found {_type_path(ale)}")
        raw = self.array(saved["state"], where).tobytes()
        try:
            state = _ale_deserialize(raw)
        except Exception as error:
            raise EnvStateMismatch(f"{where}: the ALE state cannot be rebuilt ({error})") from None
        if self.apply:
            ale.restoreState(state)


def _bit_generator(rng: Any) -> np.random.BitGenerator:
    return rng.bit_generator if isinstance(rng, np.random.Generator) else rng._bit_generator


def _restore_object(obj: Any, saved: Any, decoder: _Decoder, where: str) -> None:
    if not isinstance(saved, dict) or not isinstance(saved.get("attrs"), dict):
        raise EnvStateMismatch(f"{where}: malformed entry")
    if saved.get("class") != _type_path(obj):
        raise EnvStateMismatch(f"{where}: saved a {saved.get('class')}, found a {_type_path(obj)}")
    fresh = vars(obj)
    for name, entry in saved["attrs"].items():
        if not isinstance(name, str) or name in _SKIP_ATTRS:
            raise EnvStateMismatch(f"{where}: attribute {name!r} cannot be restored")
        value = decoder.decode(entry, fresh.get(name), f"{where}.{name}")
        if value is not _KEEP and decoder.apply:
            fresh[name] = value  # as captured: the instance dict, never a property's setter


def prepare_restore(envs: Any, tensors: dict[str, torch.Tensor], state: Any) -> Callable[[], Any]:
    """Check that ``state`` fits ``envs`` without changing anything; return a function that restores
    it and returns the saved last observation (or None). Raises :class:`EnvStateMismatch`."""
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise EnvStateMismatch("not an environment state of this library's format")
    try:
        wrappers, vector = _vector_chain(envs)
    except EnvStateUnsupported as error:
        raise EnvStateMismatch(str(error)) from None
    if state.get("vector_class") != _type_path(vector):
        raise EnvStateMismatch(f"saved from a {state.get('vector_class')}, these envs are a {_type_path(vector)}")
    if state.get("num_envs") != vector.num_envs:
        raise EnvStateMismatch(f"saved with {state.get('num_envs')} envs, these have {vector.num_envs}")
    mode = str(getattr(vector.autoreset_mode, "value", vector.autoreset_mode))
    if state.get("autoreset_mode") != mode:
        raise EnvStateMismatch(f"saved with autoreset mode {state.get('autoreset_mode')!r}, these envs use {mode!r}")
    flags = state.get("autoreset_envs")
    if not isinstance(flags, list) or len(flags) != vector.num_envs or not all(isinstance(x, bool) for x in flags):
        raise EnvStateMismatch("autoreset_envs must hold one bool per env")
    saved_wrappers, saved_envs = state.get("vector_wrappers"), state.get("envs")
    if not isinstance(saved_wrappers, list) or len(saved_wrappers) != len(wrappers):
        raise EnvStateMismatch("the vector wrappers differ")
    if not isinstance(saved_envs, list) or len(saved_envs) != vector.num_envs:
        raise EnvStateMismatch("the number of saved envs differs")
    chains = [_env_chain(env) for env in vector.envs]
    for index, (chain, saved_chain) in enumerate(zip(chains, saved_envs)):
        if not isinstance(saved_chain, list) or [
            s.get("class") if isinstance(s, dict) else None for s in saved_chain
        ] != [_type_path(level) for level in chain]:
            raise EnvStateMismatch(
                f"env {index}: wrapper chain differs "
                f"(saved {[s.get('class') for s in saved_chain if isinstance(s, dict)]}, "
                f"here {[_type_path(level) for level in chain]})"
            )
    spaces = state.get("spaces")
    if not isinstance(spaces, dict):
        raise EnvStateMismatch("malformed spaces entry")

    def run(apply: bool) -> Any:
        decoder = _Decoder(tensors, apply)
        for name, entry in spaces.items():
            if name not in ("action_space", "observation_space", "single_action_space", "single_observation_space"):
                raise EnvStateMismatch(f"unknown vector attribute {name!r}")
            decoder.decode(entry, getattr(vector, name), f"vector.{name}")
        for index, (wrapper, saved) in enumerate(zip(wrappers, saved_wrappers)):
            _restore_object(wrapper, saved, decoder, f"vector wrapper {index}")
        for index, (chain, saved_chain) in enumerate(zip(chains, saved_envs)):
            for level, saved in zip(chain, saved_chain):
                _restore_object(level, saved, decoder, f"env {index} {type(level).__name__}")
        obs = None if state.get("obs") is None else decoder._value(state["obs"], None, "obs")
        if apply:
            vector._autoreset_envs = np.asarray(flags, dtype=np.bool_)
        return obs, decoder.used

    try:
        _, used = run(apply=False)
    except EnvStateMismatch:
        raise
    except (TypeError, KeyError, AttributeError, ValueError, IndexError) as error:  # malformed JSON
        raise EnvStateMismatch(f"malformed environment state ({type(error).__name__}: {error})") from None
    unexpected = sorted(key for key in tensors if key.startswith(TENSOR_PREFIX) and key not in used)
    if unexpected:
        raise EnvStateMismatch(f"tensor {unexpected[0]!r} belongs to no saved attribute")
    return lambda: run(apply=True)[0]


def restore_env_state(envs: Any, tensors: dict[str, torch.Tensor], state: Any) -> Any:
    """Write a state made by :func:`capture_env_state` into freshly made, identical ``envs``;
    returns the saved last observation (None if none was saved). Raises :class:`EnvStateMismatch`
    (before changing anything) if the state does not fit."""
    return prepare_restore(envs, tensors, state)()


__all__ = ["EnvStateMismatch", "EnvStateUnsupported", "capture_env_state", "prepare_restore", "restore_env_state"]
