"""An agent's state outside its parameters and buffers, and the check that none of it is dropped.

``state_attributes``
    An agent class that declares ``state_attributes = ("counts",)`` gets a ``get_extra_state`` that
    returns ``{"counts": self.counts}`` and a ``set_extra_state`` that sets it back, installed when the
    class is created (:func:`install_state_attributes`). Through torch's extra-state mechanism the
    attributes then travel in ``agent.state_dict()``: into checkpoints, back with ``load_state``, and
    back with a failed update's rollback (which deep-copies extra state). Their values must be what a
    checkpoint holds exactly (:func:`unsaveable`): None, bool, int, float, str, lists, tuples (restored
    as lists), dicts with string keys, and tensors (restored on the device of the value they replace,
    else on the learner's), nested.

Dropped state
    After the learner binds an agent it records a fingerprint of each plain attribute (an entry of
    the agent's ``__dict__`` other than ``nn.Module``'s own and the Agent base's; submodules,
    parameters and buffers live elsewhere and are saved by ``state_dict``). When the state is saved,
    :func:`check_agent_state` refuses, with :class:`UnsavedStateError`, a plain attribute that is new,
    changed or deleted since and is not saved (in ``state_attributes`` or in the dict returned by the
    agent's own ``get_extra_state``) nor declared ``transient_attributes``. Fingerprints are taken at
    bind and at save only, never per step.
"""

from __future__ import annotations

import collections
import hashlib
import inspect
import weakref
from collections.abc import Iterable
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rl_agents.core.state import StateError

SAVEABLE = "checkpoints hold JSON values (string keys) and tensors"
REMEDY = (
    "list it in state_attributes to save it in checkpoints, "
    "or in transient_attributes if a resumed run does not need it"
)
# Attributes the Agent base class sets and manages: never state attributes, never checked.
BASE_ATTRIBUTES = frozenset({"name", "lr", "loss_weight", "generator", "_given_arguments"})
TENSOR_MARKER = "$tensor"  # reserved by the checkpoint format (rl_agents.checkpointing.format)
MAX_NESTING = 32  # of a state attribute's value; checkpoints refuse state nested past 64 levels in all
OBJECT_DEPTH = 4  # plain objects are fingerprinted through their attributes this many levels deep
CONTAINER_DEPTH = 100  # deeper containers are fingerprinted by identity


class UnsavedStateError(ValueError):
    """Saving would drop part of an agent's state, or cannot hold it; the message names the agent and
    the attribute and says what to do."""


@cache
def module_internals() -> frozenset[str]:
    """The ``__dict__`` entries every ``nn.Module`` has (hooks, the ``_parameters`` dicts, ``training``)."""
    return frozenset(nn.Module().__dict__)


# ---------------------------------------------------------------------------------------------- declaration
def declared(cls: type, kind: str = "state_attributes") -> Any:
    """An agent class's ``state_attributes`` (or ``transient_attributes``)."""
    return getattr(cls, kind, ())


def _get_extra_state(self: nn.Module) -> dict[str, Any]:
    """The agent's ``state_attributes`` by name (installed for classes that declare them)."""
    return {name: state_value(self, name) for name in declared(type(self))}


def _set_extra_state(self: nn.Module, state: Any) -> None:
    """Set the agent's ``state_attributes`` from ``state`` (copies: ``state`` stays the caller's)."""
    names = declared(type(self))
    problem = saved_names_problem(names, state)
    if problem:
        raise StateError(f"agent {_agent_name(self)!r}: {problem}")
    generator = self.__dict__.get("generator")
    device = generator.device if isinstance(generator, torch.Generator) else None
    for name in names:
        setattr(self, name, _restored(state[name], getattr(self, name, None), device))


def _restored(value: Any, current: Any, device: torch.device | None) -> Any:
    """A copy of ``value`` whose tensors sit where the ones they replace do (else on ``device``)."""
    if isinstance(value, torch.Tensor):
        where = current.device if isinstance(current, torch.Tensor) else device or value.device
        return value.detach().to(where, copy=True)
    if isinstance(value, dict):
        currents = current if isinstance(current, dict) else {}
        return {key: _restored(item, currents.get(key), device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        currents = current if isinstance(current, (list, tuple)) else ()
        items = [_restored(item, currents[i] if i < len(currents) else None, device) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value  # None, bool, int, float, str: immutable


def _agent_name(agent: nn.Module) -> str:
    return str(agent.__dict__.get("name") or type(agent).__name__)


def _names(cls: type, attribute: str, value: Any, kinds: tuple[type, ...]) -> list[str]:
    if not isinstance(value, kinds):
        example = '("counts",)' if tuple in kinds else 'frozenset({"cache"})'
        raise TypeError(f"{cls.__name__}.{attribute} must hold attribute names, e.g. {example}; got {value!r}")
    names = list(value)
    reserved = module_internals() | BASE_ATTRIBUTES
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__name__}.{attribute}: {name!r} is not an attribute name")
        if name in reserved:
            raise TypeError(f"{cls.__name__}.{attribute}: {name!r} is managed by the Agent base class or nn.Module")
    return names


def install_state_attributes(cls: type[Any]) -> None:
    """Check a new agent class's ``state_attributes`` and ``transient_attributes`` and install the
    extra-state methods that save the former; TypeError for a class that also writes its own."""
    names = _names(cls, "state_attributes", declared(cls), (tuple, list))
    if len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}.state_attributes names an attribute twice: {names}")
    kinds = (frozenset, set, tuple, list)
    transient = frozenset(_names(cls, "transient_attributes", declared(cls, "transient_attributes"), kinds))
    both = sorted(transient.intersection(names))
    if both:
        raise TypeError(f"{cls.__name__}: {both[0]!r} is in both state_attributes and transient_attributes")
    cls.state_attributes, cls.transient_attributes = tuple(names), transient
    methods = {"get_extra_state": _get_extra_state, "set_extra_state": _set_extra_state}
    if not names:  # a subclass that drops its parent's state attributes drops their methods too
        for method, installed in methods.items():
            if getattr(cls, method) is installed:
                setattr(cls, method, getattr(nn.Module, method))
        return
    for method, installed in methods.items():
        found = getattr(cls, method)
        if found is not installed and found is not getattr(nn.Module, method):
            writer = next(klass for klass in cls.__mro__ if method in vars(klass))
            raise TypeError(
                f"{cls.__name__} declares state_attributes {tuple(names)} and "
                + ("writes" if writer is cls else f"inherits from {writer.__name__}")
                + f" its own {method}: state_attributes are saved through get_extra_state/set_extra_state, "
                "so use one or the other (save the attributes in your own get_extra_state, or drop it)"
            )
    for method, installed in methods.items():
        setattr(cls, method, installed)


def state_value(agent: nn.Module, name: str) -> Any:
    try:
        return getattr(agent, name)
    except AttributeError:
        raise AttributeError(
            f"agent {_agent_name(agent)!r}: state attribute {name!r} is not set; set it in __init__ or bind"
        ) from None


def saved_names_problem(names: tuple[str, ...], state: Any) -> str | None:
    """What is wrong with a saved extra state for these ``state_attributes``, or None."""
    if not isinstance(state, dict):
        return f"saved state attributes must be an object, got {type(state).__name__}"
    if set(state) != set(names):
        return (
            f"the checkpoint holds state attributes {sorted(state)}, but the agent declares {sorted(names)} "
            "(was it saved by another version of the agent's class?)"
        )
    return None


def check_saved_attributes(agent: nn.Module, saved: Any, who: str) -> None:
    """StateError unless an agent's saved state holds exactly its ``state_attributes`` (checked before
    anything is loaded; :func:`rl_agents.core.state.prepare_module_load` checks the rest)."""
    names = declared(type(agent))
    if names and isinstance(saved, dict) and "_extra_state" in saved:
        problem = saved_names_problem(names, saved["_extra_state"])
        if problem:
            raise StateError(f"{who}: {problem}")


# ---------------------------------------------------------------------------------------------- saveable values
def _at(path: str) -> str:
    return f" in {path}" if "[" in path else ""


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    """``a set``, ``an object``, ``a numpy.float64``: the value's type with its article."""
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def unsaveable(value: Any, path: str) -> str | None:
    """Why ``value`` (named ``path``) would not come back from a checkpoint as it is, or None."""
    tensor_names: set[str] = set()

    def walk(node: Any, where: str, name: str, depth: int) -> str | None:
        subject = "it" if where == path else where
        if depth > MAX_NESTING:
            return f"{subject} is nested more than {MAX_NESTING} levels deep"
        if node is None or type(node) in (bool, int, float, str):
            return None
        if isinstance(node, torch.Tensor):
            if type(node) is not torch.Tensor:
                return f"{subject} is {_kind(node)}, which a checkpoint would restore as a torch.Tensor"
            if node.layout != torch.strided or node.is_meta:
                return f"{subject} is a {node.layout} tensor{' on the meta device' * node.is_meta}; save a strided one"
            if name in tensor_names:
                return f"two of its tensors would be saved under one name {name!r} (a dict key holds '/')"
            tensor_names.add(name)
            return None
        if isinstance(node, dict):
            if type(node) is not dict:
                return f"{subject} is {_kind(node)}, which a checkpoint would restore as a plain dict"
            for key in node:
                if type(key) is not str:
                    return f"dict key {_short(key)}{_at(where)} is {_kind(key)}"
                if key == TENSOR_MARKER:
                    return f"dict key {key!r}{_at(where)} is reserved by the checkpoint format"
            items: Iterable[tuple[Any, Any]] = node.items()
        elif isinstance(node, (list, tuple)):
            if type(node) not in (list, tuple):
                return f"{subject} is {_kind(node)}, which a checkpoint would restore as a list"
            items = enumerate(node)
        else:
            base = next((kind for kind in (bool, int, float, str) if isinstance(node, kind)), None)
            restored = f", which a checkpoint would restore as a {base.__name__}" if base else ""
            return f"{subject} is {_kind(node)}{restored}"
        for key, item in items:
            problem = walk(item, f"{where}[{key!r}]", f"{name}/{key}", depth + 1)
            if problem:
                return problem
        return None

    return walk(value, path, path, 1)


def check_saveable(agent: nn.Module, name: str, value: Any) -> None:
    problem = unsaveable(value, name)
    if problem:
        raise UnsavedStateError(
            f"agent {_agent_name(agent)!r}: state attribute {name!r} cannot be saved: {problem}; {SAVEABLE}"
        )


# ---------------------------------------------------------------------------------------------- fingerprints
def _identity(value: Any) -> bytes:
    return f"id:{type(value).__qualname__}:{id(value)}".encode()


def _leaf(value: Any) -> bytes:
    return f"{type(value).__qualname__}:{value!r}".encode("utf-8", "surrogatepass")


def _combine(tag: str, parts: Iterable[bytes]) -> bytes:
    digest = hashlib.blake2b(tag.encode(), digest_size=16)
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


def _by_identity(value: Any) -> bool:
    # A Space's RNG advances when it is sampled; the learner saves the generator; modules are saved
    # by state_dict; code is not state.
    return isinstance(value, (torch.Generator, gym.Space, nn.Module, type)) or inspect.isroutine(value)


def fingerprint(value: Any, owned: frozenset[int] = frozenset()) -> bytes:
    """A digest of ``value``'s contents, the same while they stay the same: primitives by type and
    repr, tensors and arrays by dtype, shape and bytes, containers and (a few levels of) plain
    objects recursively; spaces, generators, modules, code and the tensors whose ids are in
    ``owned`` (the agent's own parameters and buffers) by identity. Never raises: what cannot be
    walked is taken by identity."""
    return _fingerprint(value, owned, 0, 0, set())


def _fingerprint(value: Any, owned: frozenset[int], objects: int, depth: int, active: set[int]) -> bytes:
    try:
        if value is None or isinstance(value, (bool, int, float, complex, str, torch.dtype, torch.device)):
            return _leaf(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _combine("bytes", [bytes(value)])
        if isinstance(value, torch.Tensor):
            if id(value) in owned:
                return _identity(value)
            data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            return _combine("tensor", [_leaf(value.dtype), _leaf(tuple(value.shape)), data])
        if isinstance(value, np.ndarray) and value.dtype != object:
            data = np.ascontiguousarray(value).tobytes()
            return _combine("array", [value.dtype.str.encode(), _leaf(value.shape), data])
        if isinstance(value, np.generic):
            return _leaf(value)
        if _by_identity(value) or depth >= CONTAINER_DEPTH or id(value) in active:
            return _identity(value)
        active.add(id(value))
        try:
            return _walk(value, owned, objects, depth + 1, active)
        finally:
            active.discard(id(value))
    except Exception:
        return _identity(value)


def _walk(value: Any, owned: frozenset[int], objects: int, depth: int, active: set[int]) -> bytes:
    def of(item: Any, more: int = 0) -> bytes:
        return _fingerprint(item, owned, objects + more, depth, active)

    kind = type(value).__qualname__
    if isinstance(value, np.ndarray):  # of objects
        return _combine(f"array:{value.shape}", [of(item) for item in value.reshape(-1).tolist()])
    if isinstance(value, dict):
        items = sorted((of(key), of(item)) for key, item in value.items())
        return _combine(f"dict:{kind}", [part for pair in items for part in pair])
    if isinstance(value, (set, frozenset)):
        return _combine(f"set:{kind}", sorted(of(item) for item in value))
    if isinstance(value, (list, tuple, collections.deque)):
        return _combine(f"seq:{kind}", [of(item) for item in value])
    if objects >= OBJECT_DEPTH:
        return _identity(value)
    fields = dict(vars(value)) if hasattr(value, "__dict__") else {}
    for klass in type(value).__mro__:
        slots = vars(klass).get("__slots__", ())
        for slot in [slots] if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                fields[slot] = getattr(value, slot)
    if not fields and not hasattr(value, "__dict__"):
        return _identity(value)
    return _combine(f"object:{kind}", [part for key in sorted(fields) for part in (key.encode(), of(fields[key], 1))])


# ---------------------------------------------------------------------------------------------- the check
_BASELINES: weakref.WeakKeyDictionary[nn.Module, dict[str, bytes]] = weakref.WeakKeyDictionary()


def plain_attributes(agent: nn.Module) -> dict[str, Any]:
    """The agent's own ``__dict__`` entries that may hold state: not nn.Module's internals, not the
    Agent base's, not methods patched onto the instance (code, like the class's methods)."""
    skipped = module_internals() | BASE_ATTRIBUTES
    cls = type(agent)
    return {
        name: value
        for name, value in agent.__dict__.items()
        if name not in skipped and not (callable(value) and inspect.isroutine(inspect.getattr_static(cls, name, None)))
    }


def _owned_tensors(agent: nn.Module) -> frozenset[int]:
    return frozenset(id(tensor) for tensors in (agent.parameters(), agent.buffers()) for tensor in tensors)


def record_baseline(agent: nn.Module) -> None:
    """Fingerprint the agent's plain attributes as its bind left them (the learner calls it), after
    checking its ``state_attributes``: set, saveable, and none a parameter, buffer or submodule."""
    names: tuple[str, ...] = declared(type(agent))
    for name in names:
        registries = {"parameter": agent._parameters, "buffer": agent._buffers, "submodule": agent._modules}
        for kind, registry in registries.items():
            if name in registry:
                raise TypeError(
                    f"agent {_agent_name(agent)!r}: state attribute {name!r} is a {kind}, which state_dict "
                    "saves already: remove it from state_attributes"
                )
        check_saveable(agent, name, state_value(agent, name))
    skipped = set(names) | declared(type(agent), "transient_attributes")
    owned = _owned_tensors(agent)
    _BASELINES[agent] = {
        name: fingerprint(value, owned) for name, value in plain_attributes(agent).items() if name not in skipped
    }


def _own_extra_state_keys(agent: nn.Module) -> set[str]:
    """The keys of the dict the agent's own ``get_extra_state`` returns: attributes it saves itself."""
    method = type(agent).get_extra_state
    if method is nn.Module.get_extra_state or method is _get_extra_state:
        return set()
    state = agent.get_extra_state()
    return {key for key in state if isinstance(key, str)} if isinstance(state, dict) else set()


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    shown = f", now {_short(value)}" if value is None or type(value) in (bool, int, float) else ""
    return f"{_kind(value)}{shown}"


def check_agent_state(agent: nn.Module) -> None:
    """Before the agent's state is saved: its ``state_attributes`` must be saveable, and every other
    plain attribute that is new, changed or deleted since the learner bound the agent must be saved by
    its own ``get_extra_state`` or declared ``transient_attributes``; else UnsavedStateError."""
    cls = type(agent)
    names: tuple[str, ...] = declared(cls)
    for name in names:
        check_saveable(agent, name, state_value(agent, name))
    baseline = _BASELINES.get(agent)
    if baseline is None:  # not bound by a learner: nothing to compare with
        return
    covered = set(names) | declared(cls, "transient_attributes") | _own_extra_state_keys(agent)
    current = {name: value for name, value in plain_attributes(agent).items() if name not in covered}
    owned = _owned_tensors(agent)
    unsaved: list[tuple[str, str]] = []
    for name in sorted((set(baseline) - covered) | set(current)):
        if name not in current:
            unsaved.append((name, "was deleted after the agent was bound"))
        elif name not in baseline:
            unsaved.append((name, f"was set after the agent was bound ({_describe(current[name])})"))
        elif fingerprint(current[name], owned) != baseline[name]:
            unsaved.append((name, f"changed since the agent was bound ({_describe(current[name])})"))
    if unsaved:
        name, what = unsaved[0]
        others = f" (also unsaved: {', '.join(repr(other) for other, _ in unsaved[1:])})" if unsaved[1:] else ""
        raise UnsavedStateError(
            f"agent {_agent_name(agent)!r}: attribute {name!r} {what} but is not saved: {REMEDY}{others}"
        )
