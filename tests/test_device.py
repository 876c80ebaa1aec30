"""Device handling: CPU always; CUDA end to end where a GPU exists (skipped otherwise)."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import A2C, DQN, ICM, PPO, RND, SAC, Trainer
from rl_agents.training.learner import resolve_device


def test_auto_device_resolves_to_an_available_one() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised on machines without CUDA")
def test_requesting_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="device 'cuda' was requested but torch.cuda.is_available\\(\\) is False"):
        resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ppo_and_rnd_train_end_to_end_on_cuda(tmp_path) -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    ppo, rnd = PPO(normalize_obs=True), RND()
    trainer = Trainer(envs, [ppo, rnd], device="cuda", num_steps=32)
    trainer.train(4 * 32 * 3, progress=False)
    assert all(p.device.type == "cuda" for p in trainer.optimizer.param_groups[0]["params"])
    assert trainer.num_updates == 3 and "rnd/loss/predictor" in trainer.metrics
    checkpoint = trainer.save(tmp_path)
    restored = Trainer(
        gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync"),
        [PPO(normalize_obs=True), RND()],
        device="cuda",
        num_steps=32,
    )
    restored.load_state(checkpoint)
    for a, b in zip(trainer.agents[0].parameters(), restored.agents[0].parameters()):
        assert torch.equal(a, b)


def _all_on(trainer: Trainer, device_type: str) -> bool:
    return all(p.device.type == device_type for agent in trainer.agents for p in agent.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "env_id, make_agents, schedule",
    [
        ("CartPole-v1", lambda: [DQN(), RND()], {"learning_starts": 64, "train_frequency": 4, "batch_size": 32}),
        ("Pendulum-v1", lambda: [SAC(), ICM()], {"learning_starts": 64, "batch_size": 32}),
        ("CartPole-v1", lambda: [A2C(), ICM()], {}),
    ],
    ids=["dqn+rnd", "sac+icm", "a2c+icm"],
)
def test_every_agent_trains_and_resumes_on_cuda(tmp_path, env_id, make_agents, schedule) -> None:
    def build() -> Trainer:
        envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync")
        return Trainer(envs, make_agents(), device="cuda", seed=0, **schedule)

    trainer = build()
    trainer.train(256, progress=False)
    assert _all_on(trainer, "cuda") and trainer.num_updates > 0
    assert all(np.isfinite(value) for value in trainer.metrics.values())
    restored = build()
    restored.load_state(trainer.save(tmp_path))
    for a, b in zip(trainer.agents[0].parameters(), restored.agents[0].parameters()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_command_line_trains_on_cuda(tmp_path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_agents.cli",
            "train",
            "--env",
            "CartPole-v1",
            "--agents",
            "ppo+rnd",
            "--steps",
            "2048",
            "--device",
            "cuda",
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "metrics.csv").exists()
