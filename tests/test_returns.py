"""GAE, per-stream advantages and intrinsic rewards against hand-computed references."""

import math
import warnings

import pytest
import torch

from rl_agents.core.agent import EXTRINSIC, RewardStream
from rl_agents.core.bonus import intrinsic_reward
from rl_agents.core.normalize import ReturnScaler
from rl_agents.core.returns import explained_variance, gae, next_state_values, stream_advantages


def column(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1)


def flags(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool).unsqueeze(1)


REWARDS = column([1.0, 2.0, 3.0])
VALUES = column([0.5, 1.0, 1.5])
# next_values[1] is the value of the real final observation of the episode ending at step 1;
# next_values[2] is the bootstrap value after the last step of the rollout.
NEXT_VALUES = column([1.0, 2.0, 4.0])


def test_gae_without_episode_end_bootstraps_from_last_value() -> None:
    advantages = gae(REWARDS, VALUES, NEXT_VALUES, flags([0, 0, 0]), flags([0, 0, 0]), gamma=0.5, lam=0.5)
    # deltas: 1 + .5*1 - .5 = 1.0;  2 + .5*2 - 1 = 2.0;  3 + .5*4 - 1.5 = 3.5
    # A2 = 3.5;  A1 = 2 + .25*3.5 = 2.875;  A0 = 1 + .25*2.875 = 1.71875
    assert advantages.squeeze(1).tolist() == pytest.approx([1.71875, 2.875, 3.5])


def test_gae_truncation_bootstraps_from_final_observation_and_cuts_the_chain() -> None:
    advantages = gae(REWARDS, VALUES, NEXT_VALUES, flags([0, 0, 0]), flags([0, 1, 0]), gamma=0.5, lam=0.5)
    # delta1 keeps the bootstrap .5*2; the chain is cut after step 1.
    # A2 = 3.5;  A1 = 2.0;  A0 = 1 + .25*2 = 1.5
    assert advantages.squeeze(1).tolist() == pytest.approx([1.5, 2.0, 3.5])


def test_gae_termination_does_not_bootstrap() -> None:
    advantages = gae(REWARDS, VALUES, NEXT_VALUES, flags([0, 1, 0]), flags([0, 1, 0]), gamma=0.5, lam=0.5)
    # delta1 = 2 - 1 = 1.0;  A1 = 1.0;  A0 = 1 + .25*1 = 1.25
    assert advantages.squeeze(1).tolist() == pytest.approx([1.25, 1.0, 3.5])


def test_gae_with_lambda_one_gives_discounted_return_minus_value() -> None:
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])
    values = torch.zeros(3, 2)
    next_values = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]])
    no_end = torch.zeros(3, 2, dtype=torch.bool)
    advantages = gae(rewards, values, next_values, no_end, no_end, gamma=0.9, lam=1.0)
    # env 0: 1 + .9 + .81 + .729*10 = 10.0;  env 1: 0 + .9*1 + .81*2 + .729*10 = 9.81
    assert advantages[0].tolist() == pytest.approx([10.0, 9.81])


# ---------------------------------------------------------------------------------------------- streams
# A 3-step, 1-env rollout with two streams; the episode terminates at step 1.
STREAMS = (
    RewardStream(EXTRINSIC, gamma=0.5, episodic=True, coef=1.0),
    RewardStream("intrinsic", gamma=0.8, episodic=False, coef=0.5),
)
TWO_VALUES = torch.tensor([[[0.5, 1.0]], [[1.0, 0.0]], [[1.5, 2.0]]])  # [T=3, N=1, streams=2]
TWO_NEXT_VALUES = torch.tensor([[[1.0, 0.0]], [[2.0, 3.0]], [[4.0, 1.0]]])
TWO_REWARDS = {EXTRINSIC: column([1.0, 2.0, 3.0]), "intrinsic": column([0.5, 1.0, 0.25])}
ENDED = flags([0, 1, 0])


def two_stream_advantages(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    calls: list[str] = []

    def rewards_of(stream: RewardStream) -> torch.Tensor:
        calls.append(stream.name)
        return TWO_REWARDS[stream.name]

    out = stream_advantages(TWO_VALUES, TWO_NEXT_VALUES, rewards_of, ENDED, ENDED, valid, STREAMS, gae_lambda=0.5)
    assert calls == [EXTRINSIC, "intrinsic"]
    return out


def test_stream_advantages_mix_episodic_and_non_episodic_streams() -> None:
    advantages, returns, metrics = two_stream_advantages(flags([1, 1, 1]))
    # extrinsic (gamma .5, episodic): deltas 1 + .5*1 - .5 = 1;  2 + 0 (terminal) - 1 = 1;  3 + .5*4 - 1.5 = 3.5
    #   A2 = 3.5;  A1 = 1 (chain cut);  A0 = 1 + .25*1 = 1.25
    # intrinsic (gamma .8, not episodic: bootstraps through the terminal state, chain still cut):
    #   deltas .5 + .8*0 - 1 = -.5;  1 + .8*3 - 0 = 3.4;  .25 + .8*1 - 2 = -.95
    #   A2 = -.95;  A1 = 3.4;  A0 = -.5 + .4*3.4 = .86
    assert returns[:, 0, 0].tolist() == pytest.approx([1.75, 2.0, 5.0])
    assert returns[:, 0, 1].tolist() == pytest.approx([1.86, 3.4, 1.05])
    # 1.0 * extrinsic + 0.5 * intrinsic
    assert advantages[:, 0].tolist() == pytest.approx([1.68, 2.7, 3.025])
    # extrinsic: Var([1.25, 1, 3.5]) / Var([1.75, 2, 5]) = (91/48) / (157/48)
    assert metrics[f"explained_variance/{EXTRINSIC}"] == pytest.approx(66 / 157)
    # intrinsic, in hundredths: sum of squared deviations of [86, 340, -95] is 132021 - 331^2 / 3,
    # of [186, 340, 105] it is 161221 - 631^2 / 3: 1 - 286502 / 85502
    assert metrics["explained_variance/intrinsic"] == pytest.approx(1 - 286502 / 85502)
    assert advantages.dtype == returns.dtype == torch.float32


def test_stream_advantages_explained_variance_counts_valid_steps_only() -> None:
    advantages, _, metrics = two_stream_advantages(flags([1, 1, 0]))
    assert advantages[:, 0].tolist() == pytest.approx([1.68, 2.7, 3.025])  # GAE itself ignores valid
    # extrinsic over steps 0, 1: Var([1.25, 1]) == Var([1.75, 2])
    assert metrics[f"explained_variance/{EXTRINSIC}"] == pytest.approx(0.0, abs=1e-6)
    # intrinsic over steps 0, 1: 1 - (3.4 - .86)^2 / (3.4 - 1.86)^2
    assert metrics["explained_variance/intrinsic"] == pytest.approx(1 - (2.54 / 1.54) ** 2)


def test_next_state_values_evaluates_episode_ends_and_the_last_step() -> None:
    values = torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]])  # [T=3, N=2, 1]
    next_obs = torch.tensor([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]).unsqueeze(-1)  # [T, N, obs 1]
    done = torch.tensor([[False, True], [False, False], [False, False]])
    seen: list[list[float]] = []
    indices: list[tuple[list[int], list[int]]] = []

    def value_of(rows: torch.Tensor, index: tuple[torch.Tensor, ...]) -> torch.Tensor:
        seen.append(rows.squeeze(-1).tolist())
        indices.append((index[0].tolist(), index[1].tolist()))
        return (rows + 0.5).double()  # cast back to the values' dtype

    next_values = next_state_values(values, done, next_obs, value_of)
    assert seen == [[20.0, 50.0, 60.0]]  # (t=0, env 1) ended; t=2 is the rollout's last step
    assert indices == [([0, 2, 2], [1, 0, 1])]  # (steps, envs) of those rows: where a carried state is taken
    assert next_values.squeeze(-1).tolist() == [[3.0, 20.5], [5.0, 6.0], [50.5, 60.5]]
    assert next_values.dtype == torch.float32
    assert done.tolist() == [[False, True], [False, False], [False, False]]  # not modified


def test_explained_variance() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "degrees of freedom <= 0" warning from var()
        assert math.isnan(explained_variance(torch.zeros(0), torch.zeros(0)))
        assert math.isnan(explained_variance(torch.tensor([1.0]), torch.tensor([2.0])))
    assert math.isnan(explained_variance(torch.tensor([1.0, 2.0, 3.0]), torch.full((3,), 2.0)))
    assert math.isnan(explained_variance(torch.tensor([1.0, 2.0]), torch.tensor([1.0, math.inf])))
    # 1 - Var([0, 0, 1]) / Var([1, 2, 4]) = 1 - (1/3) / (7/3)
    assert explained_variance(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])) == pytest.approx(6 / 7)
    assert explained_variance(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == 1.0


# ---------------------------------------------------------------------------------------------- bonus


RAW = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # [T=2, N=2]
RAW_VALID = torch.tensor([[True, True], [True, False]])
REWARD_METRICS = ("reward_mean", "reward_std", "reward_max", "reward_raw_mean")


def test_intrinsic_reward_scales_by_the_never_reset_return_std() -> None:
    scaler = ReturnScaler(2, gamma=0.5)
    reward, metrics = intrinsic_reward(RAW, RAW_VALID, scaler, "bonus")
    # returns: t0 [1, 2]; t1 env 0: .5*1 + 3 = 3.5, env 1 invalid: stays 2 and is not counted.
    assert scaler.running_return.tolist() == [3.5, 2.0]
    # statistics of [1, 2, 3.5] merged into the prior (count 1e-4, mean 0, var 1): mean 13/6, var 19/18
    var = (1e-4 * 1.0 + 3 * (19 / 18) + (13 / 6) ** 2 * 1e-4 * 3 / 3.0001) / 3.0001
    std = math.sqrt(var)
    assert reward.dtype == torch.float32
    assert reward.flatten().tolist() == pytest.approx([1 / std, 2 / std, 3 / std, 0.0], rel=1e-6)
    assert metrics.keys() == {f"bonus_{name}" for name in (*REWARD_METRICS, "return_std")}
    assert metrics["bonus_reward_mean"] == pytest.approx(2 / std, rel=1e-6)
    assert metrics["bonus_reward_std"] == pytest.approx(1 / std, rel=1e-6)
    assert metrics["bonus_reward_max"] == pytest.approx(3 / std, rel=1e-6)
    assert metrics["bonus_reward_raw_mean"] == pytest.approx(2.0)
    assert metrics["bonus_return_std"] == pytest.approx(std, rel=1e-9)


def test_intrinsic_reward_without_normalization_is_raw_and_leaves_the_scaler_alone() -> None:
    scaler = ReturnScaler(2, gamma=0.5)
    reward, metrics = intrinsic_reward(RAW, RAW_VALID, scaler, "bonus", normalize=False)
    assert reward is RAW
    assert scaler.running_return.tolist() == [0.0, 0.0] and float(scaler.stats.count) == pytest.approx(1e-4)
    assert metrics == pytest.approx(
        {
            "bonus_reward_mean": 2.0,
            "bonus_reward_std": 1.0,
            "bonus_reward_max": 3.0,
            "bonus_reward_raw_mean": 2.0,
            "bonus_return_std": 1.0,
        }
    )


def test_intrinsic_reward_metrics_are_nan_without_enough_valid_steps() -> None:
    one_valid = torch.tensor([[True, False], [False, False]])
    _, metrics = intrinsic_reward(RAW, one_valid, ReturnScaler(2, gamma=0.5), "bonus")
    assert math.isnan(metrics["bonus_reward_std"]) and not math.isnan(metrics["bonus_reward_mean"])
    none_valid = torch.zeros(2, 2, dtype=torch.bool)
    reward, metrics = intrinsic_reward(RAW, none_valid, ReturnScaler(2, gamma=0.5), "bonus")
    assert reward.tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert all(math.isnan(metrics[f"bonus_{name}"]) for name in REWARD_METRICS)
    assert metrics["bonus_return_std"] == 1.0
