"""Device handling: CPU always; CUDA end to end where a GPU exists (skipped otherwise)."""

import gymnasium as gym
import pytest
import torch

from rl_agents import PPO, RND, Trainer
from rl_agents.trainer import resolve_device


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
    restored = Trainer(gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync"), [PPO(normalize_obs=True), RND()], device="cuda", num_steps=32)
    restored.load_state(checkpoint)
    for a, b in zip(trainer.agents[0].parameters(), restored.agents[0].parameters()):
        assert torch.equal(a, b)
