"""An agent's plain-attribute state is never dropped in silence: ``state_attributes`` are saved in
checkpoints, restored by ``load_state`` and rolled back with a failed update; any other plain attribute
that changes after bind makes ``Trainer.save`` refuse, naming it, unless it is declared transient."""

from __future__ import annotations

import collections
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import DQN, PPO, RND, SAC, Agent, DataSpec, RewardStream, Trainer
from rl_agents.agents.a2c import A2C
from rl_agents.agents.icm import ICM
from rl_agents.checkpointing import CheckpointError
from rl_agents.cli.main import USER_ERRORS
from rl_agents.core.agent import NEXT_OBS, VALID, Batch
from rl_agents.core.agent_state import UnsavedStateError, fingerprint
from rl_agents.training.errors import NonFiniteLossError

torch.set_num_threads(1)

SCHEDULE = {"num_steps": 64, "num_epochs": 2, "num_minibatches": 2}  # 128 env steps per update (2 envs)
REMEDY = (
    "list it in state_attributes to save it in checkpoints, "
    "or in transient_attributes if a resumed run does not need it"
)


def cartpole(num_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def pendulum(num_envs: int = 1) -> gym.vector.VectorEnv:
    return gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")


class Visits(Agent):
    """A count-based bonus ``1 / sqrt(visits)`` of the next observation in cells of 1/40, in its own
    reward stream; it keeps the visit counts as a plain ``dict[str, int]`` and declares nothing."""

    default_name = "count_bonus"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts: dict[str, int] = {}

    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream("count", gamma=0.99, episodic=False, coef=0.5),)

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({NEXT_OBS, VALID}), provides=frozenset({"reward/count"}))

    @torch.no_grad()
    def preprocess(self, batch: Batch) -> dict[str, float]:
        valid = batch[VALID]
        cells = torch.round(batch[NEXT_OBS] * 40).long()
        bonus = torch.zeros(valid.shape)
        for index, cell in zip(valid.nonzero().tolist(), cells[valid].tolist()):
            key = ",".join(map(str, cell))
            self.counts[key] = self.counts.get(key, 0) + 1
            bonus[tuple(index)] = self.counts[key] ** -0.5
        batch["reward/count"] = bonus
        return {"cells": float(len(self.counts))}


class CountBonus(Visits):
    state_attributes = ("counts",)


class TransientCounts(Visits):
    transient_attributes = frozenset({"counts"})


class OwnExtraState(Visits):
    """Saves the counts itself, under the attribute's name."""

    def get_extra_state(self) -> dict[str, Any]:
        return {"counts": self.counts}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.counts = dict(state["counts"])


def trainer_with(bonus: Agent, seed: int = 1) -> Trainer:
    return Trainer(cartpole(), [PPO(), bonus], seed=seed, **SCHEDULE)


def poison_loss(agent: Agent, at_call: int) -> None:
    """The ``at_call``-th call (from 1) of ``agent.loss`` returns a NaN loss term."""
    original, calls = agent.loss, [0]

    def loss(minibatch: Batch) -> Any:
        calls[0] += 1
        terms, metrics = original(minibatch)
        if calls[0] == at_call:
            name = next(iter(terms))
            terms[name] = terms[name] + float("nan")
        return terms, metrics

    agent.loss = loss  # type: ignore[method-assign]


def same_parameters(a: Trainer, b: Trainer) -> bool:
    pairs = zip(a.acting.state_dict().values(), b.acting.state_dict().values())
    return all(x.dtype == y.dtype and torch.equal(x, y) for x, y in pairs)


# ---------------------------------------------------------------------------------------------- state_attributes
def test_counts_survive_save_and_load_and_training_goes_on_bit_identically(tmp_path: Path) -> None:
    total = 2304 + 3 * 128
    saved: list[tuple[Path, dict[str, int]]] = []

    def save_at_2304(trainer: Trainer) -> None:
        if not saved and trainer.global_step >= 2304:
            saved.append((trainer.save(tmp_path / "checkpoints"), copy.deepcopy(trainer.agents[1].counts)))

    original = trainer_with(CountBonus())  # one run, saved on the way (as tests/test_reliability.py does)
    original.train(total, progress=False, on_update=save_at_2304)
    path, counts = saved[0]
    assert 1800 < len(counts) <= 2304 and max(counts.values()) > 1  # some cells visited more than once

    resumed = trainer_with(CountBonus(), seed=5)  # fresh agents; the seed comes from the checkpoint
    resumed.load_state(path)
    restored = resumed.agents[1].counts
    assert restored == counts and list(restored) == list(counts)  # the same entries, in the same order
    assert all(type(key) is str and type(value) is int for key, value in restored.items())

    forgetful = trainer_with(CountBonus(), seed=5)  # the counter-test: the same resumption with the counts lost
    forgetful.load_state(path)
    forgetful.agents[1].counts = {}

    for trainer in (resumed, forgetful):
        trainer.train(total, progress=False)
    assert resumed.num_updates == original.num_updates == 21
    assert resumed.agents[1].counts == original.agents[1].counts and len(original.agents[1].counts) > len(counts)
    assert same_parameters(resumed, original)
    assert not same_parameters(forgetful, original)  # so the counts do steer training


def test_a_failed_update_rolls_the_counts_back(tmp_path: Path) -> None:
    trainer = trainer_with(CountBonus())
    bonus = trainer.agents[1]
    poison_loss(trainer.acting, 4 * 4 + 2)  # update 5 (4 minibatch steps per update), its second step
    after_update: list[dict[str, int]] = []
    seen_in_failed_update: list[int] = []
    preprocess = bonus.preprocess

    def recording_preprocess(batch: Batch) -> dict[str, float]:
        metrics = preprocess(batch)
        seen_in_failed_update[:] = [len(bonus.counts)]
        return metrics

    bonus.preprocess = recording_preprocess  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError, match=r"\(update 5, "):
        trainer.train(10 * 128, progress=False, on_update=lambda t: after_update.append(copy.deepcopy(bonus.counts)))
    assert trainer.num_updates == len(after_update) == 4
    assert seen_in_failed_update[0] > len(after_update[-1])  # the failed update's preprocess had counted
    assert bonus.counts == after_update[-1]  # and that is undone

    loaded = trainer_with(CountBonus())
    loaded.load_state(trainer.save(tmp_path / "checkpoints"))  # saving at the boundary still works
    assert loaded.agents[1].counts == after_update[-1]


def test_values_come_back_with_their_types_and_tuples_as_lists(tmp_path: Path) -> None:
    class Mixed(Visits):
        state_attributes = ("counts", "table", "steps")

        def bind(self, ctx: Any) -> None:
            super().bind(ctx)
            self.table: dict[str, Any] = {}
            self.steps = 0

        def preprocess(self, batch: Batch) -> dict[str, float]:
            self.steps += 1
            self.table = {
                "int": 3,
                "float": 3.0,
                "flag": True,
                "none": None,
                "text": "é/ü",
                "pair": (1, 2.5),
                "nested": {"weights": torch.arange(6.0).reshape(2, 3), "masks": [torch.tensor([True, False])]},
                "nan": float("nan"),
            }
            return super().preprocess(batch)

    original = trainer_with(Mixed())
    original.train(256, progress=False)
    loaded = trainer_with(Mixed())
    loaded.load_state(original.save(tmp_path))
    mixed = loaded.agents[1]
    assert mixed.steps == 2 and type(mixed.steps) is int
    table = mixed.table
    assert [type(table[key]) for key in ("int", "float", "flag", "none", "text")] == [int, float, bool, type(None), str]
    assert (table["int"], table["float"], table["flag"], table["text"]) == (3, 3.0, True, "é/ü")
    assert table["pair"] == [1, 2.5] and type(table["pair"][1]) is float  # a tuple comes back as a list
    assert torch.equal(table["nested"]["weights"], torch.arange(6.0).reshape(2, 3))
    assert table["nested"]["masks"][0].dtype == torch.bool and table["nested"]["masks"][0].tolist() == [True, False]
    assert table["nan"] != table["nan"]
    assert mixed.counts == original.agents[1].counts


def test_shipped_agents_state_dicts_have_no_extra_state() -> None:
    trainer = Trainer(cartpole(), [PPO(), RND(), ICM()], seed=0, **SCHEDULE)
    for agent in trainer.agents:
        assert not any(key.endswith("_extra_state") for key in agent.state_dict()), agent.name


# ---------------------------------------------------------------------------------------------- refusals
def test_an_undeclared_changed_attribute_makes_save_refuse_and_write_nothing(tmp_path: Path) -> None:
    trainer = trainer_with(Visits())
    trainer.train(256, progress=False)
    count = len(trainer.agents[1].counts)
    with pytest.raises(UnsavedStateError) as refused:
        trainer.save(tmp_path / "checkpoints")
    assert str(refused.value) == (
        f"agent 'count_bonus': attribute 'counts' changed since the agent was bound (a dict of {count} items) "
        f"but is not saved: {REMEDY}"
    )
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
    assert UnsavedStateError in USER_ERRORS  # the command line prints it as one line


def test_new_and_deleted_attributes_are_named_too(tmp_path: Path) -> None:
    trainer = trainer_with(TransientCounts())
    bonus = trainer.agents[1]
    bonus.seen_last = 7
    with pytest.raises(UnsavedStateError, match=r"^agent 'count_bonus': attribute 'seen_last' was set after the agent"):
        trainer.save(tmp_path)
    del bonus.seen_last
    bonus.stream_name = "count"
    del bonus.counts  # transient: may even go
    del bonus.stream_name
    trainer.save(tmp_path)  # back as bound
    del trainer.acting.gamma
    with pytest.raises(UnsavedStateError, match=r"^agent 'ppo': attribute 'gamma' was deleted after the agent"):
        trainer.save(tmp_path)


def test_declaring_the_attribute_transient_lets_save_go_on(tmp_path: Path) -> None:
    trainer = trainer_with(TransientCounts())
    trainer.train(256, progress=False)
    loaded = trainer_with(TransientCounts())
    loaded.load_state(trainer.save(tmp_path))
    assert loaded.agents[1].counts == {}  # transient: not saved, by declaration


def test_own_get_extra_state_keyed_by_the_attribute_covers_it(tmp_path: Path) -> None:
    trainer = trainer_with(OwnExtraState())
    trainer.train(256, progress=False)
    loaded = trainer_with(OwnExtraState())
    loaded.load_state(trainer.save(tmp_path))
    assert loaded.agents[1].counts == trainer.agents[1].counts and len(loaded.agents[1].counts) > 200


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({(1, 2): 3}, "dict key (1, 2) is a tuple"),
        ({"a": {5: 1}}, "dict key 5 in counts['a'] is an int"),
        ({"a": [1, {2}]}, "counts['a'][1] is a set"),
        ({1, 2}, "it is a set"),
        (
            collections.defaultdict(int),
            "it is a collections.defaultdict, which a checkpoint would restore as a plain dict",
        ),
        ({"n": np.float64(1.5)}, "counts['n'] is a numpy.float64, which a checkpoint would restore as a float"),
        ({"n": np.int64(1)}, "counts['n'] is a numpy.int64"),
        (object(), "it is an object"),
        ({"$tensor": 1}, "dict key '$tensor' is reserved by the checkpoint format"),
        (
            {"a/b": torch.ones(1), "a": {"b": torch.ones(1)}},
            "two of its tensors would be saved under one name 'counts/a/b'",
        ),
    ],
)
def test_an_unsaveable_state_attribute_is_refused_with_its_reason(value: Any, problem: str, tmp_path: Path) -> None:
    trainer = trainer_with(CountBonus())
    trainer.agents[1].counts = value
    with pytest.raises(UnsavedStateError) as refused:
        trainer.save(tmp_path / "checkpoints")
    assert str(refused.value).startswith(f"agent 'count_bonus': state attribute 'counts' cannot be saved: {problem}")
    assert str(refused.value).endswith("; checkpoints hold JSON values (string keys) and tensors")
    assert not (tmp_path / "checkpoints").exists()


def test_an_unsaveable_state_attribute_is_refused_at_bind_already() -> None:
    class SetOfCells(CountBonus):
        def bind(self, ctx: Any) -> None:
            super().bind(ctx)
            self.counts = set()  # type: ignore[assignment]

    with pytest.raises(UnsavedStateError, match=r"state attribute 'counts' cannot be saved: it is a set"):
        trainer_with(SetOfCells())


def test_a_state_attribute_must_be_set_by_bind() -> None:
    class Lazy(Visits):
        state_attributes = ("counts", "later")

    with pytest.raises(AttributeError, match=r"state attribute 'later' is not set; set it in __init__ or bind"):
        trainer_with(Lazy())


def test_a_class_with_state_attributes_and_its_own_get_extra_state_is_refused() -> None:
    with pytest.raises(
        TypeError, match=r"Both declares state_attributes \('counts',\) and writes its own get_extra_state"
    ):

        class Both(Visits):
            state_attributes = ("counts",)

            def get_extra_state(self) -> Any:
                return {"counts": self.counts}

    with pytest.raises(TypeError, match=r"inherits from OwnExtraState its own get_extra_state"):

        class Inherits(OwnExtraState):
            state_attributes = ("counts",)

    with pytest.raises(
        TypeError, match=r"Child declares state_attributes \('counts',\) and writes its own set_extra_state"
    ):

        class Child(CountBonus):
            def set_extra_state(self, state: Any) -> None:
                pass


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"state_attributes": "counts"},
            r"state_attributes must hold attribute names, e.g. \(\"counts\",\); got 'counts'",
        ),
        ({"state_attributes": ("counts", "counts")}, "names an attribute twice"),
        ({"state_attributes": ("lr",)}, "'lr' is managed by the Agent base class or nn.Module"),
        ({"transient_attributes": "cache"}, "transient_attributes must hold attribute names"),
        ({"state_attributes": ("counts",), "transient_attributes": {"counts"}}, "in both state_attributes and"),
    ],
)
def test_declarations_are_checked_when_the_class_is_made(attributes: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        type("Declared", (Visits,), attributes)


def test_a_subclass_that_drops_state_attributes_drops_the_methods() -> None:
    class Plain(CountBonus):
        state_attributes = ()

    assert Plain.get_extra_state is torch.nn.Module.get_extra_state
    assert "_extra_state" not in Plain().state_dict()
    assert CountBonus().state_dict()["_extra_state"] == {"counts": {}}


def test_a_checkpoint_with_other_state_attributes_is_refused_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = trainer_with(CountBonus())
    original.train(128, progress=False)
    path = original.save(tmp_path)
    monkeypatch.setattr(CountBonus, "state_attributes", ("counts", "extra"))
    monkeypatch.setattr(CountBonus, "extra", 1, raising=False)  # as if the class had gained an attribute
    other = trainer_with(CountBonus())
    before = copy.deepcopy(other.acting.state_dict())
    with pytest.raises(
        CheckpointError, match=r"agent 'count_bonus': the checkpoint holds state attributes \['counts'\]"
    ):
        other.load_state(path)
    assert other.agents[1].counts == {} and all(torch.equal(before[k], v) for k, v in other.acting.state_dict().items())


# ---------------------------------------------------------------------------------------------- shipped agents
SHIPPED: dict[str, Callable[[], Trainer]] = {
    "ppo": lambda: Trainer(cartpole(), [PPO()], seed=0, **SCHEDULE),
    "ppo-continuous": lambda: Trainer(pendulum(2), [PPO()], seed=0, **SCHEDULE),  # normalizers on
    "a2c": lambda: Trainer(cartpole(), [A2C()], seed=0),
    "dqn": lambda: Trainer(
        cartpole(), [DQN(hidden=(32,))], seed=0, learning_starts=64, batch_size=16, buffer_size=1000, train_frequency=4
    ),
    "sac": lambda: Trainer(pendulum(), [SAC(hidden=(32,))], seed=0, learning_starts=64, batch_size=16, buffer_size=500),
    "ppo+rnd": lambda: Trainer(cartpole(), [PPO(), RND()], seed=0, **SCHEDULE),
    "ppo+icm": lambda: Trainer(cartpole(), [PPO(), ICM()], seed=0, **SCHEDULE),
}


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_agents_pass_the_check_after_training_and_resuming(name: str, tmp_path: Path) -> None:
    trainer = SHIPPED[name]()
    trainer.train(320, progress=False)
    path = trainer.save(tmp_path / "first")
    resumed = SHIPPED[name]()
    resumed.load_state(path)
    resumed.train(480, progress=False)
    resumed.save(tmp_path / "second")
    assert resumed.num_updates > trainer.num_updates


# ---------------------------------------------------------------------------------------------- fingerprints
def test_fingerprints_follow_contents_and_never_fail() -> None:
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no eq")

        __hash__ = object.__hash__

    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    space = gym.spaces.Discrete(3, seed=0)
    odd = {"loud": Loud(), "cyclic": cyclic, "space": space, "generator": torch.Generator(), "fn": len}
    assert fingerprint(odd) == fingerprint(odd)
    space.sample()  # a space's RNG moves when sampled: identity only
    assert fingerprint(odd) == fingerprint(odd)
    assert fingerprint({"a": 1, "b": [1.0, 2]}) == fingerprint({"b": [1.0, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.0}) != fingerprint({"a": True})
    tensor = torch.zeros(3)
    before = fingerprint({"t": tensor})
    tensor[1] = 1.0
    assert fingerprint({"t": tensor}) != before
    owned = frozenset({id(tensor)})  # an agent's own parameter or buffer: by identity (state_dict saves it)
    before = fingerprint({"t": tensor}, owned)
    tensor[2] = 1.0
    assert fingerprint({"t": tensor}, owned) == before
