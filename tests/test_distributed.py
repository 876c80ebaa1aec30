"""Distributed rollouts on Ray (rl_agents.training.distributed).

One local Ray instance (2 CPUs) serves the whole module; its tests share one xdist group, so
``pytest -n 2 --dist loadgroup`` (``make test``) runs them in one worker process. The pure functions
(merging running statistics, filling a missing worker's columns, config checks) need no Ray.
"""

from __future__ import annotations

import csv
import functools
import os
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from examples.count_bonus import CountBonus
from rl_agents import PPO, RND, DataSpec
from rl_agents.config import ConfigError, config_from_dict, load_preset
from rl_agents.core.normalize import RunningMeanStd
from rl_agents.envs import IndexedEnv, make_envs
from rl_agents.training import load_trainer, make_trainer
from rl_agents.training.distributed import DistributedTrainer, RayUnavailableError, WorkerFailureError
from rl_agents.training.trainer import Trainer
from rl_agents.training.workers import RolloutWorker, concatenate_columns, merge_worker_moments, moments_of

RAY_GROUP = pytest.mark.xdist_group("ray")


def reached(threshold: float, window: int = 20) -> Any:
    def check(trainer: Trainer) -> bool:
        returns = trainer.episodes.returns
        return len(returns) >= window and float(np.mean(returns[-window:])) >= threshold

    return check


# ---------------------------------------------------------------------------- no Ray needed
def test_merged_worker_statistics_equal_one_running_mean_std_fed_every_observation() -> None:
    rng = np.random.default_rng(0)
    learner = RunningMeanStd((3,))
    learner.update(torch.as_tensor(rng.normal(2.0, 3.0, (50, 3))))  # statistics before the round
    reference = RunningMeanStd((3,))
    reference.load_state_dict(learner.state_dict())
    base = moments_of(learner)
    finals = []
    for worker in range(3):  # each worker starts from the learner's statistics and updates step by step
        copy = RunningMeanStd((3,))
        copy.load_state_dict(learner.state_dict())
        for _ in range(20 + worker):
            observations = torch.as_tensor(rng.normal(worker, 1.0 + worker, (4, 3)))
            copy.update(observations)
            reference.update(observations)
        finals.append(moments_of(copy))
    finals.append(base)  # a worker that saw nothing (e.g. its agent's statistics are not moved by acting)
    merged = merge_worker_moments(base, finals)
    torch.testing.assert_close(merged.mean, reference.mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(merged.var, reference.var, rtol=0, atol=1e-9)
    torch.testing.assert_close(merged.count, reference.count, rtol=0, atol=1e-9)
    assert merge_worker_moments(base, [base]) == base  # nothing new: unchanged


def test_a_missing_workers_columns_are_invalid_zero_rows() -> None:
    piece = {
        "obs": np.ones((3, 2, 4), np.float32),
        "valid": np.ones((3, 2), bool),
        "terminated": np.ones((3, 2), bool),
        "action": np.full((3, 2), 7, np.int64),
    }
    joined = concatenate_columns([piece, None, piece])
    assert {key: value.shape[:2] for key, value in joined.items()} == dict.fromkeys(piece, (3, 6))
    assert joined["valid"].tolist() == [[True, True, False, False, True, True]] * 3
    assert not joined["terminated"][:, 2:4].any() and (joined["obs"][:, 2:4] == 0).all()
    assert joined["action"].dtype == np.int64 and (joined["action"][:, [0, 1, 4, 5]] == 7).all()
    with pytest.raises(ValueError, match="no worker"):
        concatenate_columns([None, None])


def test_distributed_config_keys_are_checked() -> None:
    config = config_from_dict({"distributed": {"workers": 2, "ray_address": "auto", "max_worker_restarts": 1}})
    assert (config.distributed.workers, config.distributed.ray_address, config.distributed.max_worker_restarts) == (
        2,
        "auto",
        1,
    )
    for bad, message in (
        ({"workers": -1}, "distributed.workers must be between 0"),
        ({"workers": "two"}, "distributed.workers: expected int"),
        ({"max_worker_restarts": -1}, "distributed.max_worker_restarts must be >= 0"),
        ({"ray_address": " "}, "distributed.ray_address must be"),
        ({"wokers": 2}, "did you mean 'workers'"),
    ):
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"distributed": bad})
    with pytest.raises(ConfigError, match="max_env_restarts does not apply"):
        config_from_dict({"distributed": {"workers": 2}, "trainer": {"max_env_restarts": 1}})


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "ray" else real_find_spec(name, *args)
    )
    config = config_from_dict({"distributed": {"workers": 2}})
    with pytest.raises(RayUnavailableError, match=r"pip install 'rl-agents\[ray\]'"):
        make_trainer(config)


def test_a_worker_in_this_process_collects_the_rollout_and_keeps_its_own_per_env_state() -> None:
    """RolloutWorker without Ray: the learner's weights are loaded, except per-env state (PPO's
    return normalizer's running return is sized by the learner's 4 envs there, 2 here)."""

    def agents() -> list:
        return [PPO(normalize_reward=True, normalize_obs=True)]

    learner = Trainer(make_envs("CartPole-v1", 4), agents(), seed=3, num_steps=8)
    worker = RolloutWorker(
        functools.partial(make_envs, "CartPole-v1", 2),
        agents,
        index=1,
        seed=3,
        schedule=dict(vars(learner.schedule)),
        learner_num_envs=4,
    )
    states = {agent.name: agent.state_dict() for agent in learner.agents}
    rollout = worker.collect(states, restarts=0, global_step=0, total_steps=None)
    assert rollout.steps == 16 and rollout.batch["obs"].shape == (8, 2, 4) and rollout.batch["valid"].all()
    copy = worker.agents[0]
    torch.testing.assert_close(copy.actor[0].weight, learner.agents[0].actor[0].weight)
    assert copy.reward_scaler.running_return.shape == (2,)
    assert float(copy.obs_rms.count) == pytest.approx(1e-4 + 16)  # acting moved the worker's statistics


# ---------------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def ray_session() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield ray
    ray.shutdown()


def cartpole_config(agents: str, seed: int, workers: int = 2, **distributed: Any) -> Any:
    raw = load_preset("CartPole-v1")
    raw.update(agents=agents, seed=seed, distributed={"workers": workers, **distributed})
    raw["trainer"]["num_envs"] = 8 // workers  # the preset's 8 envs in all
    return config_from_dict(raw)


def batch_layout(trainer: Trainer) -> dict[str, Any]:
    """Record the key, shape and dtype of every batch handed to the trainer's update."""
    seen: dict[str, Any] = {}
    learn = trainer.learn

    def recording(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        seen.clear()
        seen.update({key: (tuple(value.shape), value.dtype) for key, value in batch.items()})
        seen["_batch"] = {key: value.clone() for key, value in batch.items()}
        return learn(batch)

    trainer.learn = recording  # type: ignore[method-assign]
    return seen


@RAY_GROUP
@pytest.mark.learning
@pytest.mark.parametrize("agents", ["ppo", "ppo+rnd"])
def test_two_workers_learn_cartpole(ray_session: Any, agents: str) -> None:
    with make_trainer(cartpole_config(agents, seed=1)) as trainer:
        assert isinstance(trainer, DistributedTrainer) and trainer.num_envs == 8
        trainer.episodes.window = None  # every episode: the assertions read the first ones
        trainer.train(50_000, progress=False, stop_when=reached(200.0))
    returns = trainer.episodes.returns
    assert np.mean(returns[-20:]) >= 200.0, f"last-20 mean {np.mean(returns[-20:])} after {trainer.global_step} steps"
    assert np.mean(returns[:20]) < 50.0  # it started from a policy that could not balance
    assert trainer.num_worker_failures == 0 and trainer.global_step % 256 == 0


@RAY_GROUP
def test_the_learner_gets_what_the_single_process_trainer_collects(ray_session: Any) -> None:
    def agents() -> list:
        return [PPO(normalize_obs=True), RND()]

    single = Trainer(make_envs("CartPole-v1", 4), agents(), seed=2, num_steps=16)
    single_layout = batch_layout(single)
    single.train(64, progress=False)
    with DistributedTrainer(
        functools.partial(make_envs, "CartPole-v1", 2), agents, workers=2, seed=2, num_steps=16
    ) as trainer:
        layout = batch_layout(trainer)
        trainer.train(64, progress=False)
    batch = layout.pop("_batch")
    single_layout.pop("_batch")
    assert (
        layout == single_layout
        and {"obs", "next_obs", "valid", "action", "logprob", "values", "policy_obs"} <= layout.keys()
    )
    assert trainer.global_step == 64 and trainer.num_updates == 1 and len(trainer.episodes.returns) > 0
    # PPO's observation statistics moved on both workers while acting; merged, they equal one
    # RunningMeanStd fed every observation acted on.
    reference = RunningMeanStd((4,))
    reference.update(batch["obs"].reshape(-1, 4))
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(trainer.acting.obs_rms, name), getattr(reference, name), rtol=0, atol=1e-9)


@RAY_GROUP
def test_the_same_seed_gives_the_same_run(ray_session: Any) -> None:
    runs = []
    for _ in range(2):
        with make_trainer(cartpole_config("ppo", seed=5)) as trainer:
            trainer.train(1024, progress=False)
        runs.append((trainer.episodes.returns, [p.detach().clone() for p in trainer.acting.parameters()]))
    assert runs[0][0] == runs[1][0] and len(runs[0][0]) > 5
    for first, second in zip(runs[0][1], runs[1][1]):
        assert torch.equal(first, second)


class ExitingEnv(gym.Wrapper):
    """Ends its whole process (as a crash or a kill would) at its ``at_call``-th call of ``step`` or
    ``reset`` (the vector env calls one of them every vector step, after the first reset): only in
    the first process to get there when ``marker`` (a file path) is given, else every time."""

    def __init__(self, env: gym.Env, at_call: int, marker: str | None):
        super().__init__(env)
        self.at_call, self.marker, self.calls = at_call, marker, 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls == self.at_call and self._first_to_exit():
            os._exit(1)

    def _first_to_exit(self) -> bool:
        if self.marker is None:
            return True
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return False
        return True

    def step(self, action: Any) -> Any:
        self._count()
        return self.env.step(action)

    def reset(self, **kwargs: Any) -> Any:
        self._count()
        return self.env.reset(**kwargs)


def exiting_envs(num_envs: int, at_call: int, marker: str | None) -> gym.vector.VectorEnv:
    """``num_envs`` CartPoles, of which env 0 ends its process at its ``at_call``-th call (ExitingEnv)."""

    def one(index: int) -> gym.Env:
        env = gym.make("CartPole-v1")
        return IndexedEnv(ExitingEnv(env, at_call, marker) if index == 0 else env, index)

    return gym.vector.SyncVectorEnv([functools.partial(one, index) for index in range(num_envs)])


def record_columns_with_data(trainer: Trainer) -> list[list[bool]]:
    """After each update, which env columns of its batch held any valid row."""
    layout = batch_layout(trainer)
    columns: list[list[bool]] = []
    trainer.loggers.append(
        SimpleNamespace(log=lambda step, metrics: columns.append(layout["_batch"]["valid"].any(0).tolist()))
    )
    return columns


def all_collect_after_round_3(columns: list[list[bool]]) -> Any:
    """stop_when: after the 3rd round, once every worker collected in the round."""
    return lambda trainer: trainer.num_updates > 3 and all(columns[-1])


@RAY_GROUP
def test_a_worker_that_dies_mid_run_is_restarted_and_training_goes_on(ray_session: Any, tmp_path: Path) -> None:
    marker = str(tmp_path / "exited")
    with DistributedTrainer(
        functools.partial(exiting_envs, 2, 40, marker),
        lambda: [PPO()],
        workers=2,
        seed=0,
        num_steps=16,
        max_worker_restarts=2,
    ) as trainer:
        columns = record_columns_with_data(trainer)
        with pytest.warns(
            RuntimeWarning,
            match=r"worker \d failed at step 128 \(.*\); "
            r"training goes on without its 2 envs until Ray has restarted it",
        ):
            trainer.train(64 * 1000, progress=False, stop_when=all_collect_after_round_3(columns))
    # Both workers' env 0 gets its 40th call in round 3 (vector step 39); the first to get there ends
    # its process, so that round's update trains without its two columns (invalid rows); the rounds go
    # on without it until Ray has restarted it, then it collects again with fresh envs.
    assert trainer.num_worker_failures == 1 and os.path.exists(marker)
    assert columns[:2] == [[True] * 4] * 2 and sorted(columns[2]) == [False, False, True, True] and all(columns[-1])
    without = [round_columns for round_columns in columns if not all(round_columns)]
    assert all(round_columns == columns[2] for round_columns in without) and columns[3 + len(without) - 1 :] == [
        [True] * 4
    ]
    assert trainer.global_step == 64 * trainer.num_updates - 32 * len(without)
    trainer.save(tmp_path / "checkpoints")  # the learner is whole


@RAY_GROUP
def test_a_worker_killed_between_rounds_is_restarted_by_ray_and_rejoins(ray_session: Any) -> None:
    def kill_worker_0_at_update_2(trainer: Trainer) -> None:
        if trainer.num_updates == 2:
            ray_session.kill(trainer.worker_handles[0], no_restart=False)

    with DistributedTrainer(
        functools.partial(make_envs, "CartPole-v1", 2), lambda: [PPO()], workers=2, seed=0, num_steps=16
    ) as trainer:
        columns = record_columns_with_data(trainer)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            trainer.train(
                64 * 1000,
                progress=False,
                on_update=kill_worker_0_at_update_2,
                stop_when=all_collect_after_round_3(columns),
            )
    # Its next call failed (the rounds went on without it until Ray restarted it) or waited for the restart.
    failed = [str(warning.message) for warning in caught if "worker 0 failed" in str(warning.message)]
    assert trainer.num_worker_failures == len(failed) <= 1 and all(columns[-1])
    assert trainer.global_step == 64 * trainer.num_updates - 32 * sum(
        not all(round_columns) for round_columns in columns
    )


@RAY_GROUP
def test_more_worker_failures_than_allowed_stop_training_with_the_learner_intact(
    ray_session: Any, tmp_path: Path
) -> None:
    with DistributedTrainer(
        functools.partial(exiting_envs, 2, 24, None),
        lambda: [PPO()],
        workers=2,
        seed=0,
        num_steps=16,
        max_worker_restarts=1,
    ) as trainer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(
                WorkerFailureError,
                match=r"worker \d failed \(.*\); that is 2 worker failures in this run "
                r".*more than max_worker_restarts=1",
            ) as raised:
                trainer.train(16 * 4 * 10, progress=False, save_on_error=tmp_path / "checkpoints")
        before = [p.detach().clone() for p in trainer.acting.parameters()]
    assert trainer.num_updates == 1  # the round that failed for the second time was not trained on
    assert raised.value.checkpoint is not None and raised.value.checkpoint.name == "last_good"
    restored = DistributedTrainer(
        functools.partial(make_envs, "CartPole-v1", 2), lambda: [PPO()], workers=2, seed=0, num_steps=16
    )
    restored.load_state(raised.value.checkpoint)
    assert restored.global_step == trainer.global_step
    for saved, current in zip(restored.acting.parameters(), before):
        assert torch.equal(saved, current)


@RAY_GROUP
def test_off_policy_rounds_fill_the_learners_replay_buffer_with_every_workers_envs(ray_session: Any) -> None:
    config = config_from_dict(
        {
            "env": "CartPole-v1",
            "agents": "dqn",
            "seed": 1,
            "trainer": {
                "num_envs": 2,
                "buffer_size": 4096,
                "learning_starts": 64,
                "train_frequency": 16,
                "gradient_steps": 4,
            },
            "distributed": {"workers": 2},
        }
    )
    with make_trainer(config) as trainer:
        trainer.train(256, progress=False)
    assert trainer.replay is not None and trainer.replay.num_envs == 4 and len(trainer.replay) == 256
    assert trainer.learner.total_gradient_steps > 0 and trainer.num_updates == 4


@RAY_GROUP
def test_the_command_line_trains_with_workers_on_a_running_ray_cluster(ray_session: Any, tmp_path: Path) -> None:
    address = ray_session.get_runtime_context().gcs_address
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "rl_agents.cli",
        "train",
        "--env",
        "CartPole-v1",
        "--agents",
        "ppo+rnd",
        "--steps",
        "1024",
        "--num-envs",
        "2",
    ]
    result = subprocess.run(
        [
            *command,
            "--set",
            "trainer.num_steps=64",
            "--workers",
            "2",
            "--ray-address",
            address,
            "--quiet",
            "--out",
            str(run),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["distributed"] == {"workers": 2, "ray_address": address, "max_worker_restarts": 3}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [float(row["global_step"]) for row in rows] == [256.0, 512.0, 768.0, 1024.0]
    assert {"ppo/loss/policy", "rnd/intrinsic_reward_mean", "episode/return_mean"} <= rows[-1].keys()
    assert (run / "checkpoints" / "step_000001024").is_dir()
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_agents.cli",
            "train",
            "--resume",
            str(run),
            "--steps",
            "1536",
            "--ray-address",
            address,
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0 and "at step 1024" in resumed.stderr, resumed.stderr
    assert [float(row["global_step"]) for row in csv.DictReader((run / "metrics.csv").open())][-2:] == [1280.0, 1536.0]
    refused = subprocess.run(
        [sys.executable, "-m", "rl_agents.cli", "train", "--resume", str(run), "--workers", "4"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode == 2 and "drop --workers" in refused.stderr


class UpdateCountingPPO(PPO):
    """PPO with a state attribute the learner changes (``preprocess`` counts the updates) and acting
    reads: every step stores the count it acted with, so preprocess records which counts the
    workers acted with in each update (the learner's, broadcast before each round)."""

    state_attributes = ("progress",)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.progress: dict[str, Any] = {"updates": 0, "acted_with": [], "marker": torch.zeros(2)}

    def data_spec(self) -> DataSpec:
        spec = super().data_spec()
        return DataSpec(spec.needs | {"updates_seen"}, spec.provides, spec.act_outputs | {"updates_seen"})

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> dict[str, torch.Tensor]:
        outputs = super().act(obs, deterministic)
        updates = self.progress["updates"] + int(self.progress["marker"].sum())  # a tensor inside travels too
        outputs["updates_seen"] = torch.full((obs.shape[0],), updates, dtype=torch.int64, device=obs.device)
        return outputs

    def preprocess(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.progress["acted_with"].append(sorted(set(batch["updates_seen"][batch["valid"]].tolist())))
        self.progress["updates"] += 1
        return super().preprocess(batch)


@RAY_GROUP
def test_agents_extra_state_reaches_the_workers_and_survives_save_and_load(ray_session: Any, tmp_path: Path) -> None:
    """An acting agent's state_attributes (changed by the learner, read when acting) are broadcast
    to the workers every round; a bonus agent's (CountBonus, from a module the workers import) too;
    both are saved and loaded with the learner."""

    def trainer() -> DistributedTrainer:
        return DistributedTrainer(
            functools.partial(make_envs, "CartPole-v1", 2),
            lambda: [UpdateCountingPPO(), CountBonus()],
            workers=2,
            seed=0,
            num_steps=16,
        )

    with trainer() as original:
        original.train(64 * 3, progress=False)
        original.save(tmp_path / "checkpoints", name="saved")
    acting, bonus = original.agents
    assert acting.progress["updates"] == 3 and acting.progress["acted_with"] == [[0], [1], [2]]
    assert 0 < sum(bonus.counts.values()) <= original.global_step
    with trainer() as resumed:
        resumed.load_state(tmp_path / "checkpoints" / "saved")
        assert resumed.agents[0].progress["acted_with"] == acting.progress["acted_with"]
        assert resumed.agents[1].counts == bonus.counts
        resumed.agents[0].progress["marker"][0] = 10.0  # the next round acts with 3 + 10
        resumed.train(64 * 4, progress=False)
    assert resumed.agents[0].progress["acted_with"] == [[0], [1], [2], [13]]
    assert sum(resumed.agents[1].counts.values()) > sum(bonus.counts.values())


@RAY_GROUP
@pytest.mark.parametrize(
    "naming",
    [
        {"agents": "ppo+count_bonus", "count_bonus": {"class": "examples.count_bonus:CountBonus"}},
        {"agents": "ppo+examples.count_bonus:CountBonus"},
    ],
)
def test_a_config_naming_a_user_agent_by_import_path_trains_on_workers(
    ray_session: Any, naming: dict[str, Any], tmp_path: Path
) -> None:
    raw = load_preset("CartPole-v1")
    raw.update(seed=3, distributed={"workers": 2}, **naming)
    raw["trainer"].update(num_envs=2, num_steps=16)
    config = config_from_dict(raw)
    with make_trainer(config) as trainer:
        trainer.train(128, progress=False)
        trainer.save(tmp_path / "checkpoints", config=config, name="saved")
    counts = trainer.agents[1].counts
    assert [agent.name for agent in trainer.agents] == ["ppo", "count_bonus"] and trainer.num_updates == 2 and counts
    with load_trainer(tmp_path / "checkpoints" / "saved", agent_classes=[CountBonus]) as loaded:
        assert isinstance(loaded, DistributedTrainer) and loaded.agents[1].counts == counts


@RAY_GROUP
def test_recurrent_ppo_with_rnd_trains_on_workers_that_carry_their_state(ray_session: Any) -> None:
    def agents() -> list:
        return [PPO(memory="gru", memory_size=8), RND()]

    with DistributedTrainer(
        functools.partial(make_envs, "CartPoleNoVel-v1", 2), agents, workers=2, seed=2, num_steps=16
    ) as trainer:
        layout = batch_layout(trainer)
        trainer.train(128, progress=False)
    assert {"carried/h", "next_carried/h", "episode_start"} <= layout.keys()
    assert trainer.num_updates == 2 and trainer.schedule.sequence_minibatches
    assert np.isfinite(trainer.metrics["ppo/value_loss/intrinsic"]) and np.isfinite(trainer.metrics["ppo/policy_loss"])
