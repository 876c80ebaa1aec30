"""MinAtar (the ``minatar`` extra): its family, the channels-first uint8 frames, sync and async vector envs."""

from __future__ import annotations

import functools
import warnings

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minatar")

from rl_agents.core.nets import image_layout
from rl_agents.envs.make import (
    ChannelsFirstUint8,
    _env_family,
    _make_one,
    _register_family,
    family_wrappers,
    make_envs,
    samples_when_evaluated,
)

# game: (channels, actions of the minimal action set, -v1)
GAMES = {
    "Breakout": (4, 3),
    "SpaceInvaders": (6, 4),
    "Asterix": (4, 5),
    "Freeway": (7, 3),
    "Seaquest": (10, 6),
}


def test_minatar_ids_are_their_own_family_evaluated_greedily() -> None:
    assert _env_family("MinAtar/Breakout-v1") == "minatar"
    assert _env_family("minatar.gym:MinAtar/Seaquest-v1") == "minatar"  # the "module:EnvId" form
    assert _env_family("Breakout-v1") == "gymnasium"
    assert not samples_when_evaluated("MinAtar/Breakout-v1")
    assert family_wrappers("MinAtar/Breakout-v1") == [ChannelsFirstUint8]


def test_registering_twice_registers_once_without_warnings() -> None:
    _register_family("minatar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium's "Overriding environment ..." would raise
        _register_family("minatar")
    minatar_ids = sorted(key for key in gym.registry if key.startswith("MinAtar/"))
    assert minatar_ids == sorted(f"MinAtar/{game}-v{version}" for game in GAMES for version in (0, 1))


@pytest.mark.parametrize("game", sorted(GAMES))
def test_each_game_observes_channels_first_uint8_frames(game: str) -> None:
    channels, actions = GAMES[game]
    envs = make_envs(f"MinAtar/{game}-v1", 2)
    try:
        assert envs.single_observation_space == gym.spaces.Box(0, 1, (channels, 10, 10), np.uint8)
        assert envs.single_action_space == gym.spaces.Discrete(actions)
        # The library's networks read it as `channels` planes of 10x10 (channels-last would misread 6, 7, 10).
        assert image_layout(envs.single_observation_space.shape) == (channels, 10, 10, False)
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (2, channels, 10, 10) and obs.dtype == np.uint8
        assert set(np.unique(obs)) <= {0, 1} and obs.sum() > 0  # something is on the screen
        obs, reward, terminated, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
        assert obs.shape == (2, channels, 10, 10) and obs.dtype == np.uint8
        assert reward.shape == terminated.shape == truncated.shape == (2,)
        assert envs.single_observation_space.contains(obs[0])
    finally:
        envs.close()


@pytest.mark.parametrize("game", ["Breakout", "Seaquest"])
def test_frames_are_the_raw_frames_transposed(game: str) -> None:
    """Seeded alike, the wrapped env's frames are the raw env's (H, W, C) frames as (C, H, W), step by step
    (Seaquest is 10x10x10: only the values tell a wrong axis order from the right one)."""
    raw = gym.make(f"MinAtar/{game}-v1")
    envs = make_envs(f"MinAtar/{game}-v1", 1)
    try:
        raw_obs, _ = raw.reset(seed=7)
        obs, _ = envs.reset(seed=7)
        assert raw_obs.shape == (10, 10, GAMES[game][0]) and raw_obs.dtype == np.bool_
        np.testing.assert_array_equal(obs[0], np.transpose(raw_obs, (2, 0, 1)).astype(np.uint8))
        rng = np.random.default_rng(0)
        compared = 0
        for _ in range(60):
            action = int(rng.integers(GAMES[game][1]))
            raw_obs, raw_reward, raw_terminated, _, _ = raw.step(action)
            obs, reward, terminated, _, _ = envs.step(np.array([action]))
            np.testing.assert_array_equal(obs[0], np.transpose(raw_obs, (2, 0, 1)).astype(np.uint8))
            assert reward[0] == raw_reward and bool(terminated[0]) == raw_terminated
            compared += 1
            if raw_terminated:
                break
        assert compared >= 5
    finally:
        raw.close()
        envs.close()


def test_async_vector_envs_give_the_sync_frames() -> None:
    sync = make_envs("MinAtar/SpaceInvaders-v1", 2, "sync")
    asynchronous = make_envs("MinAtar/SpaceInvaders-v1", 2, "async")
    try:
        assert isinstance(asynchronous, gym.vector.AsyncVectorEnv)
        assert asynchronous.single_observation_space == gym.spaces.Box(0, 1, (6, 10, 10), np.uint8)
        sync_obs, _ = sync.reset(seed=3)
        async_obs, _ = asynchronous.reset(seed=3)
        assert async_obs.shape == (2, 6, 10, 10) and async_obs.dtype == np.uint8
        np.testing.assert_array_equal(async_obs, sync_obs)
        for action in (1, 2, 3, 0, 3):
            actions = np.full(2, action, dtype=np.int64)
            sync_obs, sync_reward, *_ = sync.step(actions)
            async_obs, async_reward, *_ = asynchronous.step(actions)
            np.testing.assert_array_equal(async_obs, sync_obs)
            np.testing.assert_array_equal(async_reward, sync_reward)
    finally:
        sync.close()
        asynchronous.close()


def test_a_spawned_worker_registers_the_minatar_ids_itself() -> None:
    """A spawned (or forkserver, Python 3.14's default) worker starts with gymnasium's bare registry."""
    env_fn = functools.partial(_make_one, "MinAtar/Freeway-v1", family_wrappers("MinAtar/Freeway-v1"), {}, 0)
    envs = gym.vector.AsyncVectorEnv([env_fn], context="spawn")
    try:
        obs, _ = envs.reset(seed=0)
        assert obs.shape == (1, 7, 10, 10) and obs.dtype == np.uint8
        obs, *_ = envs.step(np.array([1]))
        assert obs.shape == (1, 7, 10, 10)
    finally:
        envs.close()


@pytest.mark.parametrize("game", list(GAMES))
def test_env_state_round_trip_continues_the_same_game(game: str) -> None:
    """Checkpoints hold MinAtar's game state (positions, maps, its RandomState): a restored copy plays on
    exactly as the original (sticky actions and spawns included)."""
    from rl_agents.envs.state import capture_env_state, restore_env_state

    envs = make_envs(f"MinAtar/{game}-v1", 2)
    obs, _ = envs.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        obs, *_ = envs.step(rng.integers(0, envs.single_action_space.n, 2))
    tensors, state = capture_env_state(envs, obs)
    actions = rng.integers(0, envs.single_action_space.n, (200, 2))
    original = [envs.step(action)[:2] for action in actions]
    copy = make_envs(f"MinAtar/{game}-v1", 2)
    copy.reset(seed=99)
    restore_env_state(copy, tensors, state)
    restored = [copy.step(action)[:2] for action in actions]
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(original, restored))
    assert any(r.any() for _, r in original) or game == "Freeway"  # some reward happened: a real game was played
