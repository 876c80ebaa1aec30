"""Building trainers from run configs and from checkpoints' stored configs.

The functions take the class to build (``Trainer`` or a subclass), so that ``Trainer.from_config`` and
``Trainer.load`` stay one line each and this module never imports the trainer.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import torch

from rl_agents.checkpointing import STATE_FILE, CheckpointError, read_checkpoint
from rl_agents.config.defaults import with_num_envs
from rl_agents.config.registry import AgentImports
from rl_agents.config.schema import (
    ConfigError,
    RunConfig,
    build_agents,
    config_from_dict,
    config_to_dict,
    make_config_envs,
    translated_build_errors,
)
from rl_agents.training.run_records import rebuild_agents, rebuild_envs, recorded_settings


class BuiltTrainer(Protocol):
    """What these recipes need of the class they build (the Trainer; never imported here)."""

    run_config: dict[str, Any] | None

    def restore_checkpoint(self, directory: Any, tree: dict[str, Any]) -> list[str]: ...


TrainerT = TypeVar("TrainerT", bound=BuiltTrainer)


def build_from_config(
    cls: type[TrainerT],
    config: RunConfig,
    *,
    envs: gym.vector.VectorEnv | None,
    loggers: Any,
    overrides: dict[str, Any],
) -> TrainerT:
    """``cls`` built with the environments (unless ``envs`` are given), agents and settings of ``config``."""
    if config.distributed.workers > 0 and envs is None:
        raise ConfigError(
            f"this run config collects with {config.distributed.workers} Ray workers: build it with "
            "DistributedTrainer.from_config or rl_agents.training.make_trainer"
        )
    agents = build_agents(config)  # before the envs: nothing to close when an option is refused
    config = with_num_envs(config, agents)
    own_envs = envs is None
    if envs is None:
        envs = make_config_envs(config)
    settings = dict(
        seed=config.seed,
        device=config.device,
        total_steps=config.steps,
        loggers=loggers,
        log_interval=config.trainer.log_interval,
        **config.trainer.schedule_settings(),
        **config.trainer.failure_settings(),
    )
    with translated_build_errors(on_error=envs.close if own_envs else None):
        trainer = cls(envs, agents, **(settings | overrides))
    trainer.run_config = config_to_dict(config)
    return trainer


def load_with_class(
    cls: Any,
    path: Any,
    envs: gym.vector.VectorEnv | None,
    *,
    device: str | torch.device | None,
    loggers: Any,
    imports: AgentImports,
) -> Any:
    """``cls`` rebuilt from a checkpoint, with the checkpoint's state restored: from its stored run
    config when it has one, else from its records of the agents and settings (a run built in Python)."""
    directory, tree = read_checkpoint(path)
    run = tree.get("run")
    if not isinstance(run, dict):
        raise CheckpointError(f"{directory / STATE_FILE}: has no run entry")
    raw = run.get("config")
    if raw is None:
        trainer = _rebuild_from_records(cls, run, directory, envs, device=device, loggers=loggers, imports=imports)
    else:
        config = run_config_of(raw, directory, imports)
        if device is not None:
            config = dataclasses.replace(config, device=str(device))
        trainer = cls.from_config(config, envs=envs, loggers=loggers)
    for note in trainer.restore_checkpoint(directory, tree):  # the tree read above: the checkpoint is read once
        warnings.warn(f"{directory}: {note}", stacklevel=3)
    return trainer


def _rebuild_from_records(
    cls: Any, run: dict[str, Any], directory: Any, envs: Any, *, device: Any, loggers: Any, imports: AgentImports
) -> Any:
    where = str(directory / STATE_FILE)
    composition, schedule = run.get("composition"), run.get("schedule")
    settings = run.get("settings") or {}
    if not isinstance(composition, list) or not isinstance(schedule, dict) or not isinstance(settings, dict):
        raise CheckpointError(f"{where}: run.composition, run.schedule or run.settings is not what a checkpoint holds")
    try:
        agents = rebuild_agents(composition, imports, where)
        own_envs = envs is None
        envs = rebuild_envs(run, imports, where) if own_envs else envs
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    options = {
        "seed": run.get("seed", 0),
        "total_steps": run.get("total_steps"),
        "device": device if device is not None else settings.get("device", "cpu"),
        "loggers": loggers,
        **recorded_settings(settings),
        **schedule,
    }
    with translated_build_errors(on_error=envs.close if own_envs else None):
        return cls(envs, agents, **options)


def run_config_of(raw: dict[str, Any], directory: Any, imports: AgentImports) -> RunConfig:
    """The RunConfig stored in a checkpoint (CheckpointError when it is invalid, or names an import
    path that ``imports`` does not allow)."""
    try:
        return config_from_dict(raw, source=str(directory), imports=imports)
    except ConfigError as error:
        message = " ".join(str(error).split())
        if "--trust-code" in message:
            raise CheckpointError(f"{directory / STATE_FILE}: stored run config: {message}") from None
        raise CheckpointError(f"{directory / STATE_FILE}: stored run config is invalid ({message})") from None
