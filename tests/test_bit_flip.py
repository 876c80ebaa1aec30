"""The goal-conditioned bit flipping env (rl_agents/BitFlip-v0): spaces, flips, the sparse reward and its
batched recomputation, truncation, seeding, registration, and sync/async vector envs."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rl_agents.envs import BitFlipEnv, make_envs, register_bit_flip
from rl_agents.envs.bit_flip import ENV_ID

KEYS = ["observation", "achieved_goal", "desired_goal"]


def bits(text: str) -> np.ndarray:
    """ "0110" as the float32 bit vector [0, 1, 1, 0]."""
    return np.array([float(char) for char in text], dtype=np.float32)


def env_at(state: str, goal: str, **kwargs: object) -> BitFlipEnv:
    """A reset env whose bits and goal are set by hand."""
    env = BitFlipEnv(n_bits=len(state), **kwargs)
    env.reset(seed=0)
    env.state, env.goal = bits(state), bits(goal)
    return env


def test_spaces() -> None:
    env = BitFlipEnv(n_bits=5)
    box = gym.spaces.Box(0, 1, (5,), np.float32)
    assert list(env.observation_space.spaces) == KEYS
    assert all(env.observation_space[key] == box for key in KEYS)
    assert env.action_space == gym.spaces.Discrete(5)
    assert BitFlipEnv(n_bits=5, continuous=True).action_space == gym.spaces.Box(-1, 1, (5,), np.float32)
    obs, info = env.reset(seed=0)
    assert info == {} and list(obs) == KEYS and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["achieved_goal"], obs["observation"])


@pytest.mark.parametrize("n_bits", [1, 2, 3])
def test_reset_is_never_solved(n_bits: int) -> None:
    """Few bits, many resets: a start equal to the goal would come up often if it were not redrawn."""
    env = BitFlipEnv(n_bits=n_bits)
    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        assert not np.array_equal(obs["achieved_goal"], obs["desired_goal"])


def test_a_discrete_step_flips_exactly_the_chosen_bit() -> None:
    env = env_at("0110", "1111")
    obs, reward, terminated, truncated, info = env.step(2)
    np.testing.assert_array_equal(obs["observation"], bits("0100"))
    np.testing.assert_array_equal(obs["achieved_goal"], bits("0100"))
    np.testing.assert_array_equal(obs["desired_goal"], bits("1111"))
    assert (reward, terminated, truncated, info) == (-1.0, False, False, {"is_success": False})
    obs, *_ = env.step(np.int64(0))  # as a vector env passes it
    np.testing.assert_array_equal(obs["observation"], bits("1100"))


def test_a_continuous_step_flips_the_bits_with_a_positive_action() -> None:
    env = env_at("0110", "1111", continuous=True)
    obs, *_ = env.step(np.array([0.5, -0.5, 0.0, 1.0], dtype=np.float32))  # 0 is not positive: bit 2 stays
    np.testing.assert_array_equal(obs["observation"], bits("1111"))
    obs, *_ = env.step(np.array([-1.0, 0.1, 0.2, -0.3]))  # float64 is taken too
    np.testing.assert_array_equal(obs["observation"], bits("1001"))


def test_reward_zero_and_terminated_exactly_when_solved() -> None:
    env = env_at("0110", "0111")  # one flip (bit 3) away
    _, reward, terminated, _, info = env.step(1)  # a wrong flip: now two away
    assert (reward, terminated, info["is_success"]) == (-1.0, False, False)
    _, reward, terminated, _, info = env.step(1)
    assert (reward, terminated, info["is_success"]) == (-1.0, False, False)
    obs, reward, terminated, truncated, info = env.step(3)
    np.testing.assert_array_equal(obs["achieved_goal"], obs["desired_goal"])
    assert type(reward) is float
    assert (reward, terminated, truncated, info) == (0.0, True, False, {"is_success": True})


def test_a_seeded_episode_is_solved_by_flipping_the_differing_bits() -> None:
    env = BitFlipEnv(n_bits=8)
    obs, _ = env.reset(seed=3)
    differing = np.flatnonzero(obs["observation"] != obs["desired_goal"])
    for count, bit in enumerate(differing, start=1):
        _, reward, terminated, truncated, _ = env.step(int(bit))
        assert terminated == (count == len(differing)) and reward == (0.0 if terminated else -1.0)
        assert not truncated  # at most n_bits flips are needed


def test_truncated_after_n_bits_steps() -> None:
    env = env_at("0000", "1111")
    for step in range(1, 5):
        _, _, terminated, truncated, _ = env.step(0)  # bit 0 back and forth: never solved
        assert not terminated and truncated == (step == 4)
    env = env_at("0000", "1111", max_episode_steps=2)
    assert [env.step(0)[3] for _ in range(2)] == [False, True]
    env.reset(seed=1)
    assert env.steps == 0 and not env.step(0)[3]  # a reset starts the count anew


def test_compute_reward_is_vectorized() -> None:
    env = BitFlipEnv(n_bits=3)
    achieved = np.stack([bits("010"), bits("110"), bits("111")])
    desired = np.stack([bits("011"), bits("110"), bits("000")])
    rewards = env.compute_reward(achieved, desired, [{}, {}, {}])
    assert rewards.dtype == np.float32 and rewards.shape == (3,)
    np.testing.assert_array_equal(rewards, [-1.0, 0.0, -1.0])
    # Two leading batch dimensions, and one goal pair (a 0-d array).
    np.testing.assert_array_equal(env.compute_reward(achieved[None], desired[None], None), [[-1.0, 0.0, -1.0]])
    assert env.compute_reward(bits("101"), bits("101"), {}) == 0.0
    assert env.compute_reward(bits("101"), bits("100"), {}).shape == ()


def test_the_same_seed_gives_the_same_episodes() -> None:
    def episode(seed: int) -> list[np.ndarray]:
        env = BitFlipEnv(n_bits=16)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        seen = [obs["observation"], obs["desired_goal"]]
        for _ in range(5):
            seen.append(env.step(env.action_space.sample())[0]["observation"])
        return seen

    np.testing.assert_array_equal(episode(7), episode(7))
    assert not np.array_equal(episode(7)[:2], episode(8)[:2])


def test_registered_once_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium's "Overriding environment ..." would raise
        register_bit_flip()
        register_bit_flip()
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "rl_agents.envs.bit_flip:BitFlipEnv" and spec.max_episode_steps is None
    env = gym.make(ENV_ID, n_bits=6, continuous=True)
    assert isinstance(env.unwrapped, BitFlipEnv) and env.unwrapped.max_episode_steps == 6


@pytest.mark.parametrize("kwargs", [{}, {"continuous": True}, {"render_mode": "ansi"}])
def test_gymnasium_env_checker_passes(kwargs: dict[str, object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(ENV_ID, n_bits=5, **kwargs).unwrapped)


def test_ansi_render_shows_the_bits_and_the_goal() -> None:
    env = env_at("0110", "1111", render_mode="ansi")
    assert env.render() == "bits 0110  goal 1111  step 0/4"


@pytest.mark.parametrize("n_bits", [0, -3, 2.5, "8", True, None])
def test_invalid_n_bits_is_a_value_error_naming_it(n_bits: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"n_bits must be an int >= 1, got {n_bits!r}")):
        BitFlipEnv(n_bits=n_bits)  # type: ignore[arg-type]


def test_invalid_actions_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"bit index in \[0, 4\), got 4"):
        env_at("0110", "1111").step(4)
    with pytest.raises(ValueError, match=r"shape \(4,\), got \(3,\)"):
        env_at("0110", "1111", continuous=True).step(np.zeros(3, dtype=np.float32))


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_make_envs_observes_dicts_of_bits(vectorization: str) -> None:
    """Async workers are spawned processes: they have the id because importing rl_agents.envs registers it."""
    envs = make_envs(ENV_ID, 2, vectorization, n_bits=8)
    try:
        assert envs.single_action_space == gym.spaces.Discrete(8)
        obs, _ = envs.reset(seed=0)
        assert list(obs) == KEYS
        assert all(obs[key].shape == (2, 8) and obs[key].dtype == np.float32 for key in KEYS)
        differing = obs["observation"] != obs["desired_goal"]
        action = np.argmax(differing, axis=1)  # a bit that differs: each env gets one flip closer
        obs, reward, terminated, truncated, info = envs.step(action)
        np.testing.assert_array_equal(differing.sum(axis=1) - 1, (obs["observation"] != obs["desired_goal"]).sum(1))
        assert reward.shape == terminated.shape == truncated.shape == (2,)
        np.testing.assert_array_equal(terminated, differing.sum(axis=1) == 1)
        np.testing.assert_array_equal(info["is_success"], terminated)
    finally:
        envs.close()


def test_list_shows_the_bit_flip_family() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rl_agents.cli", "list"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert ENV_ID in result.stdout
