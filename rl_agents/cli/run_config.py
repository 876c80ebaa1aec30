"""The run config a ``train`` or ``describe`` command line describes: a config file or the env's
preset, then flags, then ``--set`` overrides; and the default run directory."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rl_agents.agents import AGENTS
from rl_agents.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_dict,
    load_preset,
    load_yaml,
    parse_agent_names,
    preset_fits,
    preset_path,
    with_num_envs,
)
from rl_agents.config.compositions import COMPOSITIONS, learner_name


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Config file, else the env's preset, then flags, then --set overrides."""
    if args.config:
        raw = load_yaml(args.config)
        source = origin = args.config
    else:
        env_id = args.env or "CartPole-v1"
        learner = _learner(args.agents) if getattr(args, "agents", None) else None
        raw = load_preset(env_id, learner)
        source, origin = _preset_origin(env_id, learner)
    if getattr(args, "env", None):
        raw["env"] = args.env
    if getattr(args, "agents", None):
        names = parse_agent_names(args.agents, source="command line")
        if not args.config:  # a preset's sections for agents not requested are dropped
            raw = {key: value for key, value in raw.items() if key not in AGENTS or key in names}
        raw["agents"] = args.agents
    for flag in ("steps", "seed", "device", "checkpoints", "video_every", "stop_at_return"):  # each sets its key
        if getattr(args, flag, None) is not None:
            raw[flag] = getattr(args, flag)
    for pair in getattr(args, "env_kwargs", None) or []:  # --env-kwarg KEY=VALUE: as --set env_kwargs.KEY=VALUE
        if "=" not in pair or not pair.split("=", 1)[0].strip():
            raise ConfigError(f"--env-kwarg {pair!r}: expected KEY=VALUE, e.g. max_episode_steps=200")
        raw = apply_overrides(raw, [f"env_kwargs.{pair}"])
    if getattr(args, "num_envs", None) is not None:
        raw = apply_overrides(raw, [f"trainer.num_envs={args.num_envs}"])
    if getattr(args, "workers", None) is not None:
        raw = apply_overrides(raw, [f"distributed.workers={args.workers}"])
    raw = with_ray_address(apply_overrides(raw, args.overrides), args)
    config = config_from_dict(raw, source=source)
    config.origin = origin
    return with_num_envs(config)


def _learner(agents: str) -> str:
    """The name presets are looked up by: the first agent, or a composition's name (``rainbow``)."""
    first = learner_name(agents)
    return first if first in COMPOSITIONS else parse_agent_names(agents, source="command line")[0]


def _preset_origin(env_id: str, learner: str | None) -> tuple[str, str]:
    """(what config errors name, what the run's settings line says) for a run without a config file."""
    path = preset_path(env_id, learner)
    if path is None:
        return "defaults", f"no preset for {env_id}: the agents' defaults"
    raw = load_yaml(path)
    if not preset_fits(raw, learner):
        return f"preset {path.stem}", (
            f"no preset for {env_id} with {learner} (preset {path.stem} is for {raw.get('agents', 'ppo')}; "
            f"its env and steps are kept): {learner}'s defaults"
        )
    return f"preset {path.stem}", f"preset {path.stem} ({path.name})"


def with_ray_address(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """--ray-address, taken as it is (not parsed as YAML like --set values)."""
    address = getattr(args, "ray_address", None)
    if address is None:
        return raw
    section = raw.get("distributed")
    return {**raw, "distributed": {**(section if isinstance(section, dict) else {}), "ray_address": address}}


def default_run_dir(config: RunConfig) -> Path:
    env = config.env.replace("/", "_")
    return Path("runs") / f"{env}_{config.agents}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
