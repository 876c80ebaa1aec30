"""Rebuilding a checkpoint's acting agent on its own: its class and options, the spaces and reward
streams that shape its networks, and its trained state, all from the checkpoint (no environment).

Checkpoints record these since the policy issue (``run.spaces``, ``run.streams``, ``run.acting``);
older ones are rebuilt through :meth:`Trainer.load`, which makes their environments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from rl_agents.checkpointing import STATE_FILE, CheckpointError
from rl_agents.config.registry import AgentImports, env_import_refusal
from rl_agents.config.values import ConfigError
from rl_agents.core.agent import Agent, EnvContext, RewardStream
from rl_agents.core.state import StateError, count, entry, is_type
from rl_agents.envs import VECTORIZATIONS
from rl_agents.envs.spaces import SpaceRecordError, space_from_record
from rl_agents.training.agent_states import prepare_agents_load
from rl_agents.training.learner import bind_agent
from rl_agents.training.run_records import is_rebuildable, rebuild_agent


@dataclass(frozen=True)
class EnvRecipe:
    """How the run made its environments, as far as the checkpoint says: what evaluation rebuilds."""

    env_id: str
    kwargs: dict[str, Any]
    vectorization: str
    num_envs: int


@dataclass(frozen=True)
class ActingRecord:
    """What a checkpoint says of its acting agent and of the envs it acted in."""

    record: dict[str, Any]  # the agent's run.composition entry
    observation_space: gym.Space
    action_space: gym.Space
    streams: tuple[RewardStream, ...]
    num_envs: int
    global_step: int
    total_steps: int | None


def records_policy(run: dict[str, Any]) -> bool:
    """Whether a checkpoint's ``run`` entry records what rebuilds its acting agent without envs."""
    composition = run.get("composition")
    return (
        all(key in run for key in ("spaces", "streams", "acting"))
        and isinstance(composition, list)
        and all(is_rebuildable(record) for record in composition)
    )


def acting_record(tree: dict[str, Any], where: str) -> ActingRecord:
    """The acting agent's record, spaces and streams in a checkpoint's state tree (StateError if malformed)."""
    run = entry(tree, "run", dict, "state")
    acting = entry(run, "acting", str, "run")
    by_name = {
        record.get("name"): record for record in entry(run, "composition", list, "run") if isinstance(record, dict)
    }
    if acting not in by_name:
        raise StateError(f"run.acting names agent {acting!r}, which run.composition does not list")
    spaces = entry(run, "spaces", dict, "run")
    try:
        observation_space = space_from_record(spaces.get("observation"), "run.spaces.observation")
        action_space = space_from_record(spaces.get("action"), "run.spaces.action")
    except SpaceRecordError as error:
        raise StateError(str(error)) from None
    total_steps = entry(run, "total_steps", (int, type(None)), "run")
    return ActingRecord(
        record=by_name[acting],
        observation_space=observation_space,
        action_space=action_space,
        streams=_streams(entry(run, "streams", list, "run")),
        num_envs=count(run, "num_envs", "run"),
        global_step=count(entry(tree, "collector", dict, "state"), "global_step", "collector"),
        total_steps=total_steps,
    )


def _streams(records: list[Any]) -> tuple[RewardStream, ...]:
    streams = []
    for index, record in enumerate(records):
        where = f"run.streams[{index}]"
        streams.append(
            RewardStream(
                name=entry(record, "name", str, where),
                gamma=float(entry(record, "gamma", (int, float), where)),
                episodic=entry(record, "episodic", bool, where),
                coef=float(entry(record, "coef", (int, float), where)),
            )
        )
    return tuple(streams)


def build_acting_agent(
    acting: ActingRecord, imports: AgentImports, *, device: torch.device, generator: torch.Generator, where: str
) -> Agent:
    """The acting agent rebuilt from its record and bound to the recorded spaces (untrained)."""
    try:
        agent = rebuild_agent(acting.record, imports, where)
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    context = EnvContext(
        observation_space=acting.observation_space,
        action_space=acting.action_space,
        num_envs=acting.num_envs,  # per-env state (e.g. a return scaler) keeps its saved shape
        device=device,
        streams=acting.streams,
        generator=generator,
    )
    bind_agent(agent, context, seed=0)  # the initial weights are replaced by the checkpoint's
    return agent.to(device)


def load_agent_state(agent: Agent, saved_agents: Any, where: str) -> None:
    """Load ``agent``'s entry of a checkpoint's ``agents`` (checked first: nothing changes on error)."""
    if not is_type(saved_agents, dict) or agent.name not in saved_agents:
        raise CheckpointError(f"{where}: the checkpoint holds no state for agent {agent.name!r}")
    try:
        prepare_agents_load([agent], {agent.name: saved_agents[agent.name]})()
    except StateError as error:
        raise CheckpointError(f"{where}: {error}") from None


def env_recipe(run: dict[str, Any], directory: Any, imports: AgentImports) -> EnvRecipe:
    """The environment the run trained on: from its run config, else from how make_envs built it."""
    where = state_file(directory)
    try:
        recipe = _recipe_of_config(run["config"]) if run.get("config") is not None else _recipe_of_env_record(run)
    except StateError as error:
        raise CheckpointError(f"{where}: {error}") from None
    if recipe is None:
        raise CheckpointError(
            f"{where}: the run was built on envs that make_envs did not build, so the checkpoint does not say "
            "how to make them: pass envs=..."
        )
    refusal = env_import_refusal(recipe.env_id, imports)
    if refusal:
        raise CheckpointError(f"{where}: {refusal}")
    return recipe


def _recipe_of_config(config: Any) -> EnvRecipe:
    """The env settings of a stored run config, read alone: the rest of the config (other agents'
    classes, which may need trust to import) is not needed to make the env."""
    trainer = entry(config, "trainer", dict, "run.config") if "trainer" in config else {}
    num_envs = count(trainer, "num_envs", "run.config.trainer") if "num_envs" in trainer else 1
    vectorization = entry(trainer, "vectorization", str, "run.config.trainer") if "vectorization" in trainer else "sync"
    return EnvRecipe(
        entry(config, "env", str, "run.config"),
        dict(entry(config, "env_kwargs", dict, "run.config")) if "env_kwargs" in config else {},
        _known_vectorization(vectorization, "run.config.trainer"),
        max(num_envs, 1),
    )


def _recipe_of_env_record(run: dict[str, Any]) -> EnvRecipe | None:
    """How make_envs built a Python-built run's envs (None when it did not build them)."""
    recorded = run.get("env")
    if not isinstance(recorded, dict):
        return None
    return EnvRecipe(
        entry(recorded, "id", str, "run.env"),
        dict(entry(recorded, "kwargs", dict, "run.env")),
        _known_vectorization(entry(recorded, "vectorization", str, "run.env"), "run.env"),
        max(count(run, "num_envs", "run"), 1),
    )


def _known_vectorization(name: str, where: str) -> str:
    if name not in VECTORIZATIONS:
        raise StateError(f"{where}: vectorization must be one of {', '.join(VECTORIZATIONS)}, got {name!r}")
    return name


def state_file(directory: Any) -> str:
    return str(directory / STATE_FILE)
