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
import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rl_agents.agent import Agent, ReplaySchedule, Schedule
from rl_agents.envs import make_envs
from rl_agents.registry import AGENTS
from rl_agents.trainer import Trainer


class ConfigError(ValueError):
    """A config key, value or file that cannot be used; the message says which and where."""


@dataclass
class TrainerConfig:
    """Environment sizing and schedule settings; ``None`` takes the acting agent's suggestion.

    On-policy agents (PPO, A2C) use num_steps .. anneal_lr, off-policy ones (DQN, SAC) buffer_size ..
    n_step; max_grad_norm is shared. Setting one the acting agent does not use is an error.
    """

    num_envs: int = 4
    vectorization: str = "sync"
    log_interval: int | None = None
    num_steps: int | None = None
    num_epochs: int | None = None
    num_minibatches: int | None = None
    max_grad_norm: float | None = None
    anneal_lr: bool | None = None
    buffer_size: int | None = None
    batch_size: int | None = None
    learning_starts: int | None = None
    train_frequency: int | None = None
    gradient_steps: int | None = None
    target_update_interval: int | None = None
    tau: float | None = None
    n_step: int | None = None

    def schedule_settings(self) -> dict[str, Any]:
        """The schedule settings given (not None), as Trainer keyword arguments."""
        names = {f.name for kind in (Schedule, ReplaySchedule) for f in dataclasses.fields(kind)}
        return {name: value for name in names if (value := getattr(self, name)) is not None}


@dataclass
class RunConfig:
    env: str = "CartPole-v1"
    agents: str = "ppo"
    steps: int = 100_000
    seed: int = 1
    device: str = "cpu"
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    agent_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def agent_names(self) -> list[str]:
        return parse_agent_names(self.agents)


TOP_LEVEL_KEYS = [f.name for f in dataclasses.fields(RunConfig) if f.name != "agent_options"]


def parse_agent_names(spec: str) -> list[str]:
    names = [name.strip() for name in str(spec).split("+") if name.strip()]
    if not names:
        raise ConfigError("agents: expected names joined by '+', e.g. 'ppo+rnd'")
    for name in names:
        if name not in AGENTS:
            raise ConfigError(f"agents: unknown agent {name!r}{_did_you_mean(name, AGENTS)} (known: {', '.join(AGENTS)})")
    return names


def config_from_dict(raw: dict[str, Any], source: str = "config") -> RunConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, got {type(raw).__name__}")
    agent_names = parse_agent_names(raw.get("agents", RunConfig.agents))
    allowed = TOP_LEVEL_KEYS + agent_names
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown key {key!r}{_did_you_mean(key, allowed + list(AGENTS))}")
    hints = typing.get_type_hints(RunConfig)
    top = {
        key: _check_type(f"{source}: {key}", raw[key], hints[key]) for key in TOP_LEVEL_KEYS if key in raw and key != "trainer"
    }
    trainer = _dataclass_from_dict(TrainerConfig, raw.get("trainer") or {}, f"{source}: trainer")
    options = {name: _agent_options(name, raw.get(name) or {}, source) for name in agent_names}
    config = RunConfig(**top, trainer=trainer, agent_options=options)
    if config.steps < 1:
        raise ConfigError(f"{source}: steps must be >= 1, got {config.steps}")
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    out: dict[str, Any] = {key: getattr(config, key) for key in TOP_LEVEL_KEYS if key != "trainer"}
    out["trainer"] = dataclasses.asdict(config.trainer)
    for name in config.agent_names:
        out[name] = dict(config.agent_options.get(name, {}))
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from error
    return raw or {}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` (or ``key=value``) overrides; values are parsed as YAML scalars."""
    result = {key: (dict(value) if isinstance(value, dict) else value) for key, value in raw.items()}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. ppo.ent_coef=0.02")
        dotted, text = override.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = dotted.strip().split(".")
        if len(parts) == 1:
            result[parts[0]] = value
        elif len(parts) == 2:
            section = result.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"--set {override!r}: {parts[0]!r} is not a section")
            section[parts[1]] = value
        else:
            raise ConfigError(f"--set {override!r}: keys have at most one dot (section.key)")
    return result


def preset_path(env_id: str, agent: str | None = None) -> Path | None:
    """The shipped preset for ``env_id``: ``<env>.<agent>.yaml`` when ``agent`` has one, else ``<env>.yaml``."""
    folder = resources.files("rl_agents") / "presets"
    base = env_id.replace("/", "_")
    for name in ([f"{base}.{agent}.yaml"] if agent else []) + [f"{base}.yaml"]:
        candidate = folder / name
        if candidate.is_file():
            return Path(str(candidate))
    return None


def list_presets() -> list[str]:
    """Preset names: ``<env>`` or ``<env>.<agent>``."""
    folder = resources.files("rl_agents") / "presets"
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def load_preset(env_id: str, agent: str | None = None) -> dict[str, Any]:
    """The preset tuned for ``env_id`` (and for ``agent`` as the learner, when one ships).

    A preset tuned for another learner keeps only what does not depend on it: env, steps and the
    number of envs."""
    path = preset_path(env_id, agent)
    if path is None:
        return {"env": env_id}
    raw = load_yaml(path)
    if agent is not None and parse_agent_names(raw.get("agents", RunConfig.agents))[0] != agent:
        trainer = {key: value for key, value in (raw.get("trainer") or {}).items() if key in ("num_envs", "vectorization")}
        raw = {"env": raw.get("env", env_id), "steps": raw.get("steps", RunConfig.steps), "trainer": trainer}
    return raw


def build_agents(config: RunConfig) -> list[Agent]:
    return [AGENTS[name](**config.agent_options.get(name, {})) for name in config.agent_names]


def make_trainer(config: RunConfig, loggers: list | tuple = ()) -> Trainer:
    """The environments, agents and Trainer a config describes."""
    envs = make_envs(config.env, config.trainer.num_envs, config.trainer.vectorization)
    trainer = Trainer(
        envs,
        build_agents(config),
        seed=config.seed,
        device=config.device,
        total_steps=config.steps,
        loggers=loggers,
        log_interval=config.trainer.log_interval,
        **config.trainer.schedule_settings(),
    )
    trainer.run_config = config_to_dict(config)
    return trainer


def _agent_options(name: str, options: Any, source: str) -> dict[str, Any]:
    where = f"{source}: {name}"
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping of option names to values")
    init = AGENTS[name].__init__
    parameters = {p.name: p for p in inspect.signature(init).parameters.values() if p.kind == p.KEYWORD_ONLY}
    hints = typing.get_type_hints(init)
    checked = {}
    for key, value in options.items():
        if key not in parameters:
            raise ConfigError(f"{where}: unknown option {key!r}{_did_you_mean(key, parameters)}")
        checked[key] = _check_type(f"{where}.{key}", value, hints.get(key, Any))
    return checked


def _dataclass_from_dict(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r}{_did_you_mean(key, names)}")
        checked[key] = _check_type(f"{where}.{key}", value, hints[key])
    return cls(**checked)


def _check_type(where: str, value: Any, expected: Any) -> Any:
    """Return ``value`` (lists become tuples where a tuple is expected) or raise ConfigError."""
    if expected is Any:
        return value
    if expected in (int, float) and isinstance(value, str):
        value = _number_from_text(value)  # YAML reads 1e6 (no dot) as a string
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(expected):
            try:
                return _check_type(where, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(expected)}, got {value!r}")
    if expected is type(None):
        if value is None:
            return None
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 1e6 in YAML is a float
            return int(value)
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            (item_type, *_) = typing.get_args(expected) or (Any,)
            return tuple(_check_type(where, item, item_type) for item in value)
    elif isinstance(expected, type) and isinstance(value, expected):
        return value
    raise ConfigError(f"{where}: expected {_type_name(expected)}, got {value!r}")


def _number_from_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", str(expected))


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
