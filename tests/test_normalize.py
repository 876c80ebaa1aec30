"""Running statistics against hand-computed references."""

import numpy as np
import pytest
import torch

from rl_agents.core.normalize import ReturnScaler, RunningMeanStd


def test_running_mean_std_merges_batches_like_one_big_batch() -> None:
    data = np.array([[1.0, 10.0], [3.0, 14.0], [5.0, 18.0], [7.0, 30.0], [9.0, 2.0]])
    rms = RunningMeanStd((2,), epsilon=0.0 + 1e-12)
    rms.update(torch.tensor(data[:2]))
    rms.update(torch.tensor(data[2:]))
    assert rms.mean.tolist() == pytest.approx(data.mean(axis=0).tolist(), rel=1e-6)
    assert rms.var.tolist() == pytest.approx(data.var(axis=0).tolist(), rel=1e-6)
    assert float(rms.count) == pytest.approx(5.0)


def test_normalize_clips() -> None:
    rms = RunningMeanStd((), epsilon=1e-12)
    rms.update(torch.tensor([0.0, 2.0]))  # mean 1, var 1
    out = rms.normalize(torch.tensor([1.0, 3.0, 100.0]), clip=5.0)
    assert out.tolist() == pytest.approx([0.0, 2.0, 5.0], abs=1e-6)


def test_return_scaler_divides_by_std_of_discounted_return_and_restarts_after_done() -> None:
    scaler = ReturnScaler(num_envs=1, gamma=0.5)
    scaler.stats.count.fill_(1e-12)
    rewards = torch.tensor([[1.0], [1.0], [1.0], [1.0]])
    dones = torch.tensor([[False], [True], [False], [False]])
    scaler.update(rewards, dones)
    # returns: 1, 1.5 (episode ends), 1, 1.5  -> mean 1.25, var 0.0625
    expected_returns = np.array([1.0, 1.5, 1.0, 1.5])
    assert float(scaler.stats.var) == pytest.approx(expected_returns.var(), rel=1e-6)
    assert float(scaler.running_return[0]) == pytest.approx(1.5)
    scaled = scaler.scale(torch.tensor([0.5, -0.5]))
    assert scaled.tolist() == pytest.approx([0.5 / 0.25, -0.5 / 0.25], rel=1e-5)


def test_plot_smoothing_is_a_trailing_moving_average() -> None:
    from rl_agents.plotting import smoothed

    assert smoothed([1.0, 3.0, 5.0, 7.0], window=2) == pytest.approx([1.0, 2.0, 4.0, 6.0])
    assert smoothed([1.0, 3.0], window=1) == [1.0, 3.0]
