"""``rl-agents eval`` (deterministic by default), ``rl-agents export`` and the deployment example, run for
real in subprocesses on a tiny run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_agents import Policy
from rl_agents.evaluation import evaluate_agent

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--steps", "1024", "--num-envs", "2", "--set", "trainer.num_steps=128", "--seed", "2", "--quiet"]
RESULT = re.compile(r"mean return over (\d+) episodes: ([-\d.]+) \+- ([\d.]+) \((.*)\)")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def rl_agents(*args: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "rl_agents.cli", *args)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "cartpole"
    result = rl_agents("train", "--env", "CartPole-v1", "--agents", "ppo", *TINY, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def evaluation(result: subprocess.CompletedProcess) -> tuple[float, str]:
    assert result.returncode == 0, result.stderr
    found = RESULT.search(result.stdout)
    assert found, result.stdout
    return float(found.group(2)), found.group(4)


def test_eval_acts_deterministically_by_default_and_says_so(trained_run: Path) -> None:
    default = evaluation(rl_agents("eval", str(trained_run), "--episodes", "4"))
    explicit = evaluation(rl_agents("eval", str(trained_run), "--episodes", "4", "--deterministic"))
    sampled = evaluation(rl_agents("eval", str(trained_run), "--episodes", "4", "--stochastic"))
    assert default == explicit and default[1] == "deterministic actions; --stochastic samples"
    assert sampled[1] == "sampled actions, --stochastic" and sampled[0] != default[0]
    # The same number as the Python API gives: the run's newest checkpoint, greedy actions, the same seed.
    policy = Policy.load(trained_run)
    envs = policy.make_env(2)
    reference = evaluate_agent(policy.agent, envs, 4, deterministic=True, seed=12345)
    assert default[0] == pytest.approx(round(reference.mean, 2))
    both = rl_agents("eval", str(trained_run), "--deterministic", "--stochastic")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_writes_a_checked_file(trained_run: Path, fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"policy.{fmt}"
    result = rl_agents("export", str(trained_run), "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"to {out} ({fmt}); on 1000 random observations its actions are equal predict's" in result.stdout
    policy = Policy.load(trained_run)
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    if fmt == "torchscript":
        with pytest.warns(DeprecationWarning):  # TorchScript is deprecated upstream; it still loads
            actual = torch.jit.load(str(out))(torch.as_tensor(obs)).numpy()
    else:
        import onnxruntime

        actual = onnxruntime.InferenceSession(str(out)).run(None, {"obs": obs})[0]
    np.testing.assert_array_equal(actual, policy.predict(obs)[0])


def test_export_defaults_into_the_run_directory_and_refuses_bad_input(trained_run: Path) -> None:
    result = rl_agents("export", str(trained_run), "--format", "torchscript", "--check", "10")
    assert result.returncode == 0, result.stderr
    assert (trained_run / "policy.pt").is_file() and "on 10 random observations" in result.stdout
    missing = rl_agents("export", str(trained_run / "nope"))
    assert missing.returncode == 2 and f"run directory '{trained_run / 'nope'}' does not exist" in missing.stderr
    negative = rl_agents("export", str(trained_run), "--check", "-1")
    assert negative.returncode == 2 and "--check must be >= 0, got -1" in negative.stderr


def test_the_deployment_example_runs_on_a_trained_run(trained_run: Path) -> None:
    result = run(sys.executable, "examples/deploy.py", str(trained_run), "--episodes", "2")
    assert result.returncode == 0, result.stderr
    returns = re.findall(r"episode (\d): return ([\d.]+)", result.stdout)
    assert [episode for episode, _ in returns] == ["0", "1"] and all(float(value) >= 8 for _, value in returns)
