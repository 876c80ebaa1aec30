"""Run-time contract checks: after each agent's ``preprocess`` every key it declared it provides must be
in the batch, a tensor of leading shape ``[T, N]`` (a reward stream exactly ``[T, N]``), on the learner's
device and finite. A violation names the agent that broke the contract, and the update rolls back: the
trainer is left as it was after its last good update and can still be saved."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch

from rl_agents import PPO, Trainer
from rl_agents.cli.main import _is_user_error
from rl_agents.core.agent import Agent, Batch, ContractError, DataSpec, EnvContext, RewardStream
from rl_agents.training.errors import NonFiniteError, NonFiniteProvidedError
from tests.helpers import assert_same

torch.set_num_threads(1)

NUM_STEPS, NUM_ENVS = 8, 2
ROLLOUT = NUM_STEPS * NUM_ENVS  # env steps per update


def cartpole() -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync")


class CountBonus(Agent):
    """A bonus stream ``count`` plus a ``[T, N, 2]`` feature key, which break their contract in the way
    ``fault`` says on preprocess call ``at`` (from 1). It counts its calls in a buffer it replaces, which
    a failed update must put back."""

    def __init__(self, fault: str = "none", at: int = 2) -> None:
        super().__init__()
        self.fault, self.at = fault, at

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream("count", gamma=0.9, episodic=False, coef=0.5),)

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({"valid"}), provides=frozenset({"reward/count", "count/features"}))

    def preprocess(self, batch: Batch) -> dict[str, float]:
        self.calls = self.calls + 1
        fault = self.fault if int(self.calls) == self.at else "none"
        valid = batch["valid"]
        reward: Any = valid.float() * 0.1
        features = torch.zeros((*valid.shape, 2))
        if fault == "nan":
            reward = reward.clone()
            reward.view(-1)[:3] = float("nan")
            reward.view(-1)[5] = float("inf")
        elif fault == "column":
            reward = reward.unsqueeze(-1)
        elif fault == "meta":
            reward = torch.zeros(valid.shape, device="meta")
        elif fault == "numpy":
            reward = reward.numpy()
        elif fault == "flat":
            features = features.reshape(-1, 2)
        if fault != "missing":
            batch["reward/count"] = reward
        batch["count/features"] = features
        return {}


def learning_state(trainer: Trainer) -> dict[str, Any]:
    """Copies of everything an update changes: the agents' parameters and buffers, the optimizer, counters."""
    return copy.deepcopy(
        {
            "agents": {agent.name: agent.state_dict() for agent in trainer.agents},
            "optimizer": trainer.optimizer.state_dict(),
            "counters": (trainer.num_updates, trainer.learner.total_gradient_steps, trainer.learner.skipped_updates),
        }
    )


def fails_in_update_2(fault: str, tmp_path: Path, error: type[Exception], message: str, **options: Any) -> Exception:
    """Train one good update, then fail in update 2 with ``error`` matching ``message`` (a regex); the
    trainer must be left exactly as after update 1, and still save."""
    trainer = Trainer(cartpole(), [PPO(), CountBonus(fault)], seed=1, num_steps=NUM_STEPS, **options)
    trainer.train(ROLLOUT, progress=False)
    before = learning_state(trainer)
    assert before["counters"][0] == 1
    with pytest.raises(error, match=message) as caught:
        trainer.train(4 * ROLLOUT, progress=False, save_on_error=tmp_path / "checkpoints")
    assert_same(learning_state(trainer), before)
    trainer.save(tmp_path / "ck")
    return caught.value


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "column",
            "agent 'count_bonus' provides 'reward/count' with shape [8, 2, 1]; expected [8, 2] "
            "(a reward stream holds one number per step and env)",
        ),
        (
            "flat",
            "agent 'count_bonus' provides 'count/features' with shape [16, 2]; expected [8, 2, ...] "
            "(batch tensors are [num_steps, num_envs, ...] during preprocessing)",
        ),
        ("meta", "agent 'count_bonus' provides 'reward/count' on device meta; expected cpu (the learner's device)"),
        (
            "numpy",
            "agent 'count_bonus' provides 'reward/count' as ndarray; expected a torch.Tensor of shape [8, 2, ...]",
        ),
    ],
    ids=["reward_column", "flat_rows", "device", "not_a_tensor"],
)
def test_a_provided_key_of_the_wrong_type_shape_or_device_names_the_agent(
    fault: str, message: str, tmp_path: Path
) -> None:
    error = fails_in_update_2(fault, tmp_path, ContractError, f"^{re.escape(message)}$")
    assert not isinstance(error, NonFiniteError)


def test_a_key_preprocess_did_not_write_names_the_agent_and_the_keys_it_left(tmp_path: Path) -> None:
    message = "agent 'count_bonus' declared it provides 'reward/count', but its preprocess did not write it "
    error = fails_in_update_2("missing", tmp_path, ContractError, f"^{re.escape(message)}")
    keys = str(error).split("(batch keys after it: ")[1].rstrip(")").split(", ")
    assert "count/features" in keys and "valid" in keys and "reward/count" not in keys


@pytest.mark.parametrize("skip", [False, True])
def test_a_non_finite_provided_value_names_the_provider_and_is_not_skipped(skip: bool, tmp_path: Path) -> None:
    message = (
        f"agent 'count_bonus' provided a non-finite 'reward/count' (3 NaN, 1 inf of 16 values) "
        f"in update 2, step {2 * ROLLOUT}"
    )
    # skip_non_finite_updates skips non-finite losses only: NaN data from an agent always stops training.
    error = fails_in_update_2(
        "nan", tmp_path, NonFiniteProvidedError, f"^{re.escape(message)}$", skip_non_finite_updates=skip
    )
    assert isinstance(error, ContractError) and isinstance(error, NonFiniteError)
    assert error.checkpoint is not None and error.checkpoint.name == "last_good"  # saved like any NaN


class ForgetfulPPO(PPO):
    """Declares ``values`` as an act output but does not return it."""

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        outputs = super().act(obs, deterministic)
        del outputs["values"]
        return outputs


def test_a_declared_act_output_that_act_does_not_return_names_the_agent() -> None:
    trainer = Trainer(cartpole(), [ForgetfulPPO()], seed=1, num_steps=NUM_STEPS)
    message = "agent 'ppo' declared act output 'values', but its act did not return it (it returned: action, logprob)"
    with pytest.raises(ContractError, match=f"^{re.escape(message)}$"):
        trainer.train(ROLLOUT, progress=False)


def test_agents_that_keep_their_contract_train_on() -> None:
    bonus = CountBonus()
    trainer = Trainer(cartpole(), [PPO(), bonus], seed=1, num_steps=NUM_STEPS)
    trainer.train(3 * ROLLOUT, progress=False)
    assert trainer.num_updates == 3 and int(bonus.calls) == 3


def test_the_command_line_reports_a_broken_contract_as_a_user_error() -> None:
    assert _is_user_error(ContractError("agent 'x' ...")) and _is_user_error(NonFiniteProvidedError("agent 'x' ..."))
