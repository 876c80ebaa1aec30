"""Settings without a preset: the acting agent's number of envs and defaults, the line that says which
settings a run uses, --stop-at-return, rl-zoo3's evaluation mode per env family, library warnings once."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rl_agents import A2C, DQN, PPO, RND, SAC
from rl_agents.cli.main import warnings_once
from rl_agents.config import ConfigError, config_from_dict, load_preset, make_config_envs, with_num_envs
from rl_agents.core.agent import Agent, ContractError
from rl_agents.envs import samples_when_evaluated
from rl_agents.training import make_trainer
from tests.helpers import bind_standalone
from tests.test_cli import rl_agents

BOX_OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
BOX_ACTIONS = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
DISCRETE = gym.spaces.Discrete(3)


@pytest.mark.parametrize(
    ("agent", "action_space", "num_envs"),
    [
        (PPO(), DISCRETE, 8),
        (PPO(), BOX_ACTIONS, 4),
        (A2C(), DISCRETE, 8),
        (DQN(), DISCRETE, 1),  # the published update-to-data ratio is per env step
        (SAC(), BOX_ACTIONS, 1),
    ],
)
def test_each_learner_suggests_its_number_of_envs(agent: Agent, action_space: gym.Space, num_envs: int) -> None:
    assert agent.suggested_num_envs(BOX_OBS, action_space) == num_envs


def test_a_config_without_num_envs_takes_the_acting_agents_suggestion_for_the_envs_spaces() -> None:
    discrete = with_num_envs(config_from_dict({"env": "CartPole-v1", "agents": "ppo+rnd"}))
    continuous = with_num_envs(config_from_dict({"env": "Pendulum-v1", "agents": "ppo"}))
    off_policy = with_num_envs(config_from_dict({"env": "Pendulum-v1", "agents": "sac"}))
    assert (discrete.trainer.num_envs, continuous.trainer.num_envs, off_policy.trainer.num_envs) == (8, 4, 1)
    with pytest.raises(ConfigError, match="trainer.num_envs is not set: rl_agents.config.with_num_envs"):
        make_config_envs(config_from_dict({"env": "CartPole-v1"}))  # unresolved: said, not a TypeError
    given = config_from_dict({"env": "CartPole-v1", "trainer": {"num_envs": 3}})
    assert with_num_envs(given) is given  # a number given is kept
    trainer = make_trainer(config_from_dict({"env": "Pendulum-v1", "agents": "ppo", "steps": 10}))
    assert trainer.num_envs == 4 and trainer.run_config["trainer"]["num_envs"] == 4  # recorded as resolved


def test_continuous_ppo_defaults_collect_1024_steps_per_rollout_at_lr_1e_3() -> None:
    ppo = bind_standalone(PPO(), BOX_OBS, BOX_ACTIONS)
    schedule = ppo.suggested_schedule()
    assert (schedule.num_steps * ppo.suggested_num_envs(BOX_OBS, BOX_ACTIONS), schedule.num_epochs) == (1024, 10)
    assert schedule.num_steps * 4 // schedule.num_minibatches == 64  # minibatches of 64, as CleanRL's
    assert (ppo.lr, ppo.normalize_obs, ppo.normalize_reward) == (1e-3, True, True)


class BadCount(Agent):
    acts = True

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        return 0


def test_an_agent_suggesting_no_envs_is_named() -> None:
    config = config_from_dict({"env": "CartPole-v1", "agents": "tests.test_defaults:BadCount"})
    with pytest.raises(ContractError, match=r"agent 'bad_count': suggested_num_envs returned 0"):
        with_num_envs(config)


def test_a_preset_for_another_learner_keeps_only_the_env_and_its_budget() -> None:
    assert load_preset("MountainCar-v0", "sac") == {"env": "MountainCar-v0", "steps": 500_000}
    assert load_preset("MountainCar-v0")["trainer"]["num_envs"] == 16  # its own learner: all of it


def test_bonus_value_heads_start_at_the_given_scale_and_the_extrinsic_head_does_not() -> None:
    def row_norms(bonus_value_init_std: float | None) -> list[float]:
        torch.manual_seed(0)
        trainer = make_trainer(
            config_from_dict(
                {
                    "env": "CartPole-v1",
                    "agents": "ppo+rnd",
                    "trainer": {"num_envs": 2},
                    "ppo": {"bonus_value_init_std": bonus_value_init_std},
                }
            )
        )
        head = trainer.acting.critic[-1].weight
        return [round(float(row.norm()), 4) for row in head.detach()]

    assert row_norms(None) == [1.0, 1.0]  # streams: extrinsic, intrinsic (orthogonal rows of gain 1)
    assert row_norms(0.01) == [1.0, 0.01]
    with pytest.raises(ValueError, match="bonus_value_init_std must be >= 0"):
        PPO(bonus_value_init_std=-1.0)


def test_rnd_value_head_option_round_trips_through_a_config() -> None:
    config = config_from_dict({"env": "CartPole-v1", "agents": "ppo+rnd", "ppo": {"bonus_value_init_std": 0.01}})
    assert config.agent_options["ppo"]["bonus_value_init_std"] == 0.01 and isinstance(RND(), RND)


def test_minigrid_and_atari_are_evaluated_with_sampled_actions_as_rl_zoo3_does() -> None:
    assert samples_when_evaluated("MiniGrid-DoorKey-8x8-v0") and samples_when_evaluated("BreakoutNoFrameskip-v4")
    assert not samples_when_evaluated("CartPole-v1") and not samples_when_evaluated("my_envs:Corridor-v0")


def test_library_warnings_are_one_plain_line_each_once(capsys: pytest.CaptureFixture[str]) -> None:
    with warnings_once():
        for _ in range(2):
            warnings.warn("\x1b[33mWARN: The environment X-v0 is out of date.\x1b[0m", UserWarning, stacklevel=1)
        warnings.warn("another", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "rl-agents: warning: The environment X-v0 is out of date.",
        "rl-agents: warning: another",
    ]


def test_stop_at_return_must_be_a_finite_number() -> None:
    with pytest.raises(ConfigError, match="stop_at_return must be a finite return or null, got inf"):
        config_from_dict({"stop_at_return": float("inf")})


# ---------------------------------------------------------------------------- the command line
def test_a_run_without_preset_says_which_defaults_it_uses_and_records_its_envs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = rl_agents("train", "--env", "CartPole-v0", "--steps", "1024", "--quiet", "--out", str(run))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("settings:"))
    assert line.startswith("settings: no preset for CartPole-v0: the agents' defaults; on-policy: 128 steps x 8 envs")
    assert line.endswith("learning rates: ppo 0.00025")
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["num_envs"] == 8


def test_describe_shows_the_real_number_of_envs_and_the_settings(tmp_path: Path) -> None:
    result = rl_agents("describe", "--env", "MountainCar-v0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MountainCar-v0  x16" in result.stdout  # the preset's 16, not a cap
    assert "preset MountainCar-v0 (MountainCar-v0.yaml)" in result.stdout
    other = rl_agents("describe", "--env", "MountainCar-v0", "--agents", "a2c+rnd", "--set", "a2c.lr=1e-3")
    assert "x16" in other.stdout  # MountainCar-v0.a2c.yaml
    mismatch = rl_agents("train", "--env", "InvertedDoublePendulum-v5", "--agents", "sac", "--steps", "200", "--quiet")
    assert (
        "settings: no preset for InvertedDoublePendulum-v5 with sac (preset InvertedDoublePendulum-v5 is for ppo; "
        "its env and steps are kept): sac's defaults; off-policy" in mismatch.stderr
    )


def test_stop_at_return_stops_at_the_target_and_says_when(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = rl_agents("train", "--env", "CartPole-v1", "--steps", "20000", "--stop-at-return", "30", "--out", str(run))
    assert result.returncode == 0, result.stderr
    solved = next(line for line in result.stderr.splitlines() if line.startswith("solved at "))
    step = int(solved.split()[2].replace(",", ""))
    assert step < 20_000 and "the last-20 mean return reached" in solved and "(target 30)" in solved
    assert yaml.safe_load((run / "config.yaml").read_text())["stop_at_return"] == 30.0
    unreachable = rl_agents("train", "--resume", str(run), "--steps", "21000", "--stop-at-return", "1e9", "--quiet")
    assert unreachable.returncode == 0, unreachable.stderr
    assert "stop_at_return: 30.0 -> 1000000000.0" in unreachable.stderr
    assert "not solved: the last-20 mean return is" in unreachable.stderr and "below 1e+09" in unreachable.stderr
