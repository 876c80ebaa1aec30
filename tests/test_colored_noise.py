"""Colored exploration noise (Eberhard et al. 2023) and SAC's ``colored_noise_beta``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import SAC
from rl_agents.core.colored_noise import ColoredNoise, powerlaw_noise
from tests.helpers import bind_standalone

OBS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
ACTIONS = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
CPU = torch.device("cpu")


def lag_one_correlation(sequences: torch.Tensor) -> float:
    return float((sequences[..., 1:] * sequences[..., :-1]).mean() / sequences.var())


@pytest.mark.parametrize(("beta", "low", "high"), [(0.0, -0.05, 0.05), (1.0, 0.6, 0.9), (2.0, 0.98, 1.0)])
def test_noise_values_are_standard_normal_and_as_correlated_as_their_color(beta: float, low: float, high: float):
    sequences = powerlaw_noise((400, 1), 1000, beta, torch.Generator().manual_seed(0), CPU)
    assert sequences.shape == (400, 1, 1000)
    assert low <= lag_one_correlation(sequences) <= high
    if beta < 2:  # red noise's variance is carried by a few low frequencies: too noisy to pin down here
        assert abs(float(sequences.var()) - 1.0) < 0.1


def test_an_odd_length_draws_sequences_of_that_length() -> None:
    assert powerlaw_noise((2, 3), 7, 1.0, None, CPU).shape == (2, 3, 7)


def test_the_sequences_are_used_one_step_per_call_and_drawn_again_when_used_up() -> None:
    noise = ColoredNoise(num_envs=2, action_dim=3, beta=1.0, length=4)
    generator = torch.Generator().manual_seed(1)
    first = [noise.sample(generator).clone() for _ in range(4)]
    assert torch.equal(torch.stack(first, dim=-1), noise.sequences)  # one column per call, in order
    fifth = noise.sample(generator)
    assert int(noise.position) == 1 and torch.equal(fifth, noise.sequences[:, :, 0])
    assert not torch.equal(fifth, first[0])  # a new draw
    with pytest.raises(ValueError, match="at least 2 steps"):
        ColoredNoise(1, 1, 1.0, length=1)


def test_a_restored_noise_state_continues_the_same_sequence() -> None:
    noise = ColoredNoise(num_envs=1, action_dim=1, beta=1.0, length=8)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        noise.sample(generator)
    state, generator_state = {k: v.clone() for k, v in noise.state_dict().items()}, generator.get_state()
    expected = torch.stack([noise.sample(generator) for _ in range(10)])
    restored = ColoredNoise(num_envs=1, action_dim=1, beta=1.0, length=8)
    restored.load_state_dict(state)
    generator.set_state(generator_state)
    assert torch.equal(torch.stack([restored.sample(generator) for _ in range(10)]), expected)


def test_sac_collects_with_the_colored_sequence_and_samples_white_noise_otherwise() -> None:
    sac = bind_standalone(SAC(colored_noise_beta=1.0, colored_noise_length=16), OBS, ACTIONS, num_envs=2)
    obs = torch.zeros(2, 2)
    action = sac.act(obs)["action"]
    mean, log_std = sac.actor(obs)
    expected = torch.tanh(mean + log_std.exp() * sac.exploration_noise.sequences[:, :, 0])
    torch.testing.assert_close(action, expected)
    assert {"exploration_noise.sequences", "exploration_noise.position"} <= sac.state_dict().keys()  # checkpointed
    sac.act(torch.zeros(1, 2))  # one observation (e.g. Policy.predict): white noise, the sequence untouched
    assert int(sac.exploration_noise.position) == 1
    white = bind_standalone(SAC(), OBS, ACTIONS, num_envs=2)
    assert white.exploration_noise is None and not any("exploration_noise" in key for key in white.state_dict())
    with pytest.raises(ValueError, match="colored_noise_beta must be in"):
        SAC(colored_noise_beta=-1.0)
