"""What a checkpoint records to rebuild its run without the Python that built it, and the rebuilding.

Every checkpoint's ``run`` entry lists each agent with its class's import path and the constructor
options that rebuild it (``Agent.init_options()``, JSON values only: refused at save time otherwise),
the Trainer's settings, and the environment when :func:`rl_agents.envs.make_envs` built it. A run
built from a run config is rebuilt from that config; a run built in Python from these records.

Rebuilding imports the classes a checkpoint names only as :class:`~rl_agents.config.registry.AgentImports`
allows: shipped and registered agents always, other import paths only when trusted or handed over.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rl_agents.agents import AGENTS
from rl_agents.config.agent_specs import AgentEntry, agent_options, build_agent
from rl_agents.config.registry import (
    AgentImports,
    AgentLookupError,
    env_import_refusal,
    import_path,
    resolve_agent_class,
)
from rl_agents.config.values import ConfigError, json_problem
from rl_agents.core.agent import Agent
from rl_agents.envs import make_envs
from rl_agents.envs.make import env_factory_of
from rl_agents.training.optimizer_state import class_path

# Trainer settings a checkpoint records (run.settings) besides the device, seed, step budget and schedule.
RECORDED_SETTINGS = ("log_interval", "skip_non_finite_updates", "max_env_restarts")


def recorded_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The Trainer keyword arguments among a checkpoint's ``run.settings`` (older ones lack some)."""
    return {key: settings[key] for key in RECORDED_SETTINGS if key in settings}


class UnrecordableAgentError(ValueError):
    """An agent whose constructor options a checkpoint cannot record (saving is refused)."""


def agent_record(agent: Agent) -> dict[str, Any]:
    """``{"name", "class", "import_path", "options"}`` of one agent; refuses options that are not JSON."""
    options = agent.init_options()
    where = f"agent {agent.name!r} ({import_path(type(agent))})"
    if options is None:
        raise UnrecordableAgentError(
            f"{where}: its constructor arguments cannot be named (extra positional arguments), so a checkpoint "
            "cannot record how to rebuild it; override init_options() to return keyword arguments that do"
        )
    for key, value in options.items():
        problem = json_problem(value)
        if problem:
            raise UnrecordableAgentError(
                f"{where}: constructor argument {key!r} cannot be recorded in a checkpoint ({problem}); checkpoints "
                "record JSON values (numbers, strings, booleans, null, lists, string-keyed maps): override "
                "init_options() to return arguments that rebuild the agent"
            )
    return {"name": agent.name, "class": class_path(agent), "import_path": import_path(type(agent)), "options": options}


def env_record(envs: gym.vector.VectorEnv) -> dict[str, Any] | None:
    """How :func:`make_envs` built ``envs`` (id, vectorization, kwargs), when it did and the kwargs are JSON."""
    factory = env_factory_of(envs)
    args = getattr(factory, "args", None)
    if not args or len(args) != 3:
        return None
    env_id, _, vectorization = args
    kwargs = dict(getattr(factory, "keywords", {}) or {})
    if any(json_problem(value) for value in kwargs.values()):
        return None
    return {"id": env_id, "vectorization": vectorization, "kwargs": kwargs}


def rebuild_agents(composition: list[dict[str, Any]], imports: AgentImports, where: str) -> list[Agent]:
    """The agents a checkpoint's ``run.composition`` records, built anew (untrained)."""
    return [rebuild_agent(record, imports, where) for record in composition]


def is_rebuildable(record: Any) -> bool:
    """Whether a ``run.composition`` record says how to rebuild its agent (older checkpoints do not)."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("import_path"), str)
        and isinstance(record.get("options"), dict)
    )


def rebuild_agent(record: dict[str, Any], imports: AgentImports, where: str) -> Agent:
    """One agent of ``run.composition``, built anew (untrained); ConfigError when it cannot be."""
    name = record.get("name")
    if not is_rebuildable(record):
        raise ConfigError(
            f"{where}: agent {name!r} was saved before checkpoints recorded agents' classes and options: build "
            "the Trainer with the same agents and call trainer.load_state(path)"
        )
    reference = record["import_path"]
    try:
        cls = resolve_agent_class(reference, imports, f"{where}: agent {name!r}")
    except AgentLookupError as error:
        raise ConfigError(str(error)) from None
    entry = AgentEntry(str(name), reference, cls)
    options = {key: value for key, value in record["options"].items() if key != "name"}
    return build_agent(entry, agent_options(entry, options, where))


def rebuild_envs(run: dict[str, Any], imports: AgentImports, where: str) -> gym.vector.VectorEnv:
    """The envs a Python-built run recorded (only when :func:`make_envs` built them)."""
    recorded = run.get("env")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("id"), str):
        raise ConfigError(
            f"{where}: the run was built in Python on envs that make_envs did not build, so they cannot be "
            "rebuilt from the checkpoint: pass envs=... (the same environment, with "
            f"{run.get('num_envs')} envs)"
        )
    env_id = recorded["id"]
    refusal = env_import_refusal(env_id, imports)
    if refusal:
        raise ConfigError(f"{where}: {refusal}, or pass envs=...")
    return make_envs(env_id, int(run["num_envs"]), recorded.get("vectorization", "sync"), **recorded.get("kwargs", {}))


def config_of_records(run: dict[str, Any]) -> dict[str, Any] | None:
    """The run config (as a dict) that rebuilds a run built in Python from its records, when its envs
    were built by :func:`make_envs`; None when they were not (nothing says how to build them again)."""
    env, composition = run.get("env"), run.get("composition")
    if not isinstance(env, dict) or not isinstance(composition, list):
        return None
    if not all(is_rebuildable(record) for record in composition):
        return None
    settings = run.get("settings") or {}
    builtin = {import_path(cls): name for name, cls in AGENTS.items()}
    config: dict[str, Any] = {
        "env": env["id"],
        "agents": "+".join(str(record["name"]) for record in composition),
        "steps": run.get("total_steps") or 1,
        "seed": run.get("seed", 0),
        "device": settings.get("device", "cpu"),
        "env_kwargs": env.get("kwargs") or {},
        "trainer": {
            "num_envs": run.get("num_envs"),
            "vectorization": env.get("vectorization", "sync"),
            **recorded_settings(settings),
            **(run.get("schedule") or {}),
        },
    }
    for record in composition:
        reference = builtin.get(record["import_path"], record["import_path"])
        options = {key: value for key, value in (record.get("options") or {}).items() if key != "name"}
        config[str(record["name"])] = options if reference == record["name"] else {"class": reference, **options}
    return config


__all__ = [
    "RECORDED_SETTINGS",
    "UnrecordableAgentError",
    "agent_record",
    "config_of_records",
    "env_record",
    "is_rebuildable",
    "rebuild_agent",
    "rebuild_agents",
    "rebuild_envs",
    "recorded_settings",
]
