"""The agents of a run config: their names, their classes and their options.

``agents: ppo+rnd`` names the agents; each may have a section of constructor options named after it.
An agent is a shipped or registered name (``ppo``), an import path (``my_pkg.bonus:CountBonus``,
named by the class's ``default_name``), or any name whose section gives its class::

    agents: ppo+bonus
    bonus:
      class: my_pkg.bonus:CountBonus   # or a shipped / registered name
      beta: 0.01

Options are checked against the class's constructor: its parameters and their type hints.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass
from typing import Any

from rl_agents.config.compositions import expand_agent_names
from rl_agents.config.registry import TRUSTED, AgentImports, AgentLookupError, is_import_path, resolve_agent_class
from rl_agents.config.values import ConfigError, check_type, did_you_mean, show
from rl_agents.core.agent import Agent

CLASS_KEY = "class"  # in an agent's section: the class of an agent named otherwise
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class AgentEntry:
    """One agent of a config: its name (section, metrics prefix), how its class is named, the class."""

    name: str
    reference: str
    cls: type[Agent]


def agent_entries(
    raw: dict[str, Any], source: str, reserved: list[str], imports: AgentImports = TRUSTED
) -> list[AgentEntry]:
    """The agents ``raw`` names, with their classes resolved (imports as ``imports`` allows)."""
    spec = raw.get("agents", "ppo")
    if not isinstance(spec, str):
        raise ConfigError(f"{source}: agents: expected names joined by '+', e.g. 'ppo+rnd', got {show(spec)}")
    items = [item.strip() for item in expand_agent_names(spec).split("+") if item.strip()]
    if not items:
        raise ConfigError(f"{source}: agents: expected names joined by '+', e.g. 'ppo+rnd'")
    entries: list[AgentEntry] = []
    for item in items:
        entry = _entry(item, raw, source, imports)
        if not _NAME.fullmatch(entry.name) or entry.name in reserved:
            raise ConfigError(
                f"{source}: agent name {entry.name!r} cannot be used: a name is letters, digits, '_' and '-', "
                f"and none of {', '.join(reserved)}"
            )
        if any(other.name == entry.name for other in entries):
            raise ConfigError(
                f"{source}: two agents are named {entry.name!r}; name one otherwise with a section giving its "
                f"class, e.g. agents: ...+{entry.name}2 and {entry.name}2: {{class: {entry.reference}}}"
            )
        entries.append(entry)
    return entries


def _entry(item: str, raw: dict[str, Any], source: str, imports: AgentImports) -> AgentEntry:
    try:
        if is_import_path(item):
            cls = resolve_agent_class(item, imports, f"{source}: agents")
            section = raw.get(cls.default_name)
            given = section.get(CLASS_KEY) if isinstance(section, dict) else None
            if given is not None and given != item:
                raise ConfigError(
                    f"{source}: {cls.default_name}.class is {given!r}, but agents names {item!r} for that agent"
                )
            return AgentEntry(cls.default_name, item, cls)
        section = raw.get(item)
        reference = section.get(CLASS_KEY) if isinstance(section, dict) else None
        if reference is None:
            return AgentEntry(item, item, resolve_agent_class(item, imports, f"{source}: agents"))
        if not isinstance(reference, str):
            raise ConfigError(f"{source}: {item}.class: expected an agent name or package.module:Class")
        return AgentEntry(item, reference, resolve_agent_class(reference, imports, f"{source}: {item}.class"))
    except AgentLookupError as error:
        raise ConfigError(str(error)) from None


def agent_options(entry: AgentEntry, options: Any, source: str) -> dict[str, Any]:
    """The options of ``entry``'s section (without ``class``), checked against its constructor."""
    where = f"{source}: {entry.name}"
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping of option names to values")
    parameters = constructor_parameters(entry.cls)
    checked = {}
    for key, value in options.items():
        if key == CLASS_KEY:
            continue
        if key == "name":
            raise ConfigError(f"{where}: an agent's name is its section's name; 'name' cannot be an option")
        if key not in parameters:
            raise ConfigError(f"{where}: unknown option {show(key)}{did_you_mean(key, parameters)}")
        checked[key] = check_type(f"{where}.{key}", value, parameters[key])
    return checked


def constructor_parameters(cls: type[Agent]) -> dict[str, Any]:
    """Keyword-usable constructor parameters with their type hints (Any where there is none). A
    constructor taking ``**kwargs`` passes them on: its base class's parameters count too."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # an annotation naming something not importable here: check the name only
            hints = {}
        params = list(inspect.signature(init).parameters.values())[1:]
        usable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        for param in params:
            if param.kind in usable:
                found.setdefault(param.name, hints.get(param.name, Any))
        if klass is Agent or not any(param.kind is inspect.Parameter.VAR_KEYWORD for param in params):
            break
    return found


def build_agent(entry: AgentEntry, options: dict[str, Any]) -> Agent:
    """``entry``'s class built with ``options``, named after its entry."""
    agent = entry.cls(**options)
    agent.name = entry.name  # an agent named by its section (class: ...) takes the section's name
    return agent


def section_of(entry: AgentEntry, options: dict[str, Any]) -> dict[str, Any]:
    """The config section that names ``entry`` again: its options, and its class unless the name says it."""
    return dict(options) if entry.reference == entry.name else {CLASS_KEY: entry.reference, **options}
