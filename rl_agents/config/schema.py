"""Run configuration: a typed schema shared by the command line and Python, YAML presets, overrides.

A config file looks like::

    env: CartPole-v1
    agents: ppo            # or ppo+rnd
    steps: 100000
    seed: 1
    trainer: {num_envs: 8, num_steps: 32, num_epochs: 20, num_minibatches: 1}
    ppo: {lr: 0.001, gamma: 0.98}   # one section per agent: its constructor's keyword arguments

Unknown keys and wrong types are refused with a message naming the key (and a did-you-mean).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import yaml

from rl_agents.agents import AGENTS
from rl_agents.config.agent_specs import AgentEntry, agent_entries, agent_options, build_agent, section_of
from rl_agents.config.compositions import COMPOSITIONS, expand_compositions, learner_name
from rl_agents.config.registry import TRUSTED, AgentImports, env_import_refusal
from rl_agents.config.values import ConfigError, check_type, did_you_mean, json_problem, show
from rl_agents.core.agent import Agent, CompositionError
from rl_agents.core.schedules import SCHEDULE_KINDS, schedule_fields, setting_problem
from rl_agents.envs import VECTORIZATIONS, EnvCreationError, make_envs


@dataclass
class TrainerConfig:
    """Environment sizing, the Trainer's failure options, and the schedule settings given.

    ``schedule`` holds the settings of :mod:`rl_agents.core.schedules` that the config sets (in YAML
    they sit beside the others in the ``trainer:`` section); the rest take the acting agent's
    suggestion. On-policy agents (PPO, A2C) use num_steps .. anneal_lr, off-policy ones (DQN, SAC)
    buffer_size .. n_step; max_grad_norm is shared. Setting one the acting agent does not use is an
    error. ``skip_non_finite_updates`` and ``max_env_restarts`` are the Trainer's options of the same
    names (what to do about NaN/inf updates and failed environments instead of stopping).
    """

    num_envs: int | None = None  # None: the acting agent's suggestion for the env's spaces (see config.defaults)
    vectorization: str = "sync"
    log_interval: int | None = None
    skip_non_finite_updates: bool = False
    max_env_restarts: int = 0
    schedule: dict[str, Any] = field(default_factory=dict)

    def schedule_settings(self) -> dict[str, Any]:
        """The schedule settings given (not None), as Trainer keyword arguments."""
        return {name: value for name, value in self.schedule.items() if value is not None}

    def failure_settings(self) -> dict[str, Any]:
        """What the Trainer does about non-finite updates and failed envs, as keyword arguments."""
        return {"skip_non_finite_updates": self.skip_non_finite_updates, "max_env_restarts": self.max_env_restarts}


# The trainer section's own settings (the schedule's come from rl_agents.core.schedules).
_TRAINER_OWN = [f.name for f in dataclasses.fields(TrainerConfig) if f.name != "schedule"]


def trainer_setting_types() -> dict[str, Any]:
    """Every key of the ``trainer:`` section with its type; a schedule setting may also be None
    (null: take the acting agent's suggestion)."""
    own = typing.get_type_hints(TrainerConfig)
    types_ = {name: own[name] for name in _TRAINER_OWN}
    for kind in SCHEDULE_KINDS:
        for name, hint in typing.get_type_hints(kind).items():
            types_.setdefault(name, hint | None)
    return types_


@dataclass
class DistributedConfig:
    """Distributed rollouts on Ray (``rl_agents.training.distributed``): ``workers`` Ray actors, each stepping
    ``trainer.num_envs`` envs, feed one learner; 0 trains in this process. ``ray_address`` joins an
    existing Ray cluster (``auto``, ``ray://host:10001``); null starts a local Ray instance.
    ``max_worker_restarts`` worker failures in all are survived before training stops."""

    workers: int = 0
    ray_address: str | None = None
    max_worker_restarts: int = 3


@dataclass
class RunConfig:
    env: str = "CartPole-v1"
    agents: str = "ppo"
    steps: int = 100_000
    seed: int = 1
    device: str = "cpu"
    checkpoints: int = 10  # periodic checkpoints over the run (the command line's --checkpoints)
    video_every: int | None = None  # steps between the run's videos (--video-every); None: no videos
    # Stop once the mean return of the last 20 episodes reaches it (--stop-at-return); None: train all steps.
    stop_at_return: float | None = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of gymnasium.make
    # The keys of a Dict observation to keep (one key: its observation alone); None: the env family's default.
    observation_keys: list[str] | None = None
    agent_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # How each agent's class is named where that is not the agent's name (``class:`` in its section,
    # or an import path in ``agents``); filled by config_from_dict, like the classes it resolved.
    agent_classes: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, type[Agent]] = field(default_factory=dict, repr=False, compare=False)
    # Where the settings came from, for the run's first line: a config file, a preset, or the defaults.
    origin: str = field(default="", compare=False)

    @property
    def agent_names(self) -> list[str]:
        return [entry.name for entry in self.agent_entries()]

    def agent_entries(self) -> list[AgentEntry]:
        """Each agent's name, class reference and class (the classes config_from_dict resolved; a
        config built by hand has its classes resolved here, as the user's names: trusted)."""
        entries = []
        for item in (item.strip() for item in self.agents.split("+") if item.strip()):
            if item in self.resolved:
                entries.append(AgentEntry(item, self.agent_classes.get(item, item), self.resolved[item]))
            else:
                raw = {"agents": item} | {name: {"class": ref} for name, ref in self.agent_classes.items()}
                entries.extend(agent_entries(raw, "config", RESERVED_KEYS))
        return entries


_NOT_KEYS = ("agent_options", "agent_classes", "resolved", "origin")  # fields that are not top-level keys of a config
TOP_LEVEL_KEYS = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _NOT_KEYS]
# A run's config.yaml lists its resumes under this key: a record, not a setting (building ignores it).
RESUME_HISTORY_KEY = "resumes"
SECTIONS = {"trainer": TrainerConfig, "distributed": DistributedConfig}  # top-level keys holding a mapping
RESERVED_KEYS = [*TOP_LEVEL_KEYS, RESUME_HISTORY_KEY]  # no agent may be named so: its section would be one of these


def _env_kwargs(values: Any, where: str) -> dict[str, Any]:
    """Keyword arguments for the env's constructor: a mapping of names to JSON values (a run config
    is stored in checkpoints as JSON)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keyword arguments to values, got {show(values)}")
    for key, value in values.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{where}: {show(key)} is not a keyword argument name")
        problem = json_problem(value)
        if problem:
            raise ConfigError(f"{where}.{key}: {problem}")
    return dict(values)


def _check_env_import(env: Any, source: str, imports: AgentImports) -> None:
    """An env id ``module:EnvId`` imports ``module``: only from a config the user gave or trusts."""
    refusal = env_import_refusal(env, imports) if isinstance(env, str) else None
    if refusal:
        raise ConfigError(f"{source}: {refusal}")


def parse_agent_names(spec: str, imports: AgentImports = TRUSTED, source: str = "config") -> list[str]:
    """The agent names of an ``agents`` value (``ppo+rnd``; an import path stands for its class's name)."""
    return [entry.name for entry in agent_entries({"agents": spec}, source, RESERVED_KEYS, imports)]


def config_from_dict(raw: dict[str, Any], source: str = "config", imports: AgentImports = TRUSTED) -> RunConfig:
    """The RunConfig of a config's keys, every key and value checked. ``imports``: which agent classes
    and environment modules it may import (everything, by default: the config is the user's; a
    config read from a checkpoint or a run directory is refused them unless trusted)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    raw = expand_compositions(raw)
    entries = agent_entries(raw, source, RESERVED_KEYS, imports)
    agent_names = [entry.name for entry in entries]
    allowed = TOP_LEVEL_KEYS + agent_names + [RESUME_HISTORY_KEY]
    if not isinstance(raw.get(RESUME_HISTORY_KEY, []), list):
        raise ConfigError(f"{source}: {RESUME_HISTORY_KEY} must be a list (the run's resume history)")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key {show(key)}{did_you_mean(key, allowed + list(AGENTS))}")
    _check_env_import(raw.get("env"), source, imports)
    hints = typing.get_type_hints(RunConfig)
    top = {
        key: check_type(f"{source}: {key}", raw[key], hints[key])
        for key in TOP_LEVEL_KEYS
        if key in raw and key not in SECTIONS and key not in ("agents", "env_kwargs")
    }
    sections = {
        "trainer": _trainer_from_dict(raw.get("trainer") or {}, f"{source}: trainer"),
        "distributed": _dataclass_from_dict(DistributedConfig, raw.get("distributed") or {}, f"{source}: distributed"),
    }
    options = {entry.name: agent_options(entry, raw.get(entry.name) or {}, source) for entry in entries}
    config = RunConfig(
        **top,
        **sections,
        agents="+".join(agent_names),
        env_kwargs=_env_kwargs(raw.get("env_kwargs"), f"{source}: env_kwargs"),
        agent_options=options,
        agent_classes={entry.name: entry.reference for entry in entries if entry.reference != entry.name},
        resolved={entry.name: entry.cls for entry in entries},
    )
    if config.steps < 1:
        raise ConfigError(f"{source}: steps must be >= 1, got {show(config.steps)}")
    if config.trainer.max_env_restarts < 0:
        raise ConfigError(
            f"{source}: trainer.max_env_restarts must be >= 0, got {show(config.trainer.max_env_restarts)}"
        )
    _check_ranges(config, source)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {key: getattr(config, key) for key in TOP_LEVEL_KEYS if key not in SECTIONS}
    trainer = config.trainer
    out["trainer"] = {name: getattr(trainer, name) for name in _TRAINER_OWN[:3]}
    out["trainer"].update({name: trainer.schedule.get(name) for name in schedule_fields()})
    out["trainer"].update({name: getattr(trainer, name) for name in _TRAINER_OWN[3:]})
    if config.distributed != DistributedConfig():  # single-process runs' config files stay as they were
        out["distributed"] = dataclasses.asdict(config.distributed)
    if not config.env_kwargs:  # configs without env kwargs stay as they were
        del out["env_kwargs"]
    for optional in ("video_every", "stop_at_return", "observation_keys"):  # and runs without videos, target, keys
        if out[optional] is None:
            del out[optional]
    for entry in config.agent_entries():
        out[entry.name] = section_of(entry, config.agent_options.get(entry.name, {}))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot be read ({error})") from error
    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as error:  # ValueError: e.g. the date 2020-13-45
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from error
    if raw is None:  # an empty file
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` (or ``key=value``) overrides; values are parsed as YAML scalars."""
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of keys to values, got {type(raw).__name__}")
    result = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. ppo.ent_coef=0.02")
        dotted, text = override.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except (yaml.YAMLError, ValueError, RecursionError):  # not YAML (or, like 2020-13-45, no real date)
            value = text
        parts = dotted.strip().split(".")
        if len(parts) == 1:
            result[parts[0]] = value
        elif len(parts) == 2:
            if result.get(parts[0]) is None:  # absent, or an empty section in YAML
                result[parts[0]] = {}
            section = result[parts[0]]
            if not isinstance(section, dict):
                raise ConfigError(f"--set {override!r}: {parts[0]!r} is not a section")
            section[parts[1]] = value
        else:
            raise ConfigError(f"--set {override!r}: keys have at most one dot (section.key)")
    return result


def preset_path(env_id: str, agent: str | None = None) -> Path | None:
    """The shipped preset for ``env_id``: ``<env>.<agent>.yaml`` when ``agent`` has one, else ``<env>.yaml``."""
    folder = resources.files("rl_agents.config") / "presets"
    base = env_id.replace("/", "_")
    for name in ([f"{base}.{agent}.yaml"] if agent else []) + [f"{base}.yaml"]:
        candidate = folder / name
        if candidate.is_file():
            return Path(str(candidate))
    return None


def list_presets() -> list[str]:
    """Preset names: ``<env>`` or ``<env>.<agent>``."""
    folder = resources.files("rl_agents.config") / "presets"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_preset(env_id: str, agent: str | None = None) -> dict[str, Any]:
    """The preset tuned for ``env_id`` (and for ``agent`` as the learner, when one ships).

    A preset tuned for another learner keeps only what does not depend on it: the env and its step
    budget (the number of envs is the learner's: an off-policy learner's update-to-data ratio
    depends on it)."""
    path = preset_path(env_id, agent)
    if path is None:
        return {"env": env_id}
    raw = load_yaml(path)
    if not preset_fits(raw, agent):
        raw = {"env": raw.get("env", env_id), "steps": raw.get("steps", RunConfig.steps)}
    return raw


def preset_fits(raw: dict[str, Any], agent: str | None) -> bool:
    """Whether a preset was tuned for ``agent`` as the learner (None: any learner: the preset's own)."""
    if agent is None:
        return True
    spec = raw.get("agents", RunConfig.agents)
    if agent in COMPOSITIONS or learner_name(spec) in COMPOSITIONS:
        return learner_name(spec) == agent
    return parse_agent_names(spec)[0] == agent


# ValueErrors that already are messages for the user; any other ValueError raised while building a
# trainer from a validated config is a value the Trainer refused (e.g. Adam and a negative lr).
USER_VALUE_ERRORS = (ConfigError, CompositionError, EnvCreationError)


@contextmanager
def translated_build_errors(on_error: Callable[[], None] | None = None) -> Iterator[None]:
    """Building a trainer from a validated config: a value the Trainer or torch refused becomes a
    ConfigError (e.g. device 'cuda' without CUDA, Adam refusing an lr, a setting too large for memory);
    ``on_error`` (closing envs built for it) runs first."""
    try:
        yield
    except BaseException as error:
        if on_error is not None:
            on_error()
        if isinstance(error, ValueError) and not isinstance(error, USER_VALUE_ERRORS):
            raise ConfigError(str(error)) from error
        if is_out_of_memory(error):  # e.g. trainer.num_steps: 1e15
            raise ConfigError(f"not enough memory for this configuration ({error})") from error
        raise


def build_agents(config: RunConfig) -> list[Agent]:
    agents = []
    for entry in config.agent_entries():
        try:
            agents.append(build_agent(entry, config.agent_options.get(entry.name, {})))
        except ValueError as error:  # the agent refused an option's value
            if isinstance(error, USER_VALUE_ERRORS):
                raise
            raise ConfigError(f"{entry.name}: {error}") from error
    return agents


def make_config_envs(config: RunConfig) -> gym.vector.VectorEnv:
    """The vector env a config describes (each worker's, when distributed)."""
    if config.trainer.num_envs is None:
        raise ConfigError(
            "trainer.num_envs is not set: rl_agents.config.with_num_envs(config) sets the acting agent's suggestion"
        )
    try:
        return make_envs(
            config.env,
            config.trainer.num_envs,
            config.trainer.vectorization,
            observation_keys=config.observation_keys,
            **config.env_kwargs,
        )
    except gym.error.DependencyNotInstalled as error:  # e.g. LunarLander-v3 without Box2D
        raise EnvCreationError(f"environment {config.env!r}: {error}") from error


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation (or a size no allocation can have): a setting too large."""
    if isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    messages = ("can't allocate memory", "not enough memory", "Storage size calculation overflowed")
    return isinstance(error, RuntimeError) and any(message in str(error) for message in messages)


def _trainer_from_dict(values: Any, where: str) -> TrainerConfig:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = trainer_setting_types()
    own, schedule = {}, {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {show(key)}{did_you_mean(key, list(hints))}")
        checked = check_type(f"{where}.{key}", value, hints[key])
        if key in _TRAINER_OWN:
            own[key] = checked
        elif checked is not None:  # null: take the acting agent's suggestion, as if not set
            schedule[key] = checked
    return TrainerConfig(**own, schedule=schedule)


def _dataclass_from_dict(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {show(key)}{did_you_mean(key, names)}")
        checked[key] = check_type(f"{where}.{key}", value, hints[key])
    return cls(**checked)


MAX_NUM_ENVS = 4096  # more is a typo, not a plan: each env is an object here (a process when async)
MAX_WORKERS = 1024  # Ray actors of one run
MAX_SEED = 2**40 - 1  # the Trainer seeds torch with seed * 1_000_003 + crc32(agent name), which must fit in 64 bits
DEVICES = ("cpu", "cuda")
# Smallest value of the trainer section's own settings (the schedule's ranges are in rl_agents.core.schedules).
_TRAINER_MINIMUMS = {"num_envs": 1, "log_interval": 0}


def _check_ranges(config: RunConfig, source: str) -> None:
    """Values of the right type that can never work, refused before anything is built."""

    def refuse(key: str, rule: str, value: Any) -> None:
        raise ConfigError(f"{source}: {key} must be {rule}, got {show(value)}")

    if not 1 <= config.checkpoints <= 100_000:
        refuse("checkpoints", "between 1 and 100000", config.checkpoints)
    if config.video_every is not None and config.video_every < 1:
        refuse("video_every", ">= 1 (steps between videos) or null", config.video_every)
    if config.stop_at_return is not None and not math.isfinite(config.stop_at_return):
        refuse("stop_at_return", "a finite return or null", config.stop_at_return)
    if not 0 <= config.seed <= MAX_SEED:
        refuse("seed", f"between 0 and {MAX_SEED}", config.seed)
    if config.device != "auto":
        try:
            device_type = torch.device(config.device).type
        except (RuntimeError, ValueError, TypeError):
            device_type = None
        if device_type not in DEVICES:
            refuse("device", "'cpu', 'cuda', 'cuda:N' or 'auto'", config.device)
    trainer = config.trainer
    for name, minimum in _TRAINER_MINIMUMS.items():
        value = getattr(trainer, name, None)
        if value is not None and value < minimum:
            refuse(f"trainer.{name}", f">= {minimum}", value)
    for name, value in trainer.schedule.items():
        problem = None if value is None else setting_problem(name, value)  # None: the agent's suggestion
        if problem is not None:
            raise ConfigError(f"{source}: trainer.{name} {problem}, got {show(value)}")
    if trainer.num_envs is not None and trainer.num_envs > MAX_NUM_ENVS:
        refuse("trainer.num_envs", f"at most {MAX_NUM_ENVS}", trainer.num_envs)
    if trainer.vectorization not in VECTORIZATIONS:
        refuse("trainer.vectorization", " or ".join(map(repr, VECTORIZATIONS)), trainer.vectorization)
    _check_distributed(config, refuse)
    for agent, options in config.agent_options.items():
        for key, value in options.items():
            if (key == "lr" or key.endswith("_lr")) and value is not None and not (math.isfinite(value) and value >= 0):
                refuse(f"{agent}.{key}", "a finite number >= 0", value)
            if isinstance(value, tuple) and not all(isinstance(width, int) and width >= 1 for width in value):
                refuse(f"{agent}.{key}", "positive layer widths", list(value))


def _check_distributed(config: RunConfig, refuse: Any) -> None:
    distributed = config.distributed
    if not 0 <= distributed.workers <= MAX_WORKERS:
        refuse("distributed.workers", f"between 0 (train in this process) and {MAX_WORKERS}", distributed.workers)
    if distributed.max_worker_restarts < 0:
        refuse("distributed.max_worker_restarts", ">= 0", distributed.max_worker_restarts)
    if distributed.ray_address is not None and not distributed.ray_address.strip():
        refuse(
            "distributed.ray_address",
            "a Ray address such as 'auto' or 'ray://host:10001', or null",
            distributed.ray_address,
        )
    if distributed.workers and config.trainer.max_env_restarts:
        raise ConfigError(
            "trainer.max_env_restarts does not apply with distributed.workers > 0: a failed env fails its worker, "
            "which distributed.max_worker_restarts restarts"
        )
