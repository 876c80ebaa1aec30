"""Building trainers from run configs and from checkpoints' stored configs.

The functions take the class to build (``Trainer`` or a subclass), so that ``Trainer.from_config`` and
``Trainer.load`` stay one line each and this module never imports the trainer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import torch

from rl_agents.checkpointing import STATE_FILE, CheckpointError, read_checkpoint
from rl_agents.config.schema import (
    ConfigError,
    RunConfig,
    build_agents,
    config_from_dict,
    config_to_dict,
    make_config_envs,
    translated_build_errors,
)


class BuiltTrainer(Protocol):
    """What these recipes need of the class they build (the Trainer; never imported here)."""

    run_config: dict[str, Any] | None

    def load_state(self, path: Any) -> Any: ...


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
    cls: Any, path: Any, envs: gym.vector.VectorEnv | None, *, device: str | torch.device | None, loggers: Any
) -> Any:
    """``cls.from_config`` of a checkpoint's stored run config, with the checkpoint's state restored."""
    directory, tree = read_checkpoint(path)
    run = tree.get("run")
    raw = run.get("config") if isinstance(run, dict) else None
    if raw is None:
        raise CheckpointError(
            f"{directory / STATE_FILE}: has no run config, so the agents cannot be rebuilt; "
            "construct the Trainer with the same agents and call trainer.load_state(path)"
        )
    config = run_config_of(raw, directory)
    if device is not None:
        config = dataclasses.replace(config, device=str(device))
    trainer = cls.from_config(config, envs=envs, loggers=loggers)
    trainer.load_state(directory)
    return trainer


def run_config_of(raw: dict[str, Any], directory: Any) -> RunConfig:
    """The RunConfig stored in a checkpoint (CheckpointError when it is invalid)."""
    try:
        return config_from_dict(raw, source=str(directory))
    except ConfigError as error:
        message = " ".join(str(error).split())
        raise CheckpointError(f"{directory / STATE_FILE}: stored run config is invalid ({message})") from None
