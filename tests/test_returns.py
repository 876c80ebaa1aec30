"""GAE against hand-computed references."""

import pytest
import torch

from rl_agents.returns import gae


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
