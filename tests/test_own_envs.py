"""Users' own environments: ``make_envs("module:EnvId", ...)`` imports the module that registers EnvId,
``env_kwargs`` reach the env, and each failure is one EnvCreationError line naming the env."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rl_agents.envs import EnvCreationError, IndexedEnv, make_envs
from rl_agents.envs.make import env_factory_of

CORRIDOR = "tests.own_envs:Corridor-v0"


def run_episode(envs: gym.vector.VectorEnv, action: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Steps every env with ``action`` until one episode ends: (steps, terminated, truncated)."""
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (envs.num_envs, 1) and obs.dtype == np.float32
    actions = np.full(envs.num_envs, action)
    for steps in range(1, 100):
        obs, reward, terminated, truncated, _ = envs.step(actions)
        if (terminated | truncated).any():
            return steps, terminated, truncated
    raise AssertionError("no episode ended")


@pytest.mark.parametrize("vectorization", ["sync", "async", "vector"])
def test_a_module_env_steps_resets_and_takes_env_kwargs(vectorization: str) -> None:
    envs = make_envs(CORRIDOR, 2, vectorization, length=3)
    try:
        steps, terminated, truncated = run_episode(envs, 0)  # standing still: truncated after `length` steps
        assert steps == 3 and truncated.all() and not terminated.any()
        steps, terminated, truncated = run_episode(envs, 1)  # walking right: the end after `length` steps
        assert steps == 3 and terminated.all() and not truncated.any()
    finally:
        envs.close()


def test_default_kwargs_and_each_env_is_indexed() -> None:
    envs = make_envs(CORRIDOR, 2)
    try:
        assert [type(env) for env in envs.envs] == [IndexedEnv, IndexedEnv]
        assert run_episode(envs, 0)[0] == 10
    finally:
        envs.close()


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_the_restart_factory_rebuilds_a_module_env(vectorization: str) -> None:
    envs = make_envs(CORRIDOR, 2, vectorization, length=3)
    factory = env_factory_of(envs)
    envs.close()
    assert factory is not None
    fresh = factory()
    try:
        assert type(fresh) is type(envs) and fresh.num_envs == 2
        assert run_episode(fresh, 0)[0] == 3
    finally:
        fresh.close()


@pytest.mark.parametrize(
    ("env_id", "kwargs", "message"),
    [
        (
            "nope_mod:X-v0",
            {},
            "environment 'nope_mod:X-v0': cannot import module 'nope_mod' "
            "(ModuleNotFoundError: No module named 'nope_mod')",
        ),
        (
            "tests.own_envs:Nope-v0",
            {},
            "environment 'tests.own_envs:Nope-v0': module 'tests.own_envs' was imported but registers no "
            "'Nope-v0'; it registers: Corridor-v0",
        ),
        (
            "CartPole-v1",
            {"lenght": 3},
            "environment 'CartPole-v1' with env_kwargs {'lenght': 3}: "
            "CartPoleEnv.__init__() got an unexpected keyword argument 'lenght'",
        ),
        (
            CORRIDOR,
            {"length": 0},
            f"environment '{CORRIDOR}' with env_kwargs {{'length': 0}}: length must be at least 1, got 0",
        ),
    ],
)
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_each_creation_failure_is_one_line_naming_the_env(
    env_id: str, kwargs: dict, message: str, vectorization: str
) -> None:
    with pytest.raises(EnvCreationError, match=f"^{re.escape(message)}$"):
        make_envs(env_id, 2, vectorization, **kwargs)


def test_a_module_that_raises_on_import_is_named_with_its_error(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "broken_envs.py").write_text("raise RuntimeError('no simulator here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = "environment 'broken_envs:X-v0': cannot import module 'broken_envs' (RuntimeError: no simulator here)"
    with pytest.raises(EnvCreationError, match=f"^{re.escape(message)}$") as caught:
        make_envs("broken_envs:X-v0", 1)
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_the_vector_path_names_bad_kwargs_and_envpool_refuses_module_envs() -> None:
    message = f"environment '{CORRIDOR}' with env_kwargs {{'lenght': 3}}: "
    with pytest.raises(EnvCreationError, match=f"^{re.escape(message)}.*unexpected keyword argument 'lenght'$"):
        make_envs(CORRIDOR, 2, "vector", lenght=3)
    with pytest.raises(EnvCreationError, match=f"^environment '{CORRIDOR}': vectorization 'envpool' makes EnvPool"):
        make_envs(CORRIDOR, 2, "envpool")


def test_a_worker_that_cannot_make_its_env_is_an_env_creation_error(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "worker_only_envs.py").write_text(
        textwrap.dedent(
            """
            import multiprocessing

            import gymnasium as gym

            from tests.own_envs import CorridorEnv


            class MainProcessOnly(CorridorEnv):
                def __init__(self):
                    if multiprocessing.parent_process() is not None:
                        raise RuntimeError("no display in a worker")
                    super().__init__()


            if "MainOnly-v0" not in gym.registry:
                gym.register("MainOnly-v0", entry_point=MainProcessOnly)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    message = "environment 'worker_only_envs:MainOnly-v0': a worker process failed to create it"
    with pytest.raises(EnvCreationError, match=f"^{re.escape(message)}"):
        make_envs("worker_only_envs:MainOnly-v0", 1, "async")
