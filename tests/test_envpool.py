"""EnvPool as the vector env (``make_envs(..., "envpool")``); skipped where EnvPool is not installed
(it is an optional extra, not installed by ``make test``)."""

import numpy as np
import pytest

from rl_agents import PPO, Trainer
from rl_agents.envs import EnvCreationError, make_envs

envpool = pytest.importorskip("envpool")


def test_mujoco_envs_step_with_next_step_autoreset_and_report_episodes() -> None:
    envs = make_envs("Hopper-v5", 2, "envpool")
    assert envs.single_observation_space.shape == (11,) and envs.num_envs == 2
    envs.reset(seed=3)
    steps, info, reward = 0, {}, None
    while "_episode" not in info:  # Hopper falls within a few dozen steps of constant torques
        _, reward, _, _, info = envs.step(np.ones((2, 3), np.float32))
        steps += 1
    ended = int(np.flatnonzero(info["_episode"])[0])
    assert int(info["episode"]["l"][ended]) == steps
    _, reward, _, _, _ = envs.step(np.ones((2, 3), np.float32))
    assert reward[ended] == 0.0  # the step after an episode's end only resets that env


def test_atari_rewards_are_clipped_and_episode_returns_are_the_game_score() -> None:
    envs = make_envs("BreakoutNoFrameskip-v4", 2, "envpool")
    assert envs.single_observation_space.shape == (4, 84, 84)
    envs.reset(seed=0)
    rewards = [envs.step(envs.action_space.sample())[1] for _ in range(300)]
    assert set(np.unique(np.concatenate(rewards))) <= {-1.0, 0.0, 1.0}


def test_ppo_trains_on_envpool_and_the_same_seed_gives_the_same_run() -> None:
    def run() -> list[float]:
        trainer = Trainer(
            make_envs("HalfCheetah-v5", 2, "envpool"), [PPO()], seed=0, num_steps=64, num_minibatches=4, num_epochs=2
        )
        trainer.train(2 * 64 * 3, progress=False)
        return [float(p.detach().sum()) for p in trainer.acting.parameters()]

    assert run() == run()


def test_unknown_envpool_ids_and_minigrid_are_clear_errors() -> None:
    with pytest.raises(EnvCreationError, match="EnvPool has no MiniGrid"):
        make_envs("MiniGrid-Empty-5x5-v0", 2, "envpool")
    with pytest.raises(EnvCreationError, match="EnvPool has no environment 'Taxi-v4'"):
        make_envs("Taxi-v4", 2, "envpool")
