"""Where agent classes come from: the shipped ones, installed plugins, and import paths.

An agent is named in a config or on the command line in one of three ways:

* a shipped agent's name: ``ppo``, ``rnd`` (:data:`rl_agents.agents.AGENTS`);
* a name registered by an installed package under the ``rl_agents.agents`` entry-point group, e.g.
  in its ``pyproject.toml``: ``[project.entry-points."rl_agents.agents"] count = "my_pkg.bonus:CountBonus"``;
* an import path ``package.module:Class``.

Importing a module runs its code, so an import path is only imported when it comes from the user: a
command line, a config file they train with, a Python call. Names stored in a file that is being
loaded (a checkpoint, a run's ``config.yaml``) are data: such a file may name shipped and registered
agents freely (their code is installed, so already trusted), but an import path only when the user
says they trust the file (:class:`AgentImports` ``trust=True``; ``--trust-code`` on the command line)
or hands the class over themselves (``classes=[CountBonus]``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable
from dataclasses import dataclass, field

from rl_agents.agents import AGENTS
from rl_agents.config.values import did_you_mean
from rl_agents.core.agent import Agent

ENTRY_POINT_GROUP = "rl_agents.agents"


class AgentLookupError(ValueError):
    """An agent name or import path that cannot be resolved (or may not be imported); says why."""


def import_path(cls: type) -> str:
    """``package.module:Class``: how a class is named in configs and checkpoints."""
    return f"{cls.__module__}:{cls.__qualname__}"


def is_import_path(reference: str) -> bool:
    return ":" in reference


@dataclass(frozen=True)
class AgentImports:
    """Which agent classes may be loaded. ``trust``: import any import path (the names come from the
    user, or from a file the user trusts); ``classes``: classes the caller hands over, matched by their
    import path, so that a file naming them needs no import (e.g. a class defined in a notebook)."""

    trust: bool = False
    classes: tuple[type[Agent], ...] = field(default=())

    @classmethod
    def of(cls, trust: bool = False, classes: Iterable[type[Agent]] = ()) -> AgentImports:
        return cls(trust=trust, classes=tuple(classes))


TRUSTED = AgentImports(trust=True)  # names the user gave (command line, the config they train with, Python)


@dataclass(frozen=True)
class RegisteredAgent:
    """An agent name with where it comes from (for ``rl-agents list`` and messages)."""

    name: str
    origin: str  # "built-in" or "entry point of <distribution> <version>"
    target: str  # the class's import path


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed packages' agents by name (the first of a name wins, as importlib orders them)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point)
    return found


def registered_agents() -> list[RegisteredAgent]:
    """Every agent nameable without an import path: shipped ones, then installed plugins by name."""
    listed = [RegisteredAgent(name, "built-in", import_path(cls)) for name, cls in AGENTS.items()]
    for name, point in sorted(entry_points().items()):
        origin = _distribution(point)
        if name in AGENTS:
            origin += f" (ignored: the built-in {name!r} has this name)"
        listed.append(RegisteredAgent(name, origin, point.value))
    return listed


def registered_names() -> list[str]:
    return list(AGENTS) + [name for name in entry_points() if name not in AGENTS]


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = point.dist
    return f"entry point of {dist.name} {dist.version}" if dist is not None else "entry point"


def resolve_agent_class(reference: str, imports: AgentImports = TRUSTED, where: str = "agents") -> type[Agent]:
    """The class ``reference`` names (see the module docstring); AgentLookupError says why not."""
    if not isinstance(reference, str) or not reference.strip():
        raise AgentLookupError(f"{where}: expected an agent name or package.module:Class, got {reference!r}")
    reference = reference.strip()
    if reference in AGENTS:
        return AGENTS[reference]
    if is_import_path(reference):
        return _class_from_import_path(reference, imports, where)
    point = entry_points().get(reference)
    if point is None:
        known = ", ".join(registered_names())
        raise AgentLookupError(
            f"{where}: unknown agent {reference!r}{did_you_mean(reference, registered_names())} (known: {known}; "
            "or name your own class as package.module:Class)"
        )
    try:
        loaded = point.load()
    except Exception as error:  # a broken plugin: say which and why, one line
        raise AgentLookupError(
            f"{where}: agent {reference!r} ({_distribution(point)}, {point.value}) cannot be loaded: "
            f"{type(error).__name__}: {error}"
        ) from error
    return _require_agent_class(loaded, f"{reference!r} ({_distribution(point)}, {point.value})", where)


def env_import_refusal(env_id: str, imports: AgentImports) -> str | None:
    """Why an env id ``module:EnvId`` from a file may not be made (making it imports ``module``), or None."""
    if not is_import_path(env_id) or imports.trust:
        return None
    return (
        f"environment {env_id!r} imports and runs module {env_id.partition(':')[0]!r}: pass --trust-code "
        "(trust_code=True in Python) if you trust this file"
    )


def _class_from_import_path(reference: str, imports: AgentImports, where: str) -> type[Agent]:
    module_name, _, qualname = reference.partition(":")
    for cls in imports.classes:
        if import_path(cls) == reference:
            return cls
    if not imports.trust and reference not in _installed_targets():
        raise AgentLookupError(
            f"{where}: agent class {reference!r} is neither built in nor a registered entry point; loading it "
            "imports and runs module "
            f"{module_name!r}: pass --trust-code (trust_code=True in Python) if you trust this file, "
            f"or register the class under the {ENTRY_POINT_GROUP!r} entry-point group"
        )
    if not module_name or not qualname:
        raise AgentLookupError(f"{where}: {reference!r} is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # ModuleNotFoundError, or the module itself failing: name it
        raise AgentLookupError(
            f"{where}: cannot import module {module_name!r} for {reference!r} ({type(error).__name__}: {error})"
        ) from error
    target: object = module
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise AgentLookupError(f"{where}: module {module_name!r} has no {qualname!r} (for {reference!r})")
        target = getattr(target, part)
    return _require_agent_class(target, repr(reference), where)


def _installed_targets() -> set[str]:
    """Import paths whose code is installed: shipped agents and registered entry points."""
    return {import_path(cls) for cls in AGENTS.values()} | {point.value for point in entry_points().values()}


def _require_agent_class(target: object, what: str, where: str) -> type[Agent]:
    if not (isinstance(target, type) and issubclass(target, Agent)):
        kind = target.__name__ if isinstance(target, type) else type(target).__name__
        raise AgentLookupError(f"{where}: {what} is {kind}, not a subclass of rl_agents.Agent")
    return target


__all__ = [
    "ENTRY_POINT_GROUP",
    "TRUSTED",
    "AgentImports",
    "AgentLookupError",
    "RegisteredAgent",
    "env_import_refusal",
    "import_path",
    "is_import_path",
    "registered_agents",
    "registered_names",
    "resolve_agent_class",
]
