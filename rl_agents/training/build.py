"""Trainers from run configs: one process, or Ray workers when the config asks for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import torch

from rl_agents.checkpointing import read_checkpoint_config, resolve_checkpoint
from rl_agents.config.registry import AgentImports
from rl_agents.config.schema import RunConfig
from rl_agents.core.agent import Agent
from rl_agents.training.distributed import DistributedTrainer
from rl_agents.training.recipes import run_config_of
from rl_agents.training.trainer import Trainer


def trainer_class(config: RunConfig, envs: gym.vector.VectorEnv | None = None) -> type[Trainer]:
    """DistributedTrainer when the config has workers (and no envs are given), else Trainer."""
    return DistributedTrainer if config.distributed.workers > 0 and envs is None else Trainer


def make_trainer(config: RunConfig, loggers: list | tuple = (), *, envs: gym.vector.VectorEnv | None = None) -> Trainer:
    """The environments (unless ``envs`` are given), agents and trainer a config describes. With
    ``distributed.workers`` > 0 and no ``envs`` it is a DistributedTrainer whose workers each build
    the config's envs and agents (Ray starts on the first ``train``)."""
    return trainer_class(config, envs).from_config(config, envs=envs, loggers=loggers)


def load_trainer(
    path: Any,
    envs: gym.vector.VectorEnv | None = None,
    *,
    device: str | torch.device | None = None,
    loggers: Any = (),
    trust_code: bool = False,
    agent_classes: Iterable[type[Agent]] = (),
) -> Trainer:
    """Rebuild a trainer (distributed when its run was) from a checkpoint and restore its state (see
    :meth:`Trainer.load` for ``trust_code`` and ``agent_classes``)."""
    directory = resolve_checkpoint(path)
    raw = read_checkpoint_config(directory)
    options = dict(device=device, loggers=loggers, trust_code=trust_code, agent_classes=agent_classes)
    if raw is None:
        return Trainer.load(directory, envs, **options)
    imports = AgentImports.of(trust=trust_code, classes=agent_classes)
    return trainer_class(run_config_of(raw, directory, imports), envs).load(directory, envs, **options)


__all__ = ["load_trainer", "make_trainer", "trainer_class"]
