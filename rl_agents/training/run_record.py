"""What identifies a run in its checkpoints: the seed, the step budget, the run config, and what a
trainer loading it must share (the agents' classes, the number of envs, the autoreset mode)."""

from __future__ import annotations

import dataclasses
from typing import Any

from rl_agents.core.agent import Agent
from rl_agents.core.schedules import Schedule
from rl_agents.core.state import Apply, StateError, entry
from rl_agents.training.optimizer_state import class_path


def autoreset_name(mode: Any) -> str:
    return str(getattr(mode, "value", mode))


def run_record(
    *, seed: int, total_steps: int | None, agents: list[Agent], num_envs: int, autoreset_mode: Any, schedule: Schedule, config: Any
) -> dict[str, Any]:
    return {
        "seed": seed,
        "total_steps": total_steps,
        "num_envs": num_envs,
        "autoreset_mode": autoreset_name(autoreset_mode),
        "schedule": dataclasses.asdict(schedule),
        "composition": [{"name": agent.name, "class": class_path(agent)} for agent in agents],
        "config": config,
    }


def check_same_run(saved: Any, *, agents: list[Agent], num_envs: int, autoreset_mode: Any, where: str = "run") -> None:
    """Refuse a run record whose agents' classes, number of envs or autoreset mode differ from these
    (which agents there are is checked with their state)."""
    composition = entry(saved, "composition", list, where)
    if not all(isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("class"), str) for item in composition):
        raise StateError(f"{where}.composition must list objects with a string 'name' and 'class'")
    classes = {item["name"]: item["class"] for item in composition}
    for agent in agents:
        if agent.name in classes and classes[agent.name] != class_path(agent):
            raise StateError(f"agent {agent.name!r} was a {classes[agent.name]} in the checkpoint, but is a {class_path(agent)} here")
    if entry(saved, "num_envs", int, where) != num_envs:
        raise StateError(f"saved with {saved['num_envs']} envs, but this trainer has {num_envs}")
    mode = autoreset_name(autoreset_mode)
    if entry(saved, "autoreset_mode", str, where) != mode:
        raise StateError(f"saved with autoreset mode {saved['autoreset_mode']!r}, but the envs use {mode!r}")


def prepare_run_load(saved: Any, apply_values: Any, where: str = "run") -> Apply:
    """Check the seed, step budget and config of a run record; the returned function hands them to
    ``apply_values(seed, total_steps, config)``."""
    seed = entry(saved, "seed", int, where)
    total_steps = entry(saved, "total_steps", (int, type(None)), where)
    config = entry(saved, "config", (dict, type(None)), where)
    return lambda: apply_values(seed, total_steps, config)
