"""The training state as one tree of the components' state dicts, and loading it all-or-nothing.

::

    {"run": {...}, "agents": {name: agent.state_dict()}, "learner": learner.state_dict(),
     "collector": collector.state_dict(), "metrics": metrics_log.state_dict()}

``run`` identifies the run (seed, step budget, run config) and what a trainer loading it must share
(the agents' classes, the number of envs, the autoreset mode). Loading checks every part before it
applies any, so a state that does not fit leaves the trainer as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rl_agents.core.agent import Agent
from rl_agents.core.state import Apply, StateError, entry
from rl_agents.envs.spaces import space_record
from rl_agents.training.agent_states import agents_state_dict, prepare_agents_load
from rl_agents.training.collector import BatchSource
from rl_agents.training.episodes import episode_counts
from rl_agents.training.learner import Learner
from rl_agents.training.metrics import MetricsLog
from rl_agents.training.optimizer_state import class_path
from rl_agents.training.run_records import agent_record, env_record

# Receives the loaded run's (seed, total_steps, config).
SetRun = Callable[[int, "int | None", "dict[str, Any] | None"], None]


def autoreset_name(mode: Any) -> str:
    return str(getattr(mode, "value", mode))


def require_update_boundary(collector: BatchSource, rollout_steps: int) -> None:
    """Refuse to capture the state mid-rollout: the rollout storage is never part of a checkpoint."""
    if collector.at_boundary:
        return
    acted = getattr(collector, "acted", False)  # only a local Collector can wait for an observe()
    raise RuntimeError(
        f"a checkpoint can only be saved at an update boundary: the trainer is at step "
        f"{collector.step_in_rollout} of {rollout_steps} of the current rollout"
        + (" and act() was called without observe()" if acted else "")
        + "; save right after the update (e.g. from train()'s on_update callback)"
    )


def state_tree(
    *,
    learner: Learner,
    collector: BatchSource,
    metrics_log: MetricsLog,
    seed: int,
    total_steps: int | None,
    config: dict[str, Any] | None,
) -> dict[str, Any]:
    require_update_boundary(collector, learner.rollout_steps)
    run = {
        "seed": seed,
        "total_steps": total_steps,
        "num_envs": learner.num_envs,
        "autoreset_mode": autoreset_name(collector.autoreset_mode),
        "schedule": dataclasses.asdict(learner.schedule),
        "composition": [agent_record(agent) for agent in learner.agents],
        "config": config,
        # What rebuilds a run built in Python (one built from a run config is rebuilt from the config).
        "settings": {
            "device": str(learner.device),
            "log_interval": metrics_log.log_interval,
            "skip_non_finite_updates": learner.step.skip_non_finite,
            "max_env_restarts": getattr(collector, "max_env_restarts", 0),
        },
        "env": None if getattr(collector, "envs", None) is None else env_record(collector.envs),
        # What rebuilds the acting agent without the envs (rl_agents.Policy): its spaces and the
        # composition's reward streams (a learner keeps one value head per stream).
        "spaces": {
            "observation": space_record(learner.spaces.observation_space),
            "action": space_record(learner.spaces.action_space),
        },
        "streams": [dataclasses.asdict(stream) for stream in learner.streams],
        "acting": learner.acting.name,
    }
    return {
        "run": run,
        "agents": agents_state_dict(learner.agents),
        "learner": learner.state_dict(),
        "collector": collector.state_dict(),
        "metrics": metrics_log.state_dict(),
    }


def prepare_tree_load(
    tree: Any, *, learner: Learner, collector: BatchSource, metrics_log: MetricsLog, set_run: SetRun
) -> tuple[Apply, list[str]]:
    """Check every part of a :func:`state_tree` against these components; returns the function that
    applies it all and the warnings to give (state that cannot be restored here)."""
    run = entry(tree, "run", dict, "state")
    _check_same_run(run, agents=learner.agents, num_envs=learner.num_envs, autoreset_mode=collector.autoreset_mode)
    seed = entry(run, "seed", int, "run")
    total_steps = entry(run, "total_steps", (int, type(None)), "run")
    config = entry(run, "config", (dict, type(None)), "run")
    # Checked in the order that names the first difference best: which agents, then their tensors,
    # then what depends on them (the optimizer's state per parameter), then the rest.
    apply_agents = prepare_agents_load(learner.agents, entry(tree, "agents", dict, "state"))
    apply_learner, warning = learner.prepare_load(entry(tree, "learner", dict, "state"))
    collector_state = entry(tree, "collector", dict, "state")
    apply_collector = collector.prepare_load(collector_state)
    first_kept, episodes = episode_counts(collector_state["episodes"]["finished"])  # checked by the collector
    apply_metrics = metrics_log.prepare_load(entry(tree, "metrics", dict, "state"), episodes, first_kept)
    # Applied with the learner first: its optimizer load is the one step that torch may still refuse;
    # and the collector last: restoring the envs is the one step with effects outside these objects.
    appliers = [apply_learner, apply_agents, apply_metrics, lambda: set_run(seed, total_steps, config), apply_collector]

    def apply() -> None:
        for step in appliers:
            step()

    return apply, [warning] if warning else []


def _check_same_run(saved: dict[str, Any], *, agents: list[Agent], num_envs: int, autoreset_mode: Any) -> None:
    """Refuse a run whose agents' classes, number of envs or autoreset mode differ from these
    (which agents there are is checked with their state)."""
    composition = entry(saved, "composition", list, "run")
    if not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("class"), str)
        for item in composition
    ):
        raise StateError("run.composition must list objects with a string 'name' and 'class'")
    classes = {item["name"]: item["class"] for item in composition}
    for agent in agents:
        if agent.name in classes and classes[agent.name] != class_path(agent):
            raise StateError(
                f"agent {agent.name!r} was a {classes[agent.name]} in the checkpoint, but is a {class_path(agent)} here"
            )
    if entry(saved, "num_envs", int, "run") != num_envs:
        raise StateError(f"saved with {saved['num_envs']} envs, but this trainer has {num_envs}")
    mode = autoreset_name(autoreset_mode)
    if entry(saved, "autoreset_mode", str, "run") != mode:
        raise StateError(f"saved with autoreset mode {saved['autoreset_mode']!r}, but the envs use {mode!r}")
