"""Reliability promises, each proven here on tiny budgets:

1. Same seed, same run: two CPU runs with the same config and seed log identical metrics (but for wall
   time and speed) and end with bit-identical parameters (PPO, PPO+RND, DQN, SAC).
2. Exact resume: a run resumed from its mid-run checkpoint with a fresh Trainer and fresh envs (as
   ``rl-agents train --resume`` does: ``load_state`` then ``train``) logs the same metrics after the
   checkpoint and ends with the same parameters as the uninterrupted run. This needs the
   environments' state in the checkpoint (rl_agents.envs.state); which env families have it is checked
   below, env by env.
3. Crash safety: ``rl-agents train`` killed with SIGKILL at random moments, mid-checkpoint included,
   always leaves a loadable latest checkpoint at most one interval old, resumes, and completes with
   the same result as a run never killed.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import math
import random
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load as load_tensors
from safetensors.torch import load_file, save_file
from safetensors.torch import save as save_tensors

import rl_agents.envs.state as envstate_module
from rl_agents import DQN, PPO, RND, SAC, Trainer
from rl_agents.checkpointing import latest_checkpoint, read_checkpoint, recover_checkpoints_dir
from rl_agents.checkpointing.format import document_sha256
from rl_agents.config import config_from_dict
from rl_agents.core.tree import map_tree
from rl_agents.envs import make_envs
from rl_agents.envs.state import EnvStateMismatch, EnvStateUnsupported, capture_env_state, restore_env_state
from rl_agents.training import load_trainer, make_trainer

torch.set_num_threads(1)

IGNORED_METRICS = {"charts/wall_time", "charts/steps_per_second"}


class History:
    """An in-memory logger."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append((step, {k: v for k, v in metrics.items() if k not in IGNORED_METRICS}))

    def close(self) -> None:
        pass


def assert_same_rows(a: list[tuple[int, dict[str, float]]], b: list[tuple[int, dict[str, float]]]) -> None:
    assert [step for step, _ in a] == [step for step, _ in b]
    for (step, ma), (_, mb) in zip(a, b):
        assert ma.keys() == mb.keys(), step
        for key in ma:
            same = ma[key] == mb[key] or (math.isnan(ma[key]) and math.isnan(mb[key]))
            assert same, f"step {step}: {key} is {ma[key]!r} vs {mb[key]!r}"


def assert_same_parameters(a: Trainer, b: Trainer) -> None:
    for agent_a, agent_b in zip(a.agents, b.agents):
        sa, sb = agent_a.state_dict(), agent_b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{agent_a.name}/{key}"
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert oa.keys() == ob.keys()
    for index in oa:
        for key, value in oa[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob[index][key])), (index, key)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.episodes == b.episodes


# ---------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Case:
    env_id: str
    num_envs: int
    agents: Callable[[], list]
    schedule: dict[str, Any]
    steps: int
    log_interval: int | None = None


CASES = {
    "ppo": Case("CartPole-v1", 2, lambda: [PPO()], {"num_steps": 64, "num_epochs": 2, "num_minibatches": 2}, 1024),
    "ppo+rnd": Case(
        "CartPole-v1", 2, lambda: [PPO(), RND()], {"num_steps": 64, "num_epochs": 2, "num_minibatches": 2}, 1024
    ),
    "dqn": Case(
        "CartPole-v1",
        2,
        lambda: [DQN(hidden=(32,))],
        {
            "learning_starts": 200,
            "buffer_size": 2000,
            "batch_size": 32,
            "train_frequency": 4,
            "target_update_interval": 64,
        },
        1200,
        log_interval=100,
    ),
    "ppo-mujoco": Case(  # continuous actions, observation and reward normalization, MuJoCo state
        "InvertedPendulum-v5", 2, lambda: [PPO()], {"num_steps": 64, "num_epochs": 2, "num_minibatches": 2}, 1024
    ),
    "sac": Case(
        "Pendulum-v1",
        1,
        lambda: [SAC(hidden=(32,))],
        {"learning_starts": 100, "buffer_size": 1000, "batch_size": 32},
        500,
        log_interval=50,
    ),
}


def build(case: Case, seed: int = 1) -> tuple[Trainer, History]:
    history = History()
    trainer = Trainer(
        make_envs(case.env_id, case.num_envs),
        case.agents(),
        seed=seed,
        loggers=[history],
        log_interval=case.log_interval,
        **case.schedule,
    )
    return trainer, history


@dataclass
class Runs:
    first: Trainer
    first_history: History
    second: Trainer
    second_history: History
    checkpoint: Path


_RUNS: dict[str, Runs] = {}


def runs(name: str, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two uninterrupted runs with one seed; the first saves a checkpoint halfway (a checkpoint is
    only read, never a reason for the run to differ)."""
    if name not in _RUNS:
        case = CASES[name]
        directory = tmp_path_factory.mktemp(name.replace("+", "_")) / "checkpoints"
        saved: list[Path] = []

        def save_halfway(trainer: Trainer) -> None:
            if not saved and trainer.global_step >= case.steps // 2:
                saved.append(trainer.save(directory))

        first, first_history = build(case)
        first.train(case.steps, progress=False, on_update=save_halfway)
        second, second_history = build(case)
        second.train(case.steps, progress=False)
        assert saved and first.global_step >= case.steps
        _RUNS[name] = Runs(first, first_history, second, second_history, saved[0])
    return _RUNS[name]


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_run(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = runs(name, tmp_path_factory)
    assert len(result.first_history.rows) >= 4
    assert_same_rows(result.first_history.rows, result.second_history.rows)
    assert_same_parameters(result.first, result.second)
    if name != "ppo+rnd":
        return
    other, _ = build(CASES[name], seed=2)  # and the seed matters
    assert not torch.equal(other.acting.actor[0].weight, result.first.acting.actor[0].weight)


@pytest.mark.parametrize("name", list(CASES))
def test_resume_from_a_checkpoint_is_exact(name: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    result = runs(name, tmp_path_factory)
    case = CASES[name]
    state = json.loads((result.checkpoint / "state.json").read_text())
    assert state["state"]["collector"]["envs"]["captured"] is True
    resumed, history = build(case)  # fresh trainer, fresh envs
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.load_state(result.checkpoint)
    assert not [w for w in caught if "resets the environments" in str(w.message)]  # no fallback
    halfway = resumed.global_step
    resumed.train(case.steps, progress=False)
    expected = [(step, metrics) for step, metrics in result.first_history.rows if step > halfway]
    assert len(expected) >= 2
    assert_same_rows(history.rows, expected)
    assert_same_parameters(result.first, resumed)


def test_resuming_without_the_environments_state_differs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The counter-test: re-seeding and resetting the envs on resume (the old behaviour, and the
    fallback) does change the run, so the test above does check the environments' state."""
    result = runs("ppo", tmp_path_factory)
    resumed, _ = build(CASES["ppo"])
    resumed.load_state(result.checkpoint)
    resumed.collector.resume_obs = None  # as if the checkpoint had no environment state
    resumed.train(CASES["ppo"].steps, progress=False)
    assert not torch.equal(resumed.acting.actor[0].weight, result.first.acting.actor[0].weight)


def test_a_checkpoint_without_environment_state_still_loads_and_resets(tmp_path: Path) -> None:
    """Checkpoints written before environment states existed."""
    case = CASES["ppo"]
    trainer, _ = build(case)
    trainer.train(256, progress=False)
    path = trainer.save(tmp_path / "checkpoints")
    tensors = {
        k: v for k, v in load_file(str(path / "tensors.safetensors")).items() if not k.startswith("collector/envs/")
    }
    save_file(tensors, str(path / "tensors.safetensors"), metadata={"format": "rl_agents.checkpoint", "version": "2"})
    state = json.loads((path / "state.json").read_text())
    state["state"]["collector"]["envs"] = None
    data = (path / "tensors.safetensors").read_bytes()
    state.update(tensors_sha256=hashlib.sha256(data).hexdigest(), tensors_bytes=len(data))
    state.pop("state_sha256")
    state["state_sha256"] = document_sha256(state)
    (path / "state.json").write_text(json.dumps(state))

    resumed, _ = build(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed.load_state(path)
    assert not [w for w in caught if "environment" in str(w.message)]  # an old checkpoint: nothing to warn about
    assert resumed.collector.resume_obs is None and resumed.global_step == 256
    resumed.train(512, progress=False)
    assert resumed.global_step == 512


class Opaque:
    """An object of a type the environment state capture does not know."""


class OpaqueStateEnv(gym.Wrapper):
    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.thing = Opaque()


def test_envs_that_cannot_be_captured_fall_back_to_a_reset_with_a_warning(tmp_path: Path) -> None:
    def make() -> gym.vector.VectorEnv:
        return gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", wrappers=[OpaqueStateEnv])

    trainer = Trainer(make(), [PPO()], seed=0, num_steps=16, num_epochs=1, num_minibatches=1)
    trainer.train(64, progress=False)
    with pytest.warns(UserWarning, match=r"environments' state cannot be saved.*OpaqueStateEnv.*thing.*Opaque"):
        path = trainer.save(tmp_path)
    state = json.loads((path / "state.json").read_text())
    envs_state = state["state"]["collector"]["envs"]
    assert envs_state["captured"] is False and "Opaque" in envs_state["reason"]
    assert not [key for key in load_file(str(path / "tensors.safetensors")) if key.startswith("collector/envs/")]

    resumed = Trainer(make(), [PPO()], seed=0, num_steps=16, num_epochs=1, num_minibatches=1)
    with pytest.warns(UserWarning, match=r"could not be saved .*re-seeds and resets the environments"):
        resumed.load_state(path)
    resumed.train(128, progress=False)  # resets, as before environment states existed
    assert resumed.global_step == 128


def test_envs_that_do_not_fit_the_saved_state_fall_back_with_a_warning(tmp_path: Path) -> None:
    trainer, _ = build(CASES["ppo"])
    trainer.train(128, progress=False)
    path = trainer.save(tmp_path)
    other = Trainer(
        gym.make_vec(
            "CartPole-v1", num_envs=2, vectorization_mode="sync", wrappers=[gym.wrappers.RecordEpisodeStatistics]
        ),
        [PPO()],
        **CASES["ppo"].schedule,
    )
    with pytest.warns(UserWarning, match=r"does not fit these environments \(env 0: wrapper chain differs"):
        other.load_state(path)
    assert other.collector.resume_obs is None and other.global_step == 128


# ---------------------------------------------------------------------------------------------- env families
# (env id, None where the state is captured exactly, else the reason the capture is refused)
ENV_FAMILIES = [
    ("CartPole-v1", None),
    ("Acrobot-v1", None),
    ("MountainCar-v0", None),
    ("Pendulum-v1", None),
    ("MountainCarContinuous-v0", None),
    ("InvertedPendulum-v5", None),
    ("Hopper-v5", None),
    ("Ant-v5", None),
    ("Humanoid-v5", None),
    ("HalfCheetah-v5", None),
    ("PongNoFrameskip-v4", None),  # Atari without sticky actions
    ("ALE/Pong-v5", "sticky actions"),  # ale-py's state lacks the action they repeat
    ("BreakoutNoFrameskip-v4", None),  # and with lives
    ("MiniGrid-DoorKey-5x5-v0", None),
    ("MiniGrid-KeyCorridorS3R1-v0", None),  # rooms that refer to the grid's doors
    ("MiniGrid-MultiRoom-N2-S4-v0", None),
]


def roundtrip(
    tensors: dict[str, torch.Tensor], state: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Through the bytes a checkpoint holds: safetensors and JSON."""
    return (load_tensors(save_tensors(tensors)) if tensors else {}), json.loads(json.dumps(state, allow_nan=True))


def step_both(a: gym.vector.VectorEnv, b: gym.vector.VectorEnv, rng: np.random.Generator, steps: int) -> int:
    """Steps both with the same random actions; asserts identical outcomes; returns the episodes ended."""
    ended = 0
    for _ in range(steps):
        space = a.single_action_space
        if isinstance(space, gym.spaces.Discrete):
            action = rng.integers(space.n, size=a.num_envs) + space.start
        else:
            assert isinstance(space, gym.spaces.Box)
            action = rng.uniform(space.low, space.high, size=(a.num_envs, *space.shape)).astype(space.dtype)
        out_a, out_b = a.step(action), b.step(action)
        for x, y in zip(out_a[:4], out_b[:4]):
            map_tree(np.testing.assert_array_equal, x, y)  # (observations may be a Dict)
        assert out_a[4].keys() == out_b[4].keys()
        if "episode" in out_a[4]:
            np.testing.assert_array_equal(out_a[4]["episode"]["r"], out_b[4]["episode"]["r"])
            np.testing.assert_array_equal(out_a[4]["episode"]["l"], out_b[4]["episode"]["l"])
        ended += int(np.sum(out_a[2] | out_a[3]))
    return ended


@pytest.mark.parametrize("env_id, refused", ENV_FAMILIES)
def test_environment_state_round_trip_by_family(env_id: str, refused: str | None, tmp_path: Path, monkeypatch) -> None:
    """Capture after some steps, restore into freshly made envs, then step both with the same actions:
    every observation, reward and termination is identical (or the capture is refused, for the
    fallback families)."""
    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory
    try:
        envs = make_envs(env_id, 2)
    except Exception as error:
        pytest.skip(f"{env_id} cannot be made here ({type(error).__name__}: {error})")
    rng = np.random.default_rng(0)
    obs, _ = envs.reset(seed=3)
    envs.action_space.seed(3)
    for _ in range(25):
        obs, *_ = envs.step(envs.action_space.sample())
    if refused is not None:
        with pytest.raises(EnvStateUnsupported, match=refused):
            capture_env_state(envs, obs)
        return
    tensors, state = roundtrip(*capture_env_state(envs, obs))
    fresh = make_envs(env_id, 2)
    restored_obs = restore_env_state(fresh, tensors, state)
    map_tree(np.testing.assert_array_equal, restored_obs, obs)  # (MiniGrid's is a Dict)
    steps = {"PongNoFrameskip-v4": 30, "BreakoutNoFrameskip-v4": 60, "Humanoid-v5": 40, "Pendulum-v1": 200}.get(
        env_id, 120
    )
    ended = step_both(envs, fresh, rng, steps)
    if env_id in ("CartPole-v1", "Pendulum-v1", "InvertedPendulum-v5", "MiniGrid-MultiRoom-N2-S4-v0"):
        assert ended > 0  # autoresets and truncations were part of what matched
    if env_id.startswith("MiniGrid-KeyCorridor"):  # shared objects are shared again
        for room in (room for row in fresh.envs[0].unwrapped.room_grid for room in row):
            for door in room.doors:
                assert door is None or door is fresh.envs[0].unwrapped.grid.get(*door.cur_pos)
    envs.close()
    fresh.close()


def test_environment_state_restores_shared_and_vector_parts() -> None:
    envs = make_envs("CartPole-v1", 3)
    envs.reset(seed=0)
    envs.action_space.seed(5)
    for _ in range(15):
        obs, *_ = envs.step(envs.action_space.sample())
    tensors, state = roundtrip(*capture_env_state(envs, obs))
    fresh = make_envs("CartPole-v1", 3)
    restore_env_state(fresh, tensors, state)
    np.testing.assert_array_equal(fresh._autoreset_envs, envs._autoreset_envs)
    np.testing.assert_array_equal(fresh.action_space.sample(), envs.action_space.sample())  # the warm-up's sampler
    for a, b in zip(envs.envs, fresh.envs):
        assert a.unwrapped.np_random.bit_generator.state == b.unwrapped.np_random.bit_generator.state
        assert a.unwrapped.np_random is not b.unwrapped.np_random


def test_environment_state_checks_before_changing_anything() -> None:
    envs = make_envs("CartPole-v1", 2)
    obs, _ = envs.reset(seed=0)
    tensors, state = capture_env_state(envs, obs)
    fresh = make_envs("CartPole-v1", 2)
    fresh.reset(seed=1)
    before = [env.unwrapped.state.copy() for env in fresh.envs]
    bad = json.loads(json.dumps(state))
    bad["envs"][1][-1]["attrs"]["state"]["array"] = "envs/nowhere"
    with pytest.raises(EnvStateMismatch, match="missing"):
        restore_env_state(fresh, tensors, bad)
    with pytest.raises(EnvStateMismatch, match="saved with 2 envs"):
        restore_env_state(make_envs("CartPole-v1", 3), tensors, state)
    for b, env in zip(before, fresh.envs):
        np.testing.assert_array_equal(env.unwrapped.state, b)
    async_envs = gym.vector.AsyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    try:
        with pytest.raises(EnvStateUnsupported, match="SyncVectorEnv"):
            capture_env_state(async_envs)
    finally:
        async_envs.close()


def test_the_environment_state_module_never_pickles() -> None:
    tree = ast.parse(Path(envstate_module.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"pickle", "dill", "marshal", "shelve", "joblib", "cloudpickle", "copyreg"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not {call for call in calls if call.endswith(("torch.load", "np.load", "pickle.loads", "eval", "exec"))}


# ---------------------------------------------------------------------------------------------- crash safety
def test_what_a_kill_can_leave_behind_is_recovered(tmp_path: Path) -> None:
    """Each state a SIGKILL can leave, made by hand: a half-written checkpoint directory, a pointer
    to a checkpoint not renamed into place yet, a checkpoint moved aside while being replaced, a
    metrics.csv whose last line was cut short."""
    from rl_agents.logging import CSVLogger, read_rows

    trainer, _ = build(CASES["ppo"])
    checkpoints = tmp_path / "checkpoints"
    trainer.train(128, progress=False, on_update=lambda t: t.save(checkpoints))
    first, second = checkpoints / "step_000000128", checkpoints / "step_000000256"
    trainer.train(256, progress=False, on_update=lambda t: t.save(checkpoints))
    assert latest_checkpoint(checkpoints) == second

    # killed while writing step 384: its temporary directory and, if the pointer was already
    # switched, a pointer to a directory that does not exist yet
    (checkpoints / ".tmp-step_000000384-abc").mkdir()
    (checkpoints / ".tmp-step_000000384-abc" / "tensors.safetensors").write_bytes(b"half")
    (checkpoints / "latest").write_text("step_000000384\n")
    assert latest_checkpoint(checkpoints) == second  # readers skip the dangling pointer
    # killed while replacing step 256 with a new save of the same step: moved aside, not yet replaced
    trash = checkpoints / ".old-step_000000256-xyz"
    trash.mkdir()
    second.rename(trash / second.name)
    assert latest_checkpoint(checkpoints) == first

    recover_checkpoints_dir(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["latest", first.name, second.name]
    assert (checkpoints / "latest").read_text().strip() == second.name
    loaded, _ = build(CASES["ppo"])
    assert loaded.load_state(checkpoints) == second and loaded.global_step == 256

    metrics = tmp_path / "metrics.csv"
    metrics.write_text("global_step,a,b\r\n64.0,1.0,2.0\r\n128.0,3.0,4.0\r\n192.0,5.")
    logger = CSVLogger(metrics)
    assert [row["global_step"] for row in read_rows(metrics)] == [64.0, 128.0] and logger.num_rows == 2
    assert metrics.read_text().endswith("\n")  # rewritten without the cut line
    logger.truncate(64)
    logger.log(128, {"a": 7.0, "b": 8.0})
    assert [row["a"] for row in csv.DictReader(metrics.open())] == ["1.0", "7.0"]


CRASH_STEPS, CRASH_CHECKPOINTS = 8192, 128  # a checkpoint every 64 steps: after every update
CRASH_ARGS = [
    "train", "--env", "CartPole-v1", "--agents", "ppo", "--seed", "4", "--steps", str(CRASH_STEPS),
    "--num-envs", "2", "--set", "trainer.num_steps=32", "--set", "trainer.num_epochs=4",
    "--checkpoints", str(CRASH_CHECKPOINTS), "--quiet",
]  # fmt: skip


def metrics_rows(run: Path) -> list[dict[str, str]]:
    path = run / "metrics.csv"
    if not path.exists():
        return []
    text = path.read_text()
    return list(csv.DictReader(text[: text.rfind("\n") + 1].splitlines()))


def complete_steps(run: Path) -> list[int]:
    directory = run / "checkpoints"
    if not directory.is_dir():
        return []
    steps = []
    for child in directory.iterdir():
        if child.name.startswith("step_") and (child / "state.json").is_file():
            try:
                if json.loads((child / "state.json").read_text()).get("format") == "rl_agents.checkpoint":
                    steps.append(int(child.name[5:]))
            except ValueError:
                pass
    return steps


def test_killed_runs_always_resume_and_complete_as_if_never_killed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    interval = CRASH_STEPS // CRASH_CHECKPOINTS
    chance = random.Random(7)
    kills = mid_save = 0
    deadline = time.monotonic() + 240
    while True:
        fresh = not (run / "config.yaml").exists()
        resume = ["train", "--resume", str(run), "--checkpoints", str(CRASH_CHECKPOINTS), "--quiet"]
        args = [*CRASH_ARGS, "--out", str(run)] if fresh else resume
        with open(tmp_path / f"log{kills}.txt", "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "rl_agents.cli", *args], stdout=log, stderr=log)
        if kills >= 7:  # let it finish
            assert process.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, (
                tmp_path / f"log{kills}.txt"
            ).read_text()
            break
        # Kill at a random moment: during start-up the first time, then once training is under way.
        started = time.monotonic()
        rows_before = len(metrics_rows(run))
        while (
            kills > 0
            and len(metrics_rows(run)) <= rows_before
            and process.poll() is None
            and time.monotonic() - started < 30
        ):
            time.sleep(0.01)
        if kills % 2 == 1:  # aim at a checkpoint write: kill as soon as one is seen under way
            while (
                not any(run.glob("checkpoints/.tmp-step_*"))
                and process.poll() is None
                and time.monotonic() - started < 30
            ):
                time.sleep(0.0005)
            time.sleep(chance.uniform(0.0, 0.002))
        else:
            time.sleep(chance.uniform(0.5, 2.5) if kills == 0 else chance.uniform(0.0, 0.8))
        known = max(complete_steps(run), default=0)  # checkpoints known to be written before the kill
        if process.poll() is not None:  # finished before the kill
            assert process.returncode == 0
            break
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        mid_save += any((run / "checkpoints").glob(".tmp-step_*")) or any((run / "checkpoints").glob(".old-*"))
        rows = metrics_rows(run)
        logged = int(float(rows[-1]["global_step"])) if rows else 0

        latest = latest_checkpoint(run / "checkpoints") if (run / "checkpoints").is_dir() else None
        if latest is None:
            assert known == 0 and logged <= interval, "a checkpoint was written but none is found"
            continue
        step = int(latest.name[5:])
        assert step >= known, f"checkpoint {known} was complete before the kill, latest is {latest}"
        assert step >= logged - interval, f"metrics were logged up to {logged}, latest checkpoint is {step}"
        resumed = load_trainer(latest)  # the latest checkpoint always loads, as is
        assert resumed.global_step == step
        recover_checkpoints_dir(run / "checkpoints")  # what --resume does first
        assert int(latest_checkpoint(run / "checkpoints").name[5:]) >= step
    assert kills >= 3
    print(f"{kills} kills, {mid_save} during a checkpoint write")

    # Completed: the final checkpoint and metrics are those of a run never killed (built in-process).
    final = latest_checkpoint(run / "checkpoints")
    assert final is not None and final.name == f"step_{CRASH_STEPS:09d}"
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    config = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    reference = make_trainer(config)
    history = History()
    reference.loggers = [history]
    reference.train(config.steps, progress=False)
    _, tree = read_checkpoint(final)
    for key, value in reference.acting.state_dict().items():
        assert torch.equal(tree["agents"]["ppo"][key], value), key
    rows = metrics_rows(run)
    assert [int(float(r["global_step"])) for r in rows] == [step for step, _ in history.rows]
    for row, (step, metrics) in zip(rows, history.rows):
        for key, value in metrics.items():
            if not math.isnan(value):
                assert float(row[key]) == value, (step, key)
