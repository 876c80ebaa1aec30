"""Every shipped preset: its header says where its numbers come from, the command line finds it, and
the trainer the command line builds from it trains (one update, on a schedule shrunk through --set)."""

from __future__ import annotations

import importlib.util
import re

import gymnasium as gym
import pytest
import torch

from rl_agents.agents import AGENTS
from rl_agents.cli.main import build_parser
from rl_agents.cli.run_config import resolve_config
from rl_agents.config import build_agents, list_presets, load_yaml, preset_path
from rl_agents.config.compositions import COMPOSITIONS, expand_agent_names
from rl_agents.core.schedules import ReplaySchedule
from rl_agents.envs.masked import base_of
from rl_agents.training import make_trainer

PRESETS = list_presets()

# Where a preset's numbers may come from, named in its leading comment.
SOURCES = re.compile(r"rl-zoo3|CleanRL|Burda et al\.|Obando-Ceron & Castro|Andrychowicz et al\.|SB3's HER")
# Presets with this library's own settings (no outside source to name).
OWN_SETTINGS = {"MountainCar-v0"}
# A translated rl-zoo3 entry names its file and entry on the first line.
ZOO_HEADER = re.compile(r"^# .* rl-zoo3 hyperparams/(?P<algo>\w+)\.yml, entry (?P<entry>[\w-]+)")

# One small update: a short rollout, or a few gradient steps soon after the start.
ON_POLICY_SMOKE = ["trainer.num_steps=8", "trainer.num_epochs=1", "trainer.num_minibatches=2"]
REPLAY_SMOKE = [
    "trainer.buffer_size=64",
    "trainer.batch_size=8",
    "trainer.learning_starts=2",
    "trainer.train_frequency=2",
    "trainer.gradient_steps=2",
    "trainer.target_update_interval=1",
]
MAX_ENVS = 2


def env_and_agent(name: str) -> tuple[str, str | None]:
    """``CartPole-v1.dqn`` -> (``CartPole-v1``, ``dqn``); ``CartPole-v1`` -> (``CartPole-v1``, None);
    ``MinAtar_Breakout-v1.rainbow`` -> (``MinAtar/Breakout-v1``, ``rainbow``): the env id the file's name
    stands for (``/`` is ``_`` in file names) and the learner or composition it is for."""
    env_id, _, suffix = name.rpartition(".")
    if not (env_id and (suffix in AGENTS or suffix in COMPOSITIONS)):
        env_id, suffix = name, None
    return load_yaml(preset_path(name))["env"], suffix


def missing_family(env_id: str) -> str | None:
    """The module an env's family needs when it is not installed (None: installed, or built in)."""
    if env_id.startswith("MiniGrid"):
        module = "minigrid"
    elif env_id.startswith("MinAtar/"):
        module = "minatar"
    elif "NoFrameskip" in env_id or env_id.startswith("ALE/"):
        module = "ale_py"
    elif env_id.startswith("Fetch"):
        module = "gymnasium_robotics"
    else:
        entry_point = str(gym.spec(base_of(env_id) or env_id).entry_point)  # a NoVel id: its base env's
        module = "mujoco" if "mujoco" in entry_point else "Box2D" if "box2d" in entry_point else None
    return module if module is not None and importlib.util.find_spec(module) is None else None


def leading_comment(name: str) -> list[str]:
    lines = preset_path(name).read_text().splitlines()
    comment = []
    for line in lines:
        if not line.startswith("#"):
            break
        comment.append(line)
    return comment


@pytest.mark.parametrize("name", PRESETS)
def test_preset_header_names_its_source(name: str) -> None:
    comment = leading_comment(name)
    assert comment, f"{name}: the file must start with a comment saying where its numbers come from"
    if name not in OWN_SETTINGS:
        assert SOURCES.search(" ".join(comment)), f"{name}: the header names no source: {comment[0]}"
    zoo = ZOO_HEADER.match(comment[0])
    if zoo is not None:  # a translated rl-zoo3 entry: the file it cites is the preset's learner's
        learner = load_yaml(preset_path(name))["agents"]
        assert zoo["algo"] == learner, f"{name}: cites hyperparams/{zoo['algo']}.yml for agents {learner!r}"
        assert "Differences" in " ".join(comment), f"{name}: the header must say what differs from rl-zoo3"


@pytest.mark.parametrize("name", PRESETS)
def test_command_line_finds_the_preset(name: str) -> None:
    env_id, agent = env_and_agent(name)
    raw = load_yaml(preset_path(name))
    file_env = name.removesuffix(f".{agent}") if agent else name
    assert env_id.replace("/", "_") == file_env, f"{name}: presets are looked up by env id, so its env must be it"
    assert preset_path(env_id, agent) == preset_path(name)
    if agent is not None:
        assert raw["agents"].split("+")[0] == agent, f"{name}: an <env>.<agent> preset must have that learner"
    else:  # the env's own preset is also the one for its learner, unless <env>.<learner>.yaml ships
        learner = raw["agents"].split("+")[0]
        assert preset_path(env_id, learner) in (preset_path(name), preset_path(f"{env_id}.{learner}"))


def _train_argv(env_id: str, agent: str | None, overrides: list[str], *flags: str) -> list[str]:
    argv = ["train", "--env", env_id, *(["--agents", agent] if agent else []), *flags]
    for override in overrides:
        argv += ["--set", override]
    return argv


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_one_update(name: str) -> None:
    env_id, agent = env_and_agent(name)
    missing = missing_family(env_id)
    if missing is not None:
        pytest.skip(f"{env_id} needs the {missing!r} module, which is not installed")
    if agent is not None:  # the preset's whole composition (rl_agents_BitFlip-v0.sac: sac+her)
        agent = load_yaml(preset_path(name))["agents"]
    parser = build_parser()
    preset = resolve_config(parser.parse_args(_train_argv(env_id, agent, [])))
    # the preset's learner, not stripped (a composition such as rainbow stands for its agents)
    assert preset.agents == expand_agent_names(load_yaml(preset_path(name))["agents"])
    acting = next(built for built in build_agents(preset) if built.acts)
    replay = isinstance(acting.suggested_schedule(), ReplaySchedule)
    num_envs = min(preset.trainer.num_envs or MAX_ENVS, MAX_ENVS)
    # Off-policy: training starts once more than learning_starts (2) steps were taken, after 1-2 phases of 2.
    steps = (4 if replay else 8) * num_envs
    flags = ("--num-envs", str(num_envs), "--steps", str(steps))
    config = resolve_config(
        parser.parse_args(_train_argv(env_id, agent, REPLAY_SMOKE if replay else ON_POLICY_SMOKE, *flags))
    )
    trainer = make_trainer(config)
    try:
        before = torch.nn.utils.parameters_to_vector([p for a in trainer.agents for p in a.parameters()]).clone()
        trainer.train(config.steps, progress=False, quiet=True)
        after = torch.nn.utils.parameters_to_vector([p for a in trainer.agents for p in a.parameters()])
        assert trainer.global_step >= steps
        assert trainer.num_updates >= 1
        if replay:
            assert trainer.learner.total_gradient_steps >= 1
        assert not torch.equal(before, after), f"{name}: no parameter changed in the first update"
        assert torch.isfinite(after).all()
    finally:
        trainer.envs.close()
