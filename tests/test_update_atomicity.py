"""Issue item 6: an update is all or nothing. A NaN or inf loss or gradient at any minibatch of an update
leaves the agents, the optimizer, the generator, the replay buffer and the learner's counters exactly as
they were before that update, so the ``last_good`` checkpoint is at an update boundary and resumes exactly.

Each failing run is compared with a reference run of the same seed that stops after the last good update
and then collects the rollout that the failed update was given (the collector's and the generator's
state after collection), bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch

from rl_agents import DQN, PPO, Trainer
from rl_agents.core.agent import Agent, Batch, DataSpec
from rl_agents.training.agent_states import agents_state_dict
from rl_agents.training.errors import NonFiniteLossError
from rl_agents.training.replay import ReplayBuffer
from tests.helpers import assert_same

torch.set_num_threads(1)

SEED = 3
PPO_SCHEDULE = {"num_steps": 64, "num_minibatches": 4, "num_epochs": 4}  # 16 optimizer steps per update
PPO_ROLLOUT = 2 * 64  # env steps per update (2 envs)
# Updates of 8 vector steps (2 envs); the target moves half-way toward the online network every 2nd
# gradient step.
DQN_SCHEDULE = {"batch_size": 16, "learning_starts": 32, "train_frequency": 8, "target_update_interval": 2, "tau": 0.5}


def cartpole() -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")


def ppo_trainer() -> Trainer:
    # Reward normalization: preprocessing moves the reward scaler's statistics, which must roll back too.
    return Trainer(cartpole(), [PPO(normalize_obs=True, normalize_reward=True)], seed=SEED, **PPO_SCHEDULE)


def poison_loss(agent: Agent, at_call: int, kind: str = "loss") -> None:
    """Make the ``at_call``-th (from 1) call of ``agent.loss`` return a NaN loss term (``kind="loss"``) or
    a finite one whose gradient is NaN (``kind="grad"``: sqrt at 0 has an infinite slope, times 0)."""
    original = agent.loss
    calls = 0

    def loss(minibatch: Batch) -> tuple[dict[str, torch.Tensor], Any]:
        nonlocal calls
        calls += 1
        terms, metrics = original(minibatch)
        if calls == at_call:
            name = next(iter(terms))
            if kind == "loss":
                terms[name] = terms[name] + float("nan")
            else:
                terms[name] = terms[name] + torch.sqrt(next(agent.parameters()) * 0.0).sum()
        return terms, metrics

    agent.loss = loss  # type: ignore[method-assign]


def assert_same_learning_state(a: Trainer, b: Trainer) -> None:
    """Agents (parameters, buffers, target networks), optimizer (state and param groups, lr included),
    generator, counters and replay buffer, bit for bit; and the same collected steps."""
    assert_same(agents_state_dict(a.agents), agents_state_dict(b.agents), "agents")
    assert_same(a.optimizer.state_dict(), b.optimizer.state_dict(), "optimizer")
    assert [g["lr"] for g in a.optimizer.param_groups] == [g["lr"] for g in b.optimizer.param_groups]
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert (a.num_updates, a.learner.total_gradient_steps, a.global_step) == (
        b.num_updates,
        b.learner.total_gradient_steps,
        b.global_step,
    )
    assert_same(a.learner.state_dict(), b.learner.state_dict(), "learner")


def reference_before_failed_update(make: Callable[[], Trainer], updates: int, total_steps: int) -> Trainer:
    """A run that stops after ``updates`` updates and then collects the next batch without learning from it."""
    reference = make()
    reference.train(total_steps, progress=False, stop_when=lambda trainer: trainer.num_updates == updates)
    assert reference.num_updates == updates
    reference.collector.collect()
    return reference


def assert_resumes_like(checkpoint: Path, reference: Trainer, make: Callable[[], Trainer], tmp_path: Path) -> None:
    """A trainer loaded from ``checkpoint`` trains on exactly as one loaded from the reference's checkpoint."""
    resumed, resumed_reference = make(), make()
    resumed.load_state(checkpoint)
    resumed_reference.load_state(reference.save(tmp_path / "reference"))
    total = reference.global_step + 3 * reference.learner.rollout_steps * reference.num_envs
    resumed.train(total, progress=False)
    resumed_reference.train(total, progress=False)
    assert resumed.num_updates == reference.num_updates + 3
    assert_same_learning_state(resumed, resumed_reference)
    assert_same(resumed.episodes.returns, resumed_reference.episodes.returns)


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_nan_at_minibatch_55_rolls_back_the_whole_on_policy_update(kind: str, tmp_path: Path) -> None:
    failing = ppo_trainer()
    poison_loss(failing.acting, 55, kind)  # update 4 (minibatch steps 49-64), after 6 of its steps were applied
    total = 8 * PPO_ROLLOUT
    with pytest.raises(NonFiniteLossError, match=rf"\(update 4, step {4 * PPO_ROLLOUT}\)") as caught:
        failing.train(total, progress=False, save_on_error=tmp_path / "failing")
    assert caught.value.checkpoint is not None and caught.value.checkpoint.name == "last_good"
    assert failing.num_updates == 3

    reference = reference_before_failed_update(ppo_trainer, 3, total)
    assert_same_learning_state(failing, reference)
    assert all(p.grad is None for p in failing.acting.parameters())  # the failed step's gradients are dropped
    # The failed update had annealed the learning rate further; it is update 3's again.
    assert failing.optimizer.param_groups[0]["lr"] == pytest.approx(2.5e-4 * (1 - 2 / 8))
    failing.save(tmp_path / "after")  # saving still works, at the boundary
    assert_resumes_like(caught.value.checkpoint, reference, ppo_trainer, tmp_path)


@pytest.mark.parametrize(
    ("gradient_steps", "nan_at", "buffer_size"),
    [
        (4, 23, 64),  # the 3rd gradient step of update 8, after the target moved once in it; the ring has wrapped
        (1, 6, 1000),  # the only gradient step of update 8; the ring is still filling
    ],
)
def test_nan_mid_update_rolls_back_the_replay_buffer_and_the_target_network(
    gradient_steps: int, nan_at: int, buffer_size: int, tmp_path: Path
) -> None:
    def make() -> Trainer:
        schedule = {**DQN_SCHEDULE, "gradient_steps": gradient_steps, "buffer_size": buffer_size}
        return Trainer(cartpole(), [DQN()], seed=SEED, log_interval=16, **schedule)

    failing = make()
    poison_loss(failing.acting, nan_at)  # training starts with update 3 (step 48 > learning_starts 32)
    total = 20 * 16
    with pytest.raises(NonFiniteLossError, match=r"\(update 8, step 128\)") as caught:
        failing.train(total, progress=False, save_on_error=tmp_path / "failing")
    assert failing.num_updates == 7 and failing.learner.total_gradient_steps == 5 * gradient_steps

    reference = reference_before_failed_update(make, 7, total)
    assert_same_learning_state(failing, reference)
    replay, expected = failing.replay, reference.replay
    assert replay is not None and expected is not None
    assert (expected.size == expected.capacity) == (buffer_size == 64)
    assert (replay.position, replay.size, replay._invalid_count) == (
        expected.position,
        expected.size,
        expected._invalid_count,
    )
    assert_same(replay.data, expected.data, "replay ring")  # the whole ring, unused rows too
    for mine, theirs in zip(failing.acting.target_network.parameters(), reference.acting.target_network.parameters()):
        assert torch.equal(mine, theirs)
    failing.save(tmp_path / "after")
    assert_resumes_like(caught.value.checkpoint, reference, make, tmp_path)


def test_a_failed_first_update_leaves_the_optimizer_without_state() -> None:
    trainer = ppo_trainer()
    initial = {key: value.clone() for key, value in trainer.acting.state_dict().items()}
    poison_loss(trainer.acting, 2)
    with pytest.raises(NonFiniteLossError, match=r"\(update 1, "):
        trainer.train(PPO_ROLLOUT, progress=False)
    assert not trainer.optimizer.state and trainer.num_updates == 0
    state = trainer.acting.state_dict()
    # Only the observation statistics moved, while collecting: the rollout was taken, the update not.
    assert all(torch.equal(state[key], value) for key, value in initial.items() if not key.startswith("obs_rms"))


class Counter(Agent):
    """Counts its preprocessed batches in a buffer it replaces (not updates in place) and in extra state,
    with one parameter whose loss is NaN on loss call ``nan_at`` (from 1)."""

    default_name = "counter"
    transient_attributes = frozenset({"calls"})  # test machinery: which loss call is NaN, not training state

    def __init__(self, nan_at: int = 0) -> None:
        super().__init__(lr=1e-3)
        self.nan_at, self.calls, self.batches = nan_at, 0, 0

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.register_buffer("seen", torch.zeros(()))

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({"valid"}))

    def get_extra_state(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]

    def preprocess(self, batch: Batch) -> dict[str, float]:
        self.seen = self.seen + 1  # a new tensor in the buffer's place
        self.batches += 1
        return {}

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        self.calls += 1
        value = ((self.weight - 2.0) ** 2).sum()
        return {"fit": value + float("nan") if self.calls == self.nan_at else value}, {}


def test_replaced_buffers_and_extra_state_are_rolled_back() -> None:
    trainer = Trainer(cartpole(), [PPO(), Counter(nan_at=6)], seed=SEED, num_steps=8, num_minibatches=2, num_epochs=2)
    counter = trainer.agents[1]
    trainer.train(16, progress=False)  # update 1: 4 loss calls
    seen_before = counter.seen
    with pytest.raises(NonFiniteLossError, match=r"\(update 2, "):
        trainer.train(10 * 16, progress=False)
    assert counter.seen is seen_before and float(counter.seen) == 1.0 and counter.batches == 1
    assert counter.state_dict()["_extra_state"] == {"batches": 1}


@pytest.mark.parametrize(("stored", "added"), [(0, 3), (3, 2), (4, 3), (6, 5), (2, 9)])
def test_replay_rewind_undoes_an_add_however_it_wraps(stored: int, added: int) -> None:
    replay = ReplayBuffer(capacity=6, num_envs=2, device=torch.device("cpu"))

    def chunk(length: int, start: float) -> Batch:
        values = torch.arange(length * 2, dtype=torch.float32).reshape(length, 2) + start
        return {"obs": values, "valid": values.long() % 3 != 0}

    if stored:
        replay.add(chunk(stored, 100.0))
    before = (replay.position, replay.size, replay._invalid_count, {k: v.clone() for k, v in replay.data.items()})
    mark = replay.mark(added)
    replay.add(chunk(added, 200.0))
    replay.rewind(mark)
    assert_same((replay.position, replay.size, replay._invalid_count, replay.data), before)
