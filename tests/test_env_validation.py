"""Environment outputs are validated at the boundary (rl_agents.training.env_checks, IndexedEnv).

Rewards must be numbers (bool, int or float; not strings, not objects), terminated and truncated
bools (not int 0/1, not strings), observations of the observation space's dtype and shape; a NaN or
inf is named with its env, and a finite value that overflows float32 says so. Each case runs through
the user's loop (``trainer.act`` / ``envs.step`` / ``trainer.observe``) and the collector's own
stepping (``trainer.train``), and the message is checked whole.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rl_agents import PPO, Trainer
from rl_agents.envs import EnvError, IndexedEnv
from rl_agents.envs.failures import close_quietly
from rl_agents.training.errors import NonFiniteObservationError

SMALL = {"num_steps": 8, "num_epochs": 2, "num_minibatches": 2}
NUM_ENVS = 3
BAD = 2  # the env that misbehaves
AT = 3  # at its 3rd step (the 3rd vector step: episodes are 5 steps long), after 2 good vector steps
STEP = (AT - 1) * NUM_ENVS  # the global step when the bad values arrive


class StepEnv(gym.Env):
    """obs = [step in episode, 0.5] (float32); reward 1.0; episodes of 5 steps (truncated)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, False, self.t >= 5, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.t, 0.5], dtype=np.float32)


class CorruptStep(gym.Wrapper):
    """Replaces one of the values ``step`` returns (``obs``, ``reward``, ``terminated``, ``truncated``)
    with ``value`` at the env's ``at``-th step."""

    def __init__(self, env: gym.Env, field: str, value: Any, at: int = AT):
        super().__init__(env)
        self.field, self.value, self.at, self.steps = field, value, at, 0

    def step(self, action):
        result = list(self.env.step(action))
        self.steps += 1
        if self.steps == self.at:
            result[("obs", "reward", "terminated", "truncated").index(self.field)] = self.value
        return tuple(result)


def indexed_envs(field: str, value: Any, vector: type = gym.vector.SyncVectorEnv) -> gym.vector.VectorEnv:
    """Envs each wrapped in IndexedEnv (as make_envs builds them), env ``BAD`` corrupting ``field``."""

    def make(index: int) -> gym.Env:
        env = CorruptStep(StepEnv(), field, value) if index == BAD else StepEnv()
        return IndexedEnv(env, index)

    return vector([lambda index=index: make(index) for index in range(NUM_ENVS)])


class CorruptBatch(gym.vector.VectorWrapper):
    """Passes the vector env's ``(obs, reward, terminated, truncated)`` through ``corrupt`` at its
    ``at``-th step (a vector env not built of IndexedEnvs, or a wrapper of the whole vector env)."""

    def __init__(self, envs: gym.vector.VectorEnv, corrupt: Callable[[list], None], at: int = AT):
        super().__init__(envs)
        self.corrupt, self.at, self.steps = corrupt, at, 0

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        values = [obs, reward, terminated, truncated]
        self.steps += 1
        if self.steps == self.at:
            self.corrupt(values)
        return (*values, info)


def batch_envs(corrupt: Callable[[list], None]) -> gym.vector.VectorEnv:
    return CorruptBatch(gym.vector.SyncVectorEnv([StepEnv for _ in range(NUM_ENVS)]), corrupt)


def user_loop(trainer: Trainer, envs: gym.vector.VectorEnv, steps: int = 8) -> None:
    """The public env loop of the Trainer's docstring."""
    obs, _ = envs.reset(seed=0)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
        trainer.observe(obs, reward, terminated, truncated, info)


def run(path: str, envs: gym.vector.VectorEnv) -> Trainer:
    """Collect with ``envs`` through the user's loop or ``Trainer.train``; returns the trainer."""
    trainer = Trainer(envs, [PPO()], **SMALL)
    if path == "observe":
        user_loop(trainer, envs)
    else:
        trainer.train(48, progress=False)
    return trainer


PATHS = ["observe", "train"]


# ------------------------------------------------------------------ one env's values (IndexedEnv)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reward", "1.5", "env 2 returned a reward of '1.5' (str) from step; expected a number (bool, int or float)"),
        (
            "reward",
            None,
            "env 2 returned a reward of None (NoneType) from step; expected a number (bool, int or float)",
        ),
        ("terminated", "False", "env 2 returned terminated='False' (str) from step; expected a bool (True or False)"),
        ("terminated", 1, "env 2 returned terminated=1 (int) from step; expected a bool (True or False)"),
        (
            "truncated",
            np.int64(0),
            "env 2 returned truncated=np.int64(0) (int64) from step; expected a bool (True or False)",
        ),
        (
            "obs",
            np.array([3.0, 0.5]),
            "env 2 returned an observation of dtype float64 from step; its observation space has dtype float32",
        ),
    ],
    ids=["string-reward", "none-reward", "string-terminated", "int-terminated", "int-truncated", "float64-obs"],
)
def test_a_bad_value_from_an_indexed_env_names_the_env(path: str, field: str, value: Any, message: str) -> None:
    # In the user's loop the error comes from envs.step, before the vector env converts the value
    # (it would store "1.5" as 1.5 and "False" as True): nothing reaches trainer.observe.
    with pytest.raises(EnvError) as caught:
        run(path, indexed_envs(field, value))
    assert str(caught.value) == message
    assert caught.value.indices == (BAD,)


def test_a_bad_reward_from_an_async_worker_names_the_env() -> None:
    envs = indexed_envs("reward", "1.5", vector=gym.vector.AsyncVectorEnv)
    try:
        with pytest.raises(EnvError) as caught:
            run("train", envs)
        assert str(caught.value) == (
            "env 2 returned a reward of '1.5' (str) from step; expected a number (bool, int or float)"
        )
        assert caught.value.indices == (BAD,)
    finally:
        close_quietly(envs)


@pytest.mark.parametrize("path", PATHS)
def test_a_reward_that_overflows_float32_says_so(path: str) -> None:
    # The vector env stores the reward as float64 (finite); as float32 it would be inf.
    with pytest.raises(EnvError) as caught:
        run(path, indexed_envs("reward", 1e39))
    assert not isinstance(caught.value, NonFiniteObservationError)
    assert str(caught.value) == (
        f"reward of env 2 returned by step at global step {STEP} overflows float32: 1e+39 "
        "(the largest float32 is 3.4028235e+38)"
    )
    assert caught.value.indices == (BAD,)


@pytest.mark.parametrize("path", PATHS)
def test_a_nan_reward_names_the_env(path: str) -> None:
    with pytest.raises(NonFiniteObservationError) as caught:
        run(path, indexed_envs("reward", float("nan")))
    assert str(caught.value) == f"non-finite reward of env 2 returned by step at global step {STEP}: nan"
    assert caught.value.indices == (BAD,)


# ------------------------------------------------------------------ the vector env's arrays
def _object_reward(values: list) -> None:
    values[1] = values[1].astype(object)
    values[1][BAD] = "1.5"


def _set(position: int, make: Callable[[Any], Any]) -> Callable[[list], None]:
    def corrupt(values: list) -> None:
        values[position] = make(values[position])

    return corrupt


def _ragged(obs: np.ndarray) -> list:
    rows = list(obs)
    rows[BAD] = np.zeros(3, np.float32)
    return rows


def _overflowing(reward: np.ndarray) -> np.ndarray:
    reward = reward.astype(np.float64)
    reward[BAD] = -1e39
    return reward


def _nan(reward: np.ndarray) -> np.ndarray:
    reward = reward.copy()
    reward[BAD] = np.nan
    return reward


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("corrupt", "message", "indices"),
    [
        (
            _object_reward,
            "reward of env 2 returned by step is '1.5' (str); expected numbers (bool, int or float)",
            (2,),
        ),
        (
            _set(1, lambda reward: reward.astype(str)),
            "reward returned by step: dtype <U32 ['1.0', '1.0', '1.0']; expected numbers (bool, int or float)",
            (),
        ),
        (
            _set(2, lambda terminated: terminated.astype(np.int64)),
            "terminated returned by step: dtype int64 [0, 0, 0]; expected bools (True or False; int 0/1 is refused)",
            (),
        ),
        (
            _set(3, lambda truncated: np.array(["False"] * NUM_ENVS)),
            "truncated returned by step: dtype <U5 ['False', 'False', 'False']; "
            "expected bools (True or False; int 0/1 is refused)",
            (),
        ),
        (
            _set(0, lambda obs: obs.astype(np.float64)),
            "observations returned by step have dtype float64, not the observation space's float32",
            (),
        ),
        (
            _set(0, lambda obs: np.zeros((NUM_ENVS, 3), np.float32)),
            "observations returned by step have shape (3, 3); expected (3, 2) "
            "(3 envs x the observation space's shape (2,))",
            (),
        ),
        (
            _set(0, _ragged),
            "observations returned by step cannot be stacked: shapes env 2: (3,); expected (2,) per env",
            (2,),
        ),
        (
            _set(1, _overflowing),
            f"reward of env 2 returned by step at global step {STEP} overflows float32: -1e+39 "
            "(the largest float32 is 3.4028235e+38)",
            (2,),
        ),
        (_set(1, _nan), f"non-finite reward of env 2 returned by step at global step {STEP}: nan", (2,)),
    ],
    ids=[
        "object-reward",
        "string-rewards",
        "int-terminated",
        "string-truncated",
        "float64-obs",
        "obs-shape",
        "ragged-obs",
        "overflowing-reward",
        "nan-reward",
    ],
)
def test_bad_arrays_from_the_vector_env_are_refused(
    path: str, corrupt: Callable[[list], None], message: str, indices: tuple[int, ...]
) -> None:
    envs = batch_envs(corrupt)
    trainer = Trainer(envs, [PPO()], **SMALL)
    with pytest.raises(EnvError) as caught:
        user_loop(trainer, envs) if path == "observe" else trainer.train(48, progress=False)
    assert str(caught.value) == message
    assert caught.value.indices == indices
    # Nothing of the bad step was stored: the trainer is back at an update boundary (train) or
    # still at the step before (observe).
    assert trainer.global_step == STEP and trainer.collector.step_in_rollout == (AT - 1 if path == "observe" else 0)


def test_an_observation_that_overflows_float32_says_so() -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.DtypeObservation(StepEnv(), np.float64)] * NUM_ENVS)
    assert envs.single_observation_space == space
    trainer = Trainer(envs, [PPO()], **SMALL)
    obs, _ = envs.reset(seed=0)
    obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
    obs[BAD, 1] = 1e39
    with pytest.raises(EnvError) as caught:
        trainer.observe(obs, reward, terminated, truncated, info)
    assert str(caught.value) == (
        "observation of env 2 returned by step at global step 0 overflows float32: element 1 is 1e+39 "
        "(the largest float32 is 3.4028235e+38)"
    )
    assert caught.value.indices == (BAD,)


def test_python_lists_of_bools_and_numbers_are_accepted_and_int_flags_refused() -> None:
    envs = gym.vector.SyncVectorEnv([StepEnv for _ in range(NUM_ENVS)])
    trainer = Trainer(envs, [PPO()], **SMALL)
    obs, _ = envs.reset(seed=0)
    obs, *_ = envs.step(trainer.act(obs))
    trainer.observe(obs, [1, 0.5, True], [False, False, True], [False] * NUM_ENVS, {})
    assert trainer.collector.storage.host["reward/extrinsic"][0].tolist() == [1.0, 0.5, 1.0]
    obs, *_ = envs.step(trainer.act(obs))
    with pytest.raises(EnvError) as caught:
        trainer.observe(obs, [1.0] * NUM_ENVS, [0, 0, 1], [False] * NUM_ENVS, {})
    assert str(caught.value) == (
        "terminated returned by step: dtype int64 [0, 0, 1]; expected bools (True or False; int 0/1 is refused)"
    )


# ------------------------------------------------------------------ the command line
_CLI_SCRIPT = """
import sys
import gymnasium as gym
from rl_agents.cli import main
from tests.test_env_validation import CorruptStep, StepEnv

gym.register("RlAgentsTestStringReward-v0", entry_point=lambda: CorruptStep(StepEnv(), "reward", "1.5", at=12))
sys.exit(main(["train", "--env", "RlAgentsTestStringReward-v0", "--agents", "ppo", "--steps", "64",
               "--num-envs", "2", "--quiet", "--set", "trainer.num_steps=8", "--set", "trainer.num_epochs=2",
               "--set", "trainer.num_minibatches=2", "--out", sys.argv[1]]))
"""


def test_the_cli_stops_with_one_line_and_status_2_on_a_corrupt_env(tmp_path: Path) -> None:
    # A custom env id cannot be registered from the command line: the subprocess registers it and
    # calls the CLI's main, as `rl-agents train` does.
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CLI_SCRIPT), str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 2, result.stderr
    # Both envs' 12th step is the 14th vector step (one reset step after each 5-step episode):
    # training stops at step 26, after one update (16 steps) and 5 good vector steps.
    settings, *progress, error = result.stderr.splitlines()
    assert settings.startswith("settings: no preset for RlAgentsTestStringReward-v0"), result.stderr
    assert error == (
        "rl-agents: error: training stopped at step 26: env 0 returned a reward of '1.5' (str) from step; "
        "expected a number (bool, int or float); the last good state was saved to "
        f"{run_dir / 'checkpoints' / 'last_good'} (continue with: rl-agents train --resume {run_dir}); "
        "--set trainer.max_env_restarts=N restarts failed environments"
    )
    assert all(line.startswith("step ") for line in progress), result.stderr  # --quiet still shows progress
