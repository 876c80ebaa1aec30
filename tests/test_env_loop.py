"""The environment loop: Gymnasium 1.x autoreset in both modes, and the hand-written loop."""

import importlib.util
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode

from rl_agents import PPO, Trainer
from tests.helpers import counting_envs


def run_steps(trainer: Trainer, envs: gym.vector.VectorEnv, steps: int) -> None:
    obs, _ = envs.reset(seed=0)
    for _ in range(steps):
        action = trainer.act(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        trainer.observe(obs, reward, terminated, truncated, info)


def test_next_step_autoreset_marks_the_reset_step_invalid_and_keeps_final_obs() -> None:
    envs = counting_envs(2, [3, 2], terminate=False, mode=AutoresetMode.NEXT_STEP)
    trainer = Trainer(envs, [PPO()], num_steps=6)
    run_steps(trainer, envs, 6)
    stored = trainer.collector.storage.batch()
    assert stored["next_obs"][:, 0].tolist() == [[1, 0], [2, 0], [3, 0], [0, 1], [1, 1], [2, 1]]
    assert stored["valid"][:, 0].tolist() == [True, True, True, False, True, True]
    assert stored["truncated"][:, 0].tolist() == [False, False, True, False, False, False]
    assert stored["valid"][:, 1].tolist() == [True, True, False, True, True, False]
    # Episode returns count real transitions only: 3 steps and 2 steps of reward 1.
    assert sorted(trainer.episodes.returns) == [2.0, 2.0, 3.0]


def test_same_step_autoreset_stores_the_final_observation_as_next_obs() -> None:
    envs = counting_envs(1, [3], terminate=False, mode=AutoresetMode.SAME_STEP)
    trainer = Trainer(envs, [PPO()], num_steps=6)
    run_steps(trainer, envs, 6)
    stored = trainer.collector.storage.batch()
    assert stored["next_obs"][:, 0].tolist() == [[1, 0], [2, 0], [3, 0], [1, 1], [2, 1], [3, 1]]
    assert stored["obs"][:, 0].tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    assert stored["valid"].all()
    assert trainer.episodes.returns == [3.0, 3.0]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("terminate", [False, True])
def test_ppo_bootstraps_truncation_from_the_final_observation_only(mode: AutoresetMode, terminate: bool) -> None:
    envs = counting_envs(1, [3], terminate=terminate, mode=mode)
    ppo = PPO()
    trainer = Trainer(envs, [ppo], num_steps=6)
    run_steps(trainer, envs, 6)
    batch = trainer.collector.storage.batch()
    ppo.preprocess(batch)
    with torch.no_grad():
        final_value = ppo.value(torch.tensor([[3.0, 0.0]]))[0, 0]
    value_at_end = batch["values"][2, 0, 0]
    # Step 2 ends the first episode. Advantage of step 2 = r + gamma * V(final) * (not terminated) - V(s2).
    expected = 1.0 + (0.0 if terminate else 0.99 * final_value) - value_at_end
    assert float(batch["advantages"][2, 0]) == pytest.approx(float(expected), rel=1e-5)


def _load_example() -> object:
    path = Path(__file__).resolve().parents[1] / "examples" / "run.py"
    spec = importlib.util.spec_from_file_location("example_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hand_written_loop_equals_trainer_train() -> None:
    steps = 4 * 128 * 3
    by_hand = _load_example().run(steps, seed=5)
    envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    wrapped = Trainer(envs, [PPO()], seed=5).train(steps, progress=False)
    for a, b in zip(by_hand.agents[0].parameters(), wrapped.agents[0].parameters()):
        assert torch.equal(a, b)
    assert by_hand.episodes.returns == wrapped.episodes.returns
    assert by_hand.num_updates == wrapped.num_updates == 3


def test_observe_without_act_is_a_clear_error() -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()])
    obs, _ = envs.reset(seed=0)
    with pytest.raises(RuntimeError, match="without a preceding act"):
        trainer.observe(obs, [0.0, 0.0], [False, False], [False, False], {})


def test_evaluate_runs_whole_episodes_without_moving_normalizer_statistics() -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    ppo = PPO(normalize_obs=True)
    trainer = Trainer(envs, [ppo], num_steps=16)
    trainer.train(64, progress=False)
    count_before = float(ppo.obs_rms.count)
    result = trainer.evaluate(
        3, envs=gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync"), deterministic=True
    )
    assert len(result.returns) == 3 and all(r >= 8 for r in result.returns)
    assert result.mean == pytest.approx(sum(result.returns) / 3)
    assert float(ppo.obs_rms.count) == count_before and ppo.training
