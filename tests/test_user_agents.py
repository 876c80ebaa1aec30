"""A user's own agent is first-class: named by import path, by a config's ``class:``, or by an
installed plugin's entry point, it trains, checkpoints, resumes bit-exactly, evaluates and describes
like a shipped one; a run built in Python reloads with ``Trainer.load``; and a class named inside a
file being loaded is imported only when trusted.

The agents are the README's examples (``examples/count_bonus.py``, ``examples/next_obs_predictor.py``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from examples.count_bonus import CountBonus
from examples.next_obs_predictor import NextObsPredictor
from rl_agents import DQN, PPO, Trainer
from rl_agents.checkpointing import CheckpointError, read_checkpoint
from rl_agents.cli.describe import describe_trainer
from rl_agents.config import ConfigError, config_from_dict, config_to_dict
from rl_agents.config.registry import AgentImports, registered_agents, resolve_agent_class
from rl_agents.envs import make_envs

pytestmark = pytest.mark.xdist_group("user_agents")

REPO = Path(__file__).resolve().parents[1]
BONUS = "examples.count_bonus:CountBonus"
SMALL = ["--env", "CartPole-v1", "--seed", "1", "--quiet", "--set", "trainer.num_envs=2"]
SMALL += ["--set", "trainer.num_steps=64", "--steps", "512", "--checkpoints", "2"]
NEWEST, OLDER = "step_000000512", "step_000000256"


def cli(*args: str, site: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    path = f"{site}:{REPO}" if site else str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "rl_agents.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def agent_tensors(checkpoint: Path) -> dict[str, dict[str, torch.Tensor]]:
    _, tree = read_checkpoint(checkpoint)
    return tree["agents"]


def assert_same_agents(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            left, right = a[name][key], b[name][key]
            same = torch.equal(left, right) if isinstance(left, torch.Tensor) else left == right
            assert same, f"{name}/{key}"


def resume_from_older(run: Path, *extra: str, site: Path | None = None) -> subprocess.CompletedProcess:
    """A copy of ``run`` without its newest checkpoint, resumed to the end."""
    copy = run.parent / f"{run.name}_resumed"
    shutil.copytree(run, copy, symlinks=True)
    shutil.rmtree(copy / "checkpoints" / NEWEST)
    (copy / "checkpoints" / "latest").unlink(missing_ok=True)
    result = cli("train", "--resume", str(copy), *extra, site=site)
    assert result.returncode == 0, result.stderr
    assert f"from {OLDER} at step 256" in result.stderr
    return result


def train_then_check(run: Path, *train_args: str, site: Path | None = None, trusted: bool = False) -> None:
    """Train, resume from the older checkpoint bit-exactly, evaluate and describe a user agent's run."""
    result = cli("train", *train_args, *SMALL, "--out", str(run), site=site)
    assert result.returncode == 0, result.stderr
    trust = [] if trusted else ["--trust-code"]
    if not trusted:  # a run directory names the class: importing it needs the user's word
        refused = cli("train", "--resume", str(run), "--steps", "768", site=site)
        assert refused.returncode == 2 and "--trust-code" in refused.stderr, refused.stderr
        assert f"agent class {BONUS!r} is neither built in nor a registered entry point" in refused.stderr
        # eval builds only the acting agent (a shipped PPO here): the bonus's class is never imported.
        evaluated = cli("eval", str(run), "--episodes", "1", site=site)
        assert evaluated.returncode == 0 and "mean return over 1 episodes" in evaluated.stdout, evaluated.stderr
    resume_from_older(run, *trust, site=site)
    resumed = run.parent / f"{run.name}_resumed"
    assert_same_agents(agent_tensors(resumed / "checkpoints" / NEWEST), agent_tensors(run / "checkpoints" / NEWEST))
    _, tree = read_checkpoint(run / "checkpoints" / NEWEST)
    assert len(tree["agents"]["count_bonus"]["_extra_state"]["counts"]) > 10  # the visit counts were saved
    evaluated = cli("eval", str(run), "--episodes", "2", *trust, site=site)
    assert evaluated.returncode == 0 and "mean return over 2 episodes" in evaluated.stdout, evaluated.stderr


# ---------------------------------------------------------------------------------------------- naming a class
def test_an_import_path_names_the_class_and_the_agent_takes_its_default_name() -> None:
    config = config_from_dict({"agents": f"ppo+{BONUS}", "count_bonus": {"beta": 0.02}})
    assert config.agent_names == ["ppo", "count_bonus"]
    assert config_to_dict(config)["count_bonus"] == {"class": BONUS, "beta": 0.02}
    assert config_to_dict(config)["agents"] == "ppo+count_bonus"


def test_a_section_with_class_names_an_agent_of_any_name() -> None:
    config = config_from_dict({"agents": "dqn+explore", "explore": {"class": BONUS, "beta": 0.5}})
    assert config.agent_names == ["dqn", "explore"]
    assert config_from_dict(config_to_dict(config)) == config  # the written config names it again


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"agents": "ppo+count_bonus", "count_bonus": {"class": BONUS, "beta": "x"}}, "count_bonus.beta: expected"),
        ({"agents": f"ppo+{BONUS}", "count_bonus": {"betta": 1}}, "unknown option 'betta' (did you mean 'beta'?)"),
        ({"agents": "ppo+nope.module:Bonus"}, "cannot import module 'nope.module' for 'nope.module:Bonus'"),
        ({"agents": "ppo+examples.count_bonus:Nope"}, "module 'examples.count_bonus' has no 'Nope'"),
        ({"agents": "ppo+examples.count_bonus:torch"}, "is module, not a subclass of rl_agents.Agent"),
        ({"agents": "ppo+b", "b": {"class": BONUS, "name": "c"}}, "an agent's name is its section's name"),
        ({"agents": f"ppo+{BONUS}+{BONUS}"}, "two agents are named 'count_bonus'"),
        ({"agents": "ppo+steps", "steps": {"class": BONUS}}, "agent name 'steps' cannot be used"),
        ({"agents": "ppo+cuont"}, "unknown agent 'cuont'"),
    ],
)
def test_bad_agent_references_are_refused_by_name(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_dict(raw)


def test_a_file_being_loaded_may_not_import_a_class_unless_trusted() -> None:
    raw = {"agents": "ppo+count_bonus", "count_bonus": {"class": BONUS}}
    with pytest.raises(ConfigError, match="pass --trust-code"):
        config_from_dict(raw, imports=AgentImports())
    assert config_from_dict(raw, imports=AgentImports.of(classes=[CountBonus])).resolved["count_bonus"] is CountBonus
    assert config_from_dict(raw, imports=AgentImports(trust=True)).resolved["count_bonus"] is CountBonus
    with pytest.raises(ConfigError, match="environment 'tests.own_envs:Corridor-v0' imports and runs module"):
        config_from_dict({"env": "tests.own_envs:Corridor-v0"}, imports=AgentImports())


# ---------------------------------------------------------------------------------------------- Python API
def python_trainer(total_steps: int = 512) -> Trainer:
    agents = [PPO(), CountBonus(beta=0.05), NextObsPredictor(hidden=16)]
    return Trainer(make_envs("CartPole-v1", 2), agents, seed=1, num_steps=64, total_steps=total_steps)


def test_a_python_built_run_reloads_with_its_agents_and_resumes_bit_exactly(tmp_path: Path) -> None:
    full = python_trainer()
    full.train(512, progress=False)
    half = python_trainer()
    half.train(512, progress=False, stop_when=lambda trainer: trainer.global_step >= 256)
    path = half.save(tmp_path / "checkpoints")

    with pytest.raises(CheckpointError, match=f"agent 'count_bonus': agent class '{BONUS}' is neither built in"):
        Trainer.load(path)  # a checkpoint is data: the class it names is not imported without trust
    reloaded = Trainer.load(path, agent_classes=[CountBonus, NextObsPredictor])
    assert [agent.name for agent in reloaded.agents] == ["ppo", "count_bonus", "predictor"]
    for before, after in zip(half.agents, reloaded.agents):
        assert type(before) is type(after)
        for key, value in before.state_dict().items():
            assert torch.equal(value, after.state_dict()[key]) if isinstance(value, torch.Tensor) else True
    assert reloaded.agents[1].counts == half.agents[1].counts and reloaded.agents[1].beta == 0.05
    assert reloaded.schedule == half.schedule and reloaded.global_step == 256

    reloaded.train(512, progress=False)
    for a, b in zip(full.agents, reloaded.agents):
        assert_same_agents({"x": a.state_dict()}, {"x": b.state_dict()})
    assert full.agents[1].counts == reloaded.agents[1].counts

    trusted = Trainer.load(path, trust_code=True)  # imports the recorded import paths
    assert type(trusted.agents[1]) is CountBonus
    result = reloaded.evaluate(2, envs=make_envs("CartPole-v1", 2))
    assert result.mean > 0
    assert "count_bonus" in _rendered(describe_trainer(reloaded))


def test_a_composition_with_dqn_trains_and_reloads(tmp_path: Path) -> None:
    agents = [DQN(), CountBonus(), NextObsPredictor()]
    trainer = Trainer(make_envs("CartPole-v1", 2), agents, seed=1, learning_starts=64, buffer_size=1000)
    trainer.train(256, progress=False)
    path = trainer.save(tmp_path / "checkpoints")
    reloaded = Trainer.load(path, agent_classes=[CountBonus, NextObsPredictor])
    assert reloaded.agents[1].counts == trainer.agents[1].counts
    # The predictor declares no lr: it trains with the acting agent's.
    rates = {group["name"]: group["lr"] for group in reloaded.optimizer.param_groups}
    assert rates["predictor"] == rates["dqn"] == DQN().lr


def test_constructor_arguments_a_checkpoint_cannot_record_are_refused_at_save(tmp_path: Path) -> None:
    trainer = Trainer(make_envs("CartPole-v1", 2), [PPO(), CountBonus(beta=torch.tensor(0.01))], seed=1, num_steps=8)
    trainer.train(16, progress=False)
    with pytest.raises(ValueError, match=r"agent 'count_bonus' \(examples.count_bonus:CountBonus\): constructor "):
        trainer.save(tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def _rendered(renderable) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


# ---------------------------------------------------------------------------------------------- command line
def test_agents_flag_with_an_import_path(tmp_path: Path) -> None:
    train_then_check(tmp_path / "run", "--agents", f"ppo+{BONUS}", "--set", "count_bonus.beta=0.02")
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["agents"] == "ppo+count_bonus" and config["count_bonus"] == {"class": BONUS, "beta": 0.02}
    described = cli("describe", "--agents", f"ppo+{BONUS}")
    assert described.returncode == 0 and "count_bonus" in described.stdout and "CountBonus" in described.stdout


def test_a_yaml_section_with_class(tmp_path: Path) -> None:
    config = tmp_path / "bonus.yaml"
    config.write_text(yaml.safe_dump({"agents": "ppo+count_bonus", "count_bonus": {"class": BONUS, "beta": 0.02}}))
    train_then_check(tmp_path / "run", str(config))
    described = cli("describe", str(config))
    assert described.returncode == 0 and "reward/count" in described.stdout, described.stderr


def plugin_site(tmp_path: Path) -> Path:
    """An installed distribution registering the count bonus under the entry-point group."""
    info = tmp_path / "site" / "count_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: count-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[rl_agents.agents]\ncount_bonus = {BONUS}\n")
    return tmp_path / "site"


def test_an_entry_point_names_an_agent_that_reloads_without_trust(tmp_path: Path) -> None:
    site = plugin_site(tmp_path)
    train_then_check(tmp_path / "run", "--agents", "ppo+count_bonus", site=site, trusted=True)
    listed = cli("list", site=site)
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "count_bonus" in line)
    assert "entry point of count-plugin 1.0" in row and "no" in row
    described = cli("describe", "--agents", "ppo+count_bonus", site=site)
    assert described.returncode == 0 and "CountBonus" in described.stdout, described.stderr


def test_entry_points_resolve_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site(tmp_path)))
    assert resolve_agent_class("count_bonus", AgentImports()) is CountBonus
    origins = {agent.name: agent.origin for agent in registered_agents()}
    assert origins["ppo"] == "built-in" and origins["count_bonus"] == "entry point of count-plugin 1.0"
    # A checkpoint naming the class by its import path needs no trust: the plugin's code is installed.
    assert resolve_agent_class(BONUS, AgentImports()) is CountBonus


def test_eval_of_a_python_built_checkpoint(tmp_path: Path) -> None:
    trainer = python_trainer()
    trainer.train(128, progress=False)
    trainer.save(tmp_path / "checkpoints")
    # Only the acting agent (a shipped PPO) is rebuilt: the bonus named by import path is not imported.
    evaluated = cli("eval", str(tmp_path / "checkpoints"), "--episodes", "2")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "mean return over 2 episodes" in evaluated.stdout and "(step 128)" in evaluated.stdout


# ---------------------------------------------------------------------------------------------- own environments
def test_an_own_environment_with_kwargs_trains_resumes_and_evaluates(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = ["--env", "tests.own_envs:Corridor-v0", "--env-kwarg", "length=5"]
    result = cli("train", *env, "--agents", "ppo", *SMALL[2:], "--out", str(run))
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env"] == "tests.own_envs:Corridor-v0" and config["env_kwargs"] == {"length": 5}
    refused = cli("train", "--resume", str(run), "--steps", "768")
    assert refused.returncode == 2 and "environment 'tests.own_envs:Corridor-v0' imports and runs module" in (
        refused.stderr
    )
    assert cli("train", "--resume", str(run), "--env-kwarg", "length=6").returncode == 2  # fixed on resume
    resume_from_older(run, "--trust-code")
    resumed = run.parent / f"{run.name}_resumed"
    assert_same_agents(agent_tensors(resumed / "checkpoints" / NEWEST), agent_tensors(run / "checkpoints" / NEWEST))
    evaluated = cli("eval", str(run), "--episodes", "2", "--trust-code")
    assert evaluated.returncode == 0 and "mean return over 2 episodes" in evaluated.stdout, evaluated.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--env", "tests.own_envs:Corridor-v0", "--env-kwarg", "length=0"], "length must be at least 1, got 0"),
        (["--env", "CartPole-v1", "--env-kwarg", "lenght=3"], "unexpected keyword argument 'lenght'"),
        (["--env", "CartPole-v1", "--env-kwarg", "novalue"], "--env-kwarg 'novalue': expected KEY=VALUE"),
        (["--env", "nope_module:X-v0"], "cannot import module 'nope_module'"),
    ],
)
def test_env_construction_errors_are_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    result = cli("train", *flags, "--steps", "64", "--quiet", "--out", str(tmp_path / "run"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_resume_on_the_command_line_continues_a_python_built_run_bit_exactly(tmp_path: Path) -> None:
    full = python_trainer()
    full.train(512, progress=False)
    half = python_trainer()
    half.train(512, progress=False, stop_when=lambda trainer: trainer.global_step >= 256)
    half.save(tmp_path / "run" / "checkpoints")
    refused = cli("train", "--resume", str(tmp_path / "run"))
    assert refused.returncode == 2 and "--trust-code" in refused.stderr, refused.stderr
    result = cli("train", "--resume", str(tmp_path / "run"), "--trust-code")
    assert result.returncode == 0, result.stderr
    assert "no config.yaml; rebuilding the run from what step_000000256 recorded" in result.stderr
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["agents"] == "ppo+count_bonus+predictor" and config["count_bonus"] == {"class": BONUS, "beta": 0.05}
    resumed = agent_tensors(tmp_path / "run" / "checkpoints" / NEWEST)
    assert_same_agents(resumed, {agent.name: agent.state_dict() for agent in full.agents})
