"""Seeded learning tests: the agents actually learn, on budgets that fit 2 CPU cores."""

import numpy as np
import pytest

from rl_agents.config import config_from_dict, load_preset
from rl_agents.training import make_trainer
from rl_agents.training.trainer import Trainer

pytestmark = pytest.mark.learning


def reached(threshold: float, window: int = 20):
    def check(trainer: Trainer) -> bool:
        returns = trainer.episodes.returns
        return len(returns) >= window and float(np.mean(returns[-window:])) >= threshold

    return check


@pytest.mark.parametrize("vectorization", ["sync", "vector"])
def test_ppo_solves_cartpole_with_the_shipped_preset_within_100k_steps(vectorization: str) -> None:
    preset = load_preset("CartPole-v1")
    preset["trainer"]["vectorization"] = vectorization  # "vector": gymnasium's batched CartPole
    config = config_from_dict(preset)
    assert config.steps == 100_000
    trainer = make_trainer(config)
    trainer.train(config.steps, progress=False, stop_when=reached(475.0))
    assert trainer.global_step <= 100_000
    assert np.mean(trainer.episodes.returns[-20:]) >= 475.0, f"last-20 mean {np.mean(trainer.episodes.returns[-20:])}"


def test_continuous_ppo_balances_inverted_pendulum_within_100k_steps() -> None:
    config = config_from_dict(load_preset("InvertedPendulum-v5"))
    trainer = make_trainer(config)
    assert trainer.schedule.num_steps == 2048 and trainer.acting.normalize_obs  # CleanRL's continuous defaults
    trainer.episodes.window = None  # every episode: the assertions read the first ones
    trainer.train(100_000, progress=False, stop_when=reached(500.0))
    assert np.mean(trainer.episodes.returns[-20:]) >= 500.0, f"last-20 mean {np.mean(trainer.episodes.returns[-20:])}"
    assert np.mean(trainer.episodes.returns[:5]) < 100.0  # it started from a policy that could not balance


def test_ppo_with_rnd_drives_up_the_mountain_within_500k_steps() -> None:
    config = config_from_dict(load_preset("MountainCar-v0"))
    assert config.agent_names == ["ppo", "rnd"]
    trainer = make_trainer(config)
    trainer.episodes.window = None  # every episode: the assertions read the first ones
    trainer.train(500_000, progress=False, stop_when=reached(-150.0))
    assert np.mean(trainer.episodes.returns[-20:]) >= -150.0, f"last-20 mean {np.mean(trainer.episodes.returns[-20:])}"
    assert trainer.episodes.returns[0] == -200.0  # it started out never reaching the flag


def test_dqn_balances_cartpole_with_its_preset_within_100k_steps() -> None:
    config = config_from_dict(load_preset("CartPole-v1", "dqn"))
    trainer = make_trainer(config)
    assert trainer.learner.off_policy and trainer.acting.double
    trainer.episodes.window = None  # every episode: the assertions read the first ones
    trainer.train(100_000, progress=False, stop_when=reached(400.0))
    assert trainer.global_step <= 100_000
    assert np.mean(trainer.episodes.returns[-20:]) >= 400.0, f"last-20 mean {np.mean(trainer.episodes.returns[-20:])}"
    assert np.mean(trainer.episodes.returns[:20]) < 50.0  # it started from random actions


def test_sac_swings_up_pendulum_with_its_preset_within_20k_steps() -> None:
    config = config_from_dict(load_preset("Pendulum-v1", "sac"))
    assert config.steps == 20_000
    trainer = make_trainer(config)
    trainer.episodes.window = None  # every episode: the assertions read the first ones
    trainer.train(config.steps, progress=False, stop_when=reached(-250.0, window=10))
    assert trainer.global_step <= 20_000
    assert np.mean(trainer.episodes.returns[-10:]) >= -250.0, f"last-10 mean {np.mean(trainer.episodes.returns[-10:])}"
    assert np.mean(trainer.episodes.returns[:5]) < -900.0  # it started from a policy that could not swing up
