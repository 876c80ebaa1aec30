"""The rl-agents command, run for real in subprocesses on tiny budgets."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

TINY = ["--steps", "1024", "--num-envs", "2", "--set", "trainer.num_steps=128", "--quiet"]


def rl_agents(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rl_agents.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "cartpole"
    result = rl_agents("train", "--env", "CartPole-v1", "--agents", "ppo+rnd", *TINY, "--out", str(run))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"run directory: {run}")
    return run


def test_train_writes_every_output_and_they_parse(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["agents"] == "ppo+rnd" and config["trainer"]["num_envs"] == 2 and "rnd" in config
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    assert len(rows) == 4  # 1024 steps / (2 envs x 128 steps)
    assert float(rows[-1]["global_step"]) == 1024
    assert {"ppo/loss/policy", "rnd/loss/predictor", "rnd/intrinsic_reward_mean", "ppo/value_loss/intrinsic"} <= rows[
        -1
    ].keys()
    assert any((trained_run / "tensorboard").glob("events.out.tfevents.*"))
    assert (trained_run / "checkpoints" / "step_000001024" / "tensors.safetensors").is_file()
    with Image.open(trained_run / "learning_curve.png") as image:
        image.load()
        assert image.size[0] > 100


def test_resume_continues_the_step_counter(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(trained_run), str(copy)], check=True)
    result = rl_agents("train", "--resume", str(copy), "--steps", "2048", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "at step 1024" in result.stderr
    rows = list(csv.DictReader((copy / "metrics.csv").open()))
    assert [float(row["global_step"]) for row in rows][-5:] == [1024, 1280, 1536, 1792, 2048]
    assert (copy / "checkpoints" / "step_000002048").is_dir()


def test_resume_takes_set_overrides_and_refuses_flags_that_would_change_the_run(
    trained_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(trained_run), str(copy)], check=True)
    refused = rl_agents("train", "--resume", str(copy), "--agents", "ppo", "--quiet")
    assert refused.returncode == 2 and "drop --agents" in refused.stderr and "Traceback" not in refused.stderr
    result = rl_agents("train", "--resume", str(copy), "--steps", "1536", "--set", "ppo.ent_coef=0.05", "--quiet")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((copy / "config.yaml").read_text())["ppo"]["ent_coef"] == 0.05
    result = rl_agents("train", "--resume", str(copy), "--steps", "2048", "--checkpoints", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load((copy / "config.yaml").read_text())["checkpoints"] == 2  # kept for later resumes


def test_eval_prints_a_mean_return(trained_run: Path) -> None:
    result = rl_agents("eval", str(trained_run), "--episodes", "3", "--deterministic")
    assert result.returncode == 0, result.stderr
    assert "mean return over 3 episodes:" in result.stdout
    mean = float(result.stdout.split(":")[1].split("+-")[0])
    assert mean > 0


def test_plot_writes_a_png_that_decodes(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = rl_agents("plot", str(trained_run), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG"


def test_describe_lists_both_agents_keys() -> None:
    result = rl_agents("describe", "--agents", "ppo+rnd", "--env", "CartPole-v1")
    assert result.returncode == 0, result.stderr
    for expected in ("reward/intrinsic", "next_obs", "predictor", "rnd (preprocess)", "intrinsic", "advantages"):
        assert expected in result.stdout


def test_list_shows_agents_and_presets() -> None:
    result = rl_agents("list")
    assert result.returncode == 0, result.stderr
    assert "ppo" in result.stdout and "rnd" in result.stdout and "CartPole-v1" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--set", "ppo.ent_coeff=1"], "unknown option 'ent_coeff' (did you mean 'ent_coef'?)"),
        (["train", "--set", "trainer.num_envs=many"], "trainer.num_envs: expected int or null, got 'many'"),
        (["train", "--agents", "ppo+rdn"], "unknown agent 'rdn' (did you mean 'rnd'?)"),
        (["train", "--env", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["train", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["eval", "no/such/run"], "run directory 'no/such/run' does not exist"),
        (["train", "--resume", "no/such/run"], "run directory 'no/such/run' does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(args: list[str], message: str, tmp_path: Path) -> None:
    result = rl_agents(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_corrupt_checkpoint_is_refused_clearly(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(trained_run), str(copy)], check=True)
    for tensors in (copy / "checkpoints").glob("step_*/tensors.safetensors"):
        tensors.write_bytes(tensors.read_bytes()[:100])
    result = rl_agents("eval", str(copy))
    assert result.returncode == 2
    assert "tensors.safetensors" in result.stderr and "Traceback" not in result.stderr


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    result = rl_agents("--debug", "train", "missing.yaml", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.parametrize(
    ("env", "agents", "settings"),
    [
        ("CartPole-v1", "dqn+rnd", ["--set", "trainer.learning_starts=200", "--set", "trainer.train_frequency=16"]),
        ("Pendulum-v1", "sac+rnd", ["--set", "trainer.learning_starts=200", "--set", "sac.hidden=[32]"]),
        ("CartPole-v1", "a2c+rnd", []),
        ("CartPole-v1", "ppo+icm", ["--set", "trainer.num_steps=64"]),
    ],
)
def test_train_runs_every_learner_with_a_bonus_from_the_command_line(
    env: str, agents: str, settings: list[str], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = rl_agents(
        "train",
        "--env",
        env,
        "--agents",
        agents,
        "--steps",
        "600",
        "--quiet",
        "--set",
        "trainer.log_interval=200",
        *settings,
        "--out",
        str(run),
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    learner, bonus = agents.split("+")
    for agent in (learner, bonus):
        assert any(key.startswith(f"{agent}/loss/") and row[key] for row in rows for key in row), agent
    assert (run / "learning_curve.png").is_file()


def test_a_learner_specific_preset_is_used_and_others_lose_their_schedule() -> None:
    from rl_agents.config import config_from_dict, load_preset

    assert config_from_dict(load_preset("CartPole-v1", "dqn")).trainer.schedule["train_frequency"] == 256
    # the CartPole preset is tuned for PPO: for SAC's sake only env and steps remain (SAC picks its envs)
    assert load_preset("CartPole-v1", "sac") == {"env": "CartPole-v1", "steps": 100000}


def test_an_on_policy_setting_for_an_off_policy_learner_is_a_one_line_error() -> None:
    result = rl_agents(
        "train", "--env", "CartPole-v1", "--agents", "dqn", "--set", "trainer.num_epochs=3", "--steps", "100"
    )
    assert result.returncode == 2
    assert "'num_epochs' does not apply: agent 'dqn' trains off-policy" in result.stderr
    assert "Traceback" not in result.stderr
