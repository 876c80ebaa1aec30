"""Dict and Tuple observations flow through the library as trees of tensors.

A small goal-free Dict env (``image`` uint8 7x7x3, ``direction`` Discrete(4), ``vec`` float32 Box(3,)) whose
observations encode the step in the episode and the episode index, so every stored value can be checked
by hand: rollout storage (next-step and same-step autoreset), replay (flat ``obs.image`` keys, n-step
bootstrap observations, checkpoints), exact resume, the env output checks, the agents, ``Policy.predict``
and a rollout worker. A Tuple env checks the same machinery for tuples.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from rl_agents import A2C, DQN, ICM, PPO, RND, SAC, CompositionError, EnvError, Policy, Trainer
from rl_agents.checkpointing import read_checkpoint
from rl_agents.core.agent import (
    ACTION,
    BOOTSTRAP_OBS,
    ENV_KEYS,
    N_STEPS,
    NEXT_OBS,
    OBS,
    REPLAY_INDEX,
    TERMINATED,
    TRUNCATED,
    VALID,
    Agent,
    Batch,
    DataSpec,
    RewardStream,
)
from rl_agents.core.tree import first_leaf, map_tree
from rl_agents.envs.spaces import UnsupportedObservationError, observation_layout
from rl_agents.policy.export import ExportError
from rl_agents.training.collector import Collector
from rl_agents.training.errors import NonFiniteObservationError
from rl_agents.training.replay import ReplayBuffer
from rl_agents.training.workers import RolloutWorker, concatenate_columns
from tests.helpers import assert_same

torch.set_num_threads(1)

CPU = torch.device("cpu")
PPO_SMALL = {"num_steps": 8, "num_epochs": 1, "num_minibatches": 2}
DQN_SMALL = {"learning_starts": 32, "batch_size": 16, "buffer_size": 400, "train_frequency": 2}


# ---------------------------------------------------------------------------------------------- envs
def dict_space(image: bool = True) -> gym.spaces.Dict:
    spaces: dict[str, gym.Space] = {}
    if image:
        spaces["image"] = gym.spaces.Box(0, 255, (7, 7, 3), np.uint8)
    spaces["direction"] = gym.spaces.Discrete(4)
    spaces["vec"] = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    return gym.spaces.Dict(spaces)


def encoded(t: int, episode: int, image: bool = True) -> dict[str, np.ndarray]:
    """The observation of step ``t`` of episode ``episode``: image channels (t, episode, 255),
    direction ``t % 4``, vec ``(t / 10, episode / 100, -0.5)``."""
    obs: dict[str, Any] = {}
    if image:
        obs["image"] = np.zeros((7, 7, 3), np.uint8)
        obs["image"][..., 0] = t
        obs["image"][..., 1] = episode
        obs["image"][..., 2] = 255
    obs["direction"] = np.int64(t % 4)
    obs["vec"] = np.array([t / 10, episode / 100, -0.5], np.float32)
    return obs


class DictEnv(gym.Env):
    """Episodes of ``length`` steps (truncated); reward 1 for action 1 (above 0.5 for the continuous
    variant). Module level, so async workers can pickle it."""

    def __init__(self, length: int = 3, continuous: bool = False, image: bool = True):
        self.observation_space = dict_space(image)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else gym.spaces.Discrete(2)
        self.length, self.image = length, image
        self.t, self.episode = 0, -1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return encoded(self.t, self.episode, self.image), {}

    def step(self, action):
        self.t += 1
        reward = float(float(np.asarray(action).reshape(-1)[0]) > 0.5)
        return encoded(self.t, self.episode, self.image), reward, False, self.t >= self.length, {}


class TupleEnv(gym.Env):
    """Tuple((Discrete(4), Box(3,))): (t % 4, (t / 10, episode / 100, -0.5)); episodes of ``length``."""

    def __init__(self, length: int = 3):
        self.observation_space = gym.spaces.Tuple((gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, (3,), np.float32)))
        self.action_space = gym.spaces.Discrete(2)
        self.length = length
        self.t, self.episode = 0, -1

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action == 1), False, self.t >= self.length, {}

    def _obs(self) -> tuple:
        return (np.int64(self.t % 4), np.array([self.t / 10, self.episode / 100, -0.5], np.float32))


def dict_envs(
    lengths: tuple[int, ...] = (2, 3),
    mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    continuous: bool = False,
    image: bool = True,
) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv(
        [functools.partial(DictEnv, length, continuous, image) for length in lengths], autoreset_mode=mode
    )


def tuple_envs() -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([functools.partial(TupleEnv, 2), functools.partial(TupleEnv, 3)])


def expected_obs(table: list[list[tuple[int, int]]]) -> dict[str, np.ndarray]:
    """``[T, N]`` (t, episode) pairs as the batch's observation leaves (Discrete stored as float32)."""
    rows = [[encoded(t, episode) for t, episode in row] for row in table]
    return {
        "direction": np.array([[obs["direction"] for obs in row] for row in rows], np.float32),
        "image": np.array([[obs["image"] for obs in row] for row in rows], np.uint8),
        "vec": np.array([[obs["vec"] for obs in row] for row in rows], np.float32),
    }


def assert_obs_tree(stored: dict[str, torch.Tensor], expected: dict[str, np.ndarray], what: str) -> None:
    assert isinstance(stored, dict) and list(stored) == list(expected), what
    for key, values in expected.items():
        leaf = stored[key]
        assert leaf.dtype == {"image": torch.uint8}.get(key, torch.float32), (what, key, leaf.dtype)
        assert tuple(leaf.shape) == values.shape, (what, key, tuple(leaf.shape), values.shape)
        assert torch.equal(leaf, torch.from_numpy(values)), (what, key, leaf, values)


# ---------------------------------------------------------------------------------------------- 1. storage
class StubActor(Agent):
    """Always action 1, whatever the observation tree."""

    acts = True
    default_name = "stub"

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({OBS}), act_outputs=frozenset({ACTION}))

    def suggested_schedule(self) -> None:
        return None

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = False) -> Batch:
        assert isinstance(obs, dict) and obs["image"].dtype == torch.uint8 and obs["vec"].dtype == torch.float32
        return {ACTION: torch.ones(len(first_leaf(obs)), dtype=torch.long)}


def stub_rollout(mode: AutoresetMode) -> Batch:
    """One 4-step rollout of envs with episodes of 2 and 3 steps."""
    collector = Collector(
        dict_envs((2, 3), mode),
        StubActor(),
        collected_keys=ENV_KEYS,
        rollout_steps=4,
        random_steps=0,
        store_next_obs=True,
        device=CPU,
        seed=0,
    )
    collector.begin(seed=0)
    return collector.collect()


def test_a_rollout_stores_each_leaf_as_the_env_produced_it_with_next_step_autoreset() -> None:
    batch = stub_rollout(AutoresetMode.NEXT_STEP)
    # Env 0 (2 steps) ends at step 1 and resets at step 2 (invalid); env 1 (3 steps) ends at step 2,
    # resets at step 3.
    assert_obs_tree(
        batch[OBS], expected_obs([[(0, 0), (0, 0)], [(1, 0), (1, 0)], [(2, 0), (2, 0)], [(0, 1), (3, 0)]]), OBS
    )
    assert_obs_tree(
        batch[NEXT_OBS],
        expected_obs([[(1, 0), (1, 0)], [(2, 0), (2, 0)], [(0, 1), (3, 0)], [(1, 1), (0, 1)]]),
        NEXT_OBS,
    )
    assert batch[VALID].tolist() == [[True, True], [True, True], [False, True], [True, False]]
    assert batch[TRUNCATED].tolist() == [[False, False], [True, False], [False, True], [False, False]]
    assert batch["reward/extrinsic"].tolist() == [[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]


def test_a_rollout_stores_the_true_final_observation_with_same_step_autoreset() -> None:
    batch = stub_rollout(AutoresetMode.SAME_STEP)
    # The step that ends an episode returns the reset observation; next_obs holds the final one.
    assert_obs_tree(
        batch[OBS], expected_obs([[(0, 0), (0, 0)], [(1, 0), (1, 0)], [(0, 1), (2, 0)], [(1, 1), (0, 1)]]), OBS
    )
    assert_obs_tree(
        batch[NEXT_OBS],
        expected_obs([[(1, 0), (1, 0)], [(2, 0), (2, 0)], [(1, 1), (3, 0)], [(2, 1), (1, 1)]]),
        NEXT_OBS,
    )
    assert batch[VALID].all()
    assert batch[TRUNCATED].tolist() == [[False, False], [True, False], [False, True], [True, False]]


def test_a_trainers_batch_holds_dict_observations_with_their_dtypes() -> None:
    trainer = Trainer(dict_envs(), [PPO()], seed=0, **PPO_SMALL)
    trainer.train(32, progress=False)  # two rollouts of 8 vector steps of 2 envs
    assert trainer.num_updates == 2
    batch = trainer.collector.storage.batch()
    for key in (OBS, NEXT_OBS):
        shapes = {leaf: (tuple(value.shape), value.dtype) for leaf, value in batch[key].items()}
        assert shapes == {
            "direction": ((8, 2), torch.float32),
            "image": ((8, 2, 7, 7, 3), torch.uint8),
            "vec": ((8, 2, 3), torch.float32),
        }, key
    # The second rollout (steps 8..15): env 0 (2 steps) resets every third step, env 1 every fourth.
    assert batch[OBS]["image"][:, 0, 0, 0, 0].tolist() == [2, 0, 1, 2, 0, 1, 2, 0]
    assert batch[OBS]["image"][:, 1, 0, 0, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert batch[OBS]["image"][:, 1, 0, 0, 1].tolist() == [2, 2, 2, 2, 3, 3, 3, 3]
    np.testing.assert_array_equal(batch[OBS]["direction"][:, 1].numpy(), [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(batch[OBS]["vec"][:, 1, 0].numpy(), np.float32([0, 0.1, 0.2, 0.3] * 2))


# ---------------------------------------------------------------------------------------------- 2. replay
NUM_ENVS = 2


def replay_leaves(ids: np.ndarray) -> dict[str, torch.Tensor]:
    """Observation leaves encoding ``ids`` (``[T, N]`` integers below 256) in every leaf."""
    ids = np.asarray(ids)
    image = np.broadcast_to(ids[..., None, None, None], (*ids.shape, 7, 7, 3)).astype(np.uint8)
    vec = np.stack([ids, ids + 0.5, -ids], axis=-1).astype(np.float32)
    return {
        "direction": torch.from_numpy((ids % 4).astype(np.float32)),
        "image": torch.from_numpy(image.copy()),
        "vec": torch.from_numpy(vec),
    }


def replay_chunk(first_step: int, steps: int, terminated_at: tuple[int, int] | None = None) -> Batch:
    """Steps ``first_step ..`` of 2 envs: obs id ``step * 2 + env`` (the flat slot while the ring has not
    wrapped), next_obs id + 100, reward id."""
    ids = (np.arange(first_step, first_step + steps)[:, None] * NUM_ENVS + np.arange(NUM_ENVS)).astype(np.int64)
    terminated = torch.zeros((steps, NUM_ENVS), dtype=torch.bool)
    if terminated_at is not None and first_step <= terminated_at[0] < first_step + steps:
        terminated[terminated_at[0] - first_step, terminated_at[1]] = True
    return {
        OBS: replay_leaves(ids),
        NEXT_OBS: replay_leaves(ids + 100),
        "reward/extrinsic": torch.from_numpy(ids.astype(np.float32)),
        TERMINATED: terminated,
        TRUNCATED: torch.zeros((steps, NUM_ENVS), dtype=torch.bool),
        VALID: torch.ones((steps, NUM_ENVS), dtype=torch.bool),
    }


def leaf_ids(tree: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The id each leaf encodes, per row (direction only up to ``% 4``)."""
    return {
        "direction": tree["direction"].long(),
        "image": tree["image"][:, 0, 0, 0].long(),
        "image_min": tree["image"].flatten(1).min(1).values.long(),
        "vec": tree["vec"][:, 0].long(),
        "vec_half": (tree["vec"][:, 1] - 0.5).long(),
    }


def assert_rows_encode(tree: dict[str, torch.Tensor], ids: torch.Tensor, what: str) -> None:
    assert isinstance(tree, dict) and list(tree) == ["direction", "image", "vec"], what
    found = leaf_ids(tree)
    assert torch.equal(found["direction"], ids % 4), what
    for key in ("image", "image_min", "vec", "vec_half"):
        assert torch.equal(found[key], ids), (what, key, found[key], ids)


EXTRINSIC_STREAM = RewardStream("extrinsic", gamma=0.5)


def filled_replay(space: gym.Space | None = None) -> ReplayBuffer:
    replay = ReplayBuffer(8, NUM_ENVS, CPU, observation_space=dict_space() if space is None else space)
    replay.add(replay_chunk(0, 3, terminated_at=(2, 0)))
    replay.add(replay_chunk(3, 3))
    return replay


def test_replay_stores_dict_observations_leaf_by_leaf_and_samples_them_back_as_dicts() -> None:
    replay = filled_replay()
    assert len(replay) == 12
    assert set(replay.data) == {
        "obs.direction",
        "obs.image",
        "obs.vec",
        "next_obs.direction",
        "next_obs.image",
        "next_obs.vec",
        "reward/extrinsic",
        TERMINATED,
        TRUNCATED,
        VALID,
    }
    assert replay.data["obs.image"].dtype == torch.uint8 and replay.data["obs.image"].shape == (8, 2, 7, 7, 3)
    sample = replay.sample(64, torch.Generator().manual_seed(0))
    index = sample[REPLAY_INDEX]
    assert len(set(index.tolist())) > 6  # many distinct rows were drawn
    assert_rows_encode(sample[OBS], index, OBS)
    assert_rows_encode(sample[NEXT_OBS], index + 100, NEXT_OBS)
    assert_rows_encode(sample[BOOTSTRAP_OBS], index + 100, BOOTSTRAP_OBS)  # one step: the next observation
    assert sample[OBS]["image"].dtype == torch.uint8 and sample[OBS]["vec"].shape == (64, 3)
    assert torch.equal(sample["reward/extrinsic"], index.float())
    assert not any(key.startswith(("obs.", "next_obs.", "bootstrap_obs.")) for key in sample)


def test_n_step_bootstrap_observations_of_every_leaf_come_from_the_same_step() -> None:
    replay = filled_replay()
    sample = replay.sample(64, torch.Generator().manual_seed(1), n_step=3, streams=(EXTRINSIC_STREAM,))
    index = sample[REPLAY_INDEX]
    steps, envs = index // NUM_ENVS, index % NUM_ENVS
    # 6 steps stored, nothing after step 5; env 0's episode ended at step 2.
    last = torch.where((envs == 0) & (steps <= 2), torch.clamp(steps + 2, max=2), torch.clamp(steps + 2, max=5))
    assert_rows_encode(sample[OBS], index, OBS)
    assert_rows_encode(sample[NEXT_OBS], index + 100, NEXT_OBS)  # still the one-step next observation
    assert_rows_encode(sample[BOOTSTRAP_OBS], last * NUM_ENVS + envs + 100, BOOTSTRAP_OBS)
    assert torch.equal(sample[N_STEPS], (last - steps + 1).float())
    assert torch.equal(sample[TERMINATED], (last == 2) & (envs == 0))
    rewards = [
        sum(0.5**k * float((s + k) * NUM_ENVS + e) for k in range(n)) for s, e, n in zip(steps, envs, last - steps + 1)
    ]
    assert sample["reward/extrinsic"].tolist() == pytest.approx(rewards)
    assert {int(n) for n in sample[N_STEPS]} == {1, 2, 3}  # every look-ahead length was drawn


def test_replay_state_has_flat_keys_and_a_fresh_buffer_loaded_from_it_samples_the_same() -> None:
    replay = filled_replay()
    replay.add(replay_chunk(6, 4))  # 10 steps into 8: the ring wraps
    state = replay.state_dict()
    assert set(state["data"]) == set(replay.data) and "obs.image" in state["data"]
    assert all(isinstance(value, torch.Tensor) for value in state["data"].values())
    fresh = ReplayBuffer(8, NUM_ENVS, CPU, observation_space=dict_space())
    fresh.prepare_load(state)()
    first = replay.sample(32, torch.Generator().manual_seed(2), n_step=2, streams=(EXTRINSIC_STREAM,))
    second = fresh.sample(32, torch.Generator().manual_seed(2), n_step=2, streams=(EXTRINSIC_STREAM,))
    assert_same(first, second)
    # The sampled rows are the stored rows at replay_index, leaf by leaf.
    for key in ("direction", "image", "vec"):
        stored = state["data"][f"obs.{key}"].flatten(0, 1)
        assert torch.equal(first[OBS][key], stored[first[REPLAY_INDEX]]), key
    # After the wrap, slot 0 holds step 8: id 16.
    assert leaf_ids(fresh.sample(256, torch.Generator().manual_seed(3))[OBS])["vec"].min() >= 4


def test_a_structured_value_under_a_key_that_is_not_an_observation_is_refused() -> None:
    replay = ReplayBuffer(8, NUM_ENVS, CPU, observation_space=dict_space())
    chunk = replay_chunk(0, 2)
    chunk["reward/extrinsic"] = {"a": chunk["reward/extrinsic"]}
    with pytest.raises(ValueError, match="'reward/extrinsic' holds a dict or tuple"):
        replay.add(chunk)


# ---------------------------------------------------------------------------------------------- 3. resume
def assert_same_parameters(a: Trainer, b: Trainer) -> None:
    for agent_a, agent_b in zip(a.agents, b.agents):
        sa, sb = agent_a.state_dict(), agent_b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{agent_a.name}/{key}"
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert oa.keys() == ob.keys()
    for index in oa:
        for key, value in oa[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(ob[index][key])), (index, key)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert a.episodes == b.episodes


RESUME_CASES = {
    "ppo": (lambda: [PPO()], PPO_SMALL, 64, None),
    "ppo-normalize-obs": (lambda: [PPO(normalize_obs=True)], PPO_SMALL, 64, None),
    "dqn": (lambda: [DQN(hidden=(32,))], {**DQN_SMALL, "target_update_interval": 16}, 96, 16),
}


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_training_resumed_from_a_checkpoint_ends_with_the_same_parameters(name: str, tmp_path: Path) -> None:
    agents, settings, steps, log_interval = RESUME_CASES[name]
    saved: list[Path] = []

    def save_halfway(trainer: Trainer) -> None:
        if not saved and trainer.global_step >= steps // 2:
            saved.append(trainer.save(tmp_path / "checkpoints"))

    whole = Trainer(dict_envs(), agents(), seed=1, log_interval=log_interval, **settings)
    whole.train(steps, progress=False, on_update=save_halfway)
    assert saved and whole.global_step >= steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = Trainer.load(saved[0], dict_envs())
    assert not [w for w in caught if "resets the environments" in str(w.message)]  # the envs' state was restored
    assert 0 < resumed.global_step < whole.global_step
    resumed.train(steps, progress=False)
    assert resumed.global_step == whole.global_step
    assert_same_parameters(whole, resumed)
    _, tree = read_checkpoint(saved[0])
    if name == "ppo-normalize-obs":
        # One running normalizer, for the float vector leaf only, saved and restored.
        stats = {key for key in whole.acting.state_dict() if key.startswith("obs_rms.")}
        assert stats == {"obs_rms.stats.vec.mean", "obs_rms.stats.vec.var", "obs_rms.stats.vec.count"}
        assert float(whole.acting.obs_rms.stats["vec"].count) > steps
    if name == "dqn":
        data = tree["learner"]["replay"]["data"]  # the replay's leaves under flat keys
        assert {"obs.image", "obs.direction", "obs.vec", "next_obs.image", "next_obs.direction", "next_obs.vec"} <= set(
            data
        )
        assert not {"obs", "next_obs"} & set(data)
        assert data["obs.image"].dtype == torch.uint8 and data["obs.direction"].dtype == torch.float32


# ---------------------------------------------------------------------------------------------- 4. env checks
def user_loop_until_bad(trainer: Trainer, envs: gym.vector.VectorEnv, corrupt, where: str) -> None:
    """Two good steps of the public loop, then the third step's observations corrupted, passed to act
    (``where == "act"``) or observe."""
    obs, _ = envs.reset(seed=0)
    for _ in range(2):
        obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
        trainer.observe(obs, reward, terminated, truncated, info)
    if where == "act":
        trainer.act(corrupt(obs))
    obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
    trainer.observe(corrupt(obs), reward, terminated, truncated, info)


def _without(key: str):
    return lambda obs: {k: v for k, v in obs.items() if k != key}


def _with(key: str, make):
    return lambda obs: {**obs, key: make(obs)}


def _nan_in_vec(obs: dict) -> dict:
    vec = obs["vec"].copy()
    vec[1, 2] = np.nan
    return {**obs, "vec": vec}


BAD_OBSERVATIONS = {
    "missing-key": (_without("vec"), EnvError, r"do not have the structure of the observation space .*'vec'"),
    "extra-key": (_with("extra", lambda obs: np.zeros(2)), EnvError, r"have keys \['extra'\] that the observation"),
    "wrong-dtype": (
        _with("vec", lambda obs: obs["vec"].astype(np.float64)),
        EnvError,
        r"observation 'vec' .* have dtype float64, not the observation space's float32",
    ),
    "wrong-shape": (
        _with("image", lambda obs: np.zeros((2, 7, 7, 4), np.uint8)),
        EnvError,
        r"observation 'image' .* have shape \(2, 7, 7, 4\); expected \(2, 7, 7, 3\)",
    ),
    "discrete-as-float": (
        _with("direction", lambda obs: obs["direction"].astype(np.float32)),
        EnvError,
        r"observation 'direction' .* have dtype float32, not the observation space's int64",
    ),
    "nan": (_nan_in_vec, NonFiniteObservationError, r"non-finite observation 'vec' of env 1 .*element 2 is nan"),
}


@pytest.mark.parametrize("where", ["act", "observe"])
@pytest.mark.parametrize("case", list(BAD_OBSERVATIONS))
def test_bad_dict_observations_are_refused_naming_the_leaf(case: str, where: str) -> None:
    corrupt, error, message = BAD_OBSERVATIONS[case]
    envs = dict_envs((5, 5))
    trainer = Trainer(envs, [PPO()], seed=0, **PPO_SMALL)
    with pytest.raises(error, match=message) as caught:
        user_loop_until_bad(trainer, envs, corrupt, where)
    assert "\n" not in str(caught.value)
    source = "passed to act" if where == "act" else "returned by step"
    assert source in str(caught.value)
    assert trainer.collector.step_in_rollout == 2  # nothing of the bad step was stored


class CorruptObservations(gym.vector.VectorWrapper):
    """Passes the vector env's observations through ``corrupt`` at its third step."""

    def __init__(self, envs: gym.vector.VectorEnv, corrupt):
        super().__init__(envs)
        self.corrupt, self.steps = corrupt, 0

    def step(self, actions):
        obs, *rest = self.env.step(actions)
        self.steps += 1
        return (self.corrupt(obs) if self.steps == 3 else obs, *rest)


@pytest.mark.parametrize("case", ["missing-key", "extra-key", "nan"])
def test_bad_dict_observations_stop_train_naming_the_leaf(case: str) -> None:
    corrupt, error, message = BAD_OBSERVATIONS[case]
    trainer = Trainer(CorruptObservations(dict_envs((5, 5)), corrupt), [PPO()], seed=0, **PPO_SMALL)
    with pytest.raises(error, match=message):
        trainer.train(32, progress=False)
    assert trainer.global_step == 4 and trainer.collector.at_boundary


class BadFinalObservation(DictEnv):
    """A DictEnv whose final observation (the one a same-step autoreset puts in ``info["final_obs"]``) is
    changed by ``corrupt``."""

    def __init__(self, corrupt):
        super().__init__(2)
        self.corrupt = corrupt

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return (self.corrupt(obs) if truncated else obs), reward, terminated, truncated, info


def _one_env(corrupt):
    """``corrupt`` (written for a batch of 2 envs) applied to one env's observation."""

    def single(obs: dict) -> dict:
        batched = corrupt({key: np.stack([value, value]) for key, value in obs.items()})
        return {key: value[1] for key, value in batched.items()}

    return single


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("nan", NonFiniteObservationError, r"non-finite final observation 'vec' of env 1"),
        pytest.param("nan", NonFiniteObservationError, r"'vec'"),
        pytest.param("missing-key", EnvError, r"'vec'"),
        pytest.param("extra-key", EnvError, r"'extra'"),
        pytest.param("wrong-shape-vec", EnvError, r"'vec'"),
    ],
    ids=["nan", "nan-names-the-leaf", "missing-key", "extra-key", "wrong-shape"],
)
def test_a_bad_final_observation_of_a_same_step_autoreset_is_refused(case: str, error: type, message: str) -> None:
    corrupt = _with("vec", lambda obs: obs["vec"][:, :1]) if case == "wrong-shape-vec" else BAD_OBSERVATIONS[case][0]
    envs = gym.vector.SyncVectorEnv(
        [functools.partial(DictEnv, 3), functools.partial(BadFinalObservation, _one_env(corrupt))],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    trainer = Trainer(envs, [PPO()], seed=0, **PPO_SMALL)
    with pytest.raises(error, match=message):
        trainer.train(16, progress=False)


# ---------------------------------------------------------------------------------------------- 5. Text leaves
class TextEnv(DictEnv):
    def __init__(self) -> None:
        super().__init__(3)
        self.observation_space = gym.spaces.Dict({**self.observation_space.spaces, "mission": gym.spaces.Text(10)})

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed)
        return {**obs, "mission": "go"}, info

    def step(self, action):
        obs, *rest = super().step(action)
        return ({**obs, "mission": "go"}, *rest)


@pytest.mark.parametrize("agents", [lambda: [PPO()], lambda: [DQN()]], ids=["ppo", "dqn"])
def test_a_text_leaf_is_refused_in_one_line_naming_it_and_suggesting_filter_observation(agents) -> None:
    with pytest.raises((CompositionError, UnsupportedObservationError)) as caught:
        Trainer(gym.vector.SyncVectorEnv([TextEnv]), agents())
    message = str(caught.value)
    assert "\n" not in message and "'mission'" in message and "FilterObservation" in message


def test_storage_refuses_a_text_leaf_and_dropping_it_as_suggested_trains() -> None:
    with pytest.raises(UnsupportedObservationError, match=r"observation\.mission is Text.*FilterObservation"):
        observation_layout(TextEnv().observation_space)
    with pytest.raises(UnsupportedObservationError, match=r"observation\.mission"):  # a collector of one's own
        Collector(
            gym.vector.SyncVectorEnv([TextEnv]),
            StubActor(),
            collected_keys=ENV_KEYS,
            rollout_steps=4,
            random_steps=0,
            store_next_obs=True,
            device=CPU,
            seed=0,
        )
    filtered = gym.vector.SyncVectorEnv(
        [lambda: gym.wrappers.FilterObservation(TextEnv(), ["direction", "image", "vec"])]
    )
    Trainer(filtered, [PPO()], **PPO_SMALL).train(8, progress=False)


# ---------------------------------------------------------------------------------------------- 6. agents
AGENT_CASES = {
    "ppo": (lambda: [PPO()], PPO_SMALL, 64, {}),
    "a2c": (lambda: [A2C()], {"num_steps": 8}, 64, {}),
    "dqn": (lambda: [DQN(hidden=(32,))], DQN_SMALL, 96, {}),
    "sac": (lambda: [SAC(hidden=(32,))], DQN_SMALL, 64, {"continuous": True, "image": False}),
    "ppo+rnd": (lambda: [PPO(), RND()], PPO_SMALL, 64, {}),
    "ppo+icm": (lambda: [PPO(), ICM()], PPO_SMALL, 64, {}),
}


@pytest.mark.parametrize("name", list(AGENT_CASES))
def test_each_agent_trains_on_dict_observations(name: str) -> None:
    agents, settings, steps, env_options = AGENT_CASES[name]
    trainer = Trainer(dict_envs(**env_options), agents(), seed=0, **settings)
    before = {key: value.clone() for key, value in trainer.acting.state_dict().items()}
    trainer.train(steps, progress=False)
    assert trainer.global_step >= steps and trainer.num_updates > 0
    changed = [key for key, value in trainer.acting.state_dict().items() if not torch.equal(value, before[key])]
    assert changed, "no parameter of the acting agent moved"
    for agent in trainer.agents:
        if hasattr(agent, "observation_selector"):
            assert agent.observation_selector.paths == ["image"]  # the only image leaf, not direction or vec


def test_sac_refuses_image_leaves_naming_them() -> None:
    with pytest.raises(CompositionError, match=r"agent 'sac' needs vector observations, got image leaves \['image'\]"):
        Trainer(dict_envs(continuous=True), [SAC()])


@pytest.mark.parametrize("bonus", [RND, ICM])
def test_observation_bonuses_read_the_leaves_named_by_obs_keys(bonus: type) -> None:
    trainer = Trainer(dict_envs(), [PPO(), bonus(obs_keys=["vec"])], seed=0, **PPO_SMALL)
    selector = trainer.agents[1].observation_selector
    assert selector.paths == ["vec"] and selector.space == dict_space()["vec"]
    trainer.train(32, progress=False)
    assert trainer.num_updates == 2
    with pytest.raises(CompositionError, match=r"obs_keys \['vec', 'direction'\] mix images or non-Box leaves"):
        Trainer(dict_envs(), [PPO(), bonus(obs_keys=["vec", "direction"])])
    with pytest.raises(CompositionError, match=r"obs_keys must name leaves of the observation space .*\['nope'\]"):
        Trainer(dict_envs(), [PPO(), bonus(obs_keys=["nope"])])


class CountingImageEncoder(nn.Module):
    """The user's encoder for the image leaf: counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 8
        self.linear = nn.Linear(7 * 7 * 3, self.out_dim)
        self.calls = 0
        self.dtypes: set[torch.dtype] = set()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.dtypes.add(image.dtype)
        return torch.relu(self.linear(image.flatten(1).float() / 255.0))


@pytest.mark.parametrize("agent", [PPO, A2C, DQN])
def test_a_user_given_image_encoder_is_used_and_trained(agent: type) -> None:
    encoder = CountingImageEncoder()
    initial = encoder.linear.weight.detach().clone()
    settings = PPO_SMALL if agent is PPO else {"num_steps": 8} if agent is A2C else DQN_SMALL
    trainer = Trainer(dict_envs(), [agent(encoders={"image": encoder})], seed=0, **settings)
    trainer.train(64, progress=False)
    assert encoder.calls > 0 and encoder.dtypes == {torch.uint8}  # stored images stay uint8
    assert any(module is encoder for module in trainer.acting.modules())
    assert not torch.equal(encoder.linear.weight, initial)  # its parameters are optimized


def test_an_encoder_for_an_unknown_leaf_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown observation leaves \['map'\]"):
        Trainer(dict_envs(), [PPO(encoders={"map": CountingImageEncoder()})])


# ---------------------------------------------------------------------------------------------- 7. tuples
def test_ppo_trains_on_tuple_observations_stored_as_tuples() -> None:
    trainer = Trainer(tuple_envs(), [PPO()], seed=0, **PPO_SMALL)
    trainer.train(32, progress=False)
    assert trainer.num_updates == 2
    batch = trainer.collector.storage.batch()
    obs = batch[OBS]
    assert isinstance(obs, tuple) and len(obs) == 2
    assert (obs[0].shape, obs[0].dtype, obs[1].shape, obs[1].dtype) == ((8, 2), torch.float32, (8, 2, 3), torch.float32)
    # The second rollout (steps 8..15): env 1 (3 steps) resets every fourth step, at steps 0, 4, ...
    assert obs[0][:, 1].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    np.testing.assert_array_equal(obs[1][:, 1, 1].numpy(), np.array([0.02] * 4 + [0.03] * 4, np.float32))


def test_replay_round_trip_of_tuple_observations() -> None:
    space = gym.spaces.Tuple((gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, (3,), np.float32)))
    replay = ReplayBuffer(8, NUM_ENVS, CPU, observation_space=space)
    for first in (0, 3):
        chunk = replay_chunk(first, 3)
        for key in (OBS, NEXT_OBS):
            chunk[key] = (chunk[key]["direction"], chunk[key]["vec"])
        replay.add(chunk)
    assert {"obs.0", "obs.1", "next_obs.0", "next_obs.1"} <= set(replay.data)
    sample = replay.sample(32, torch.Generator().manual_seed(0), n_step=2, streams=(EXTRINSIC_STREAM,))
    index = sample[REPLAY_INDEX]
    steps, envs = index // NUM_ENVS, index % NUM_ENVS
    for key, ids in (
        (OBS, index),
        (NEXT_OBS, index + 100),
        (BOOTSTRAP_OBS, torch.clamp(steps + 1, max=5) * 2 + envs + 100),
    ):
        assert isinstance(sample[key], tuple) and len(sample[key]) == 2, key
        assert torch.equal(sample[key][0].long(), ids % 4), key
        assert torch.equal(sample[key][1][:, 0].long(), ids), key
    fresh = ReplayBuffer(8, NUM_ENVS, CPU, observation_space=space)
    fresh.prepare_load(replay.state_dict())()
    again = fresh.sample(32, torch.Generator().manual_seed(0), n_step=2, streams=(EXTRINSIC_STREAM,))
    assert_same(sample, again)


# ---------------------------------------------------------------------------------------------- 8. policy
@pytest.fixture(scope="module")
def dict_ppo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    trainer = Trainer(dict_envs(), [PPO(normalize_obs=True)], seed=3, **PPO_SMALL)
    trainer.train(32, progress=False)
    return trainer, trainer.save(tmp_path_factory.mktemp("dict_ppo"))


def sampled_observations(count: int, seed: int = 5) -> dict[str, np.ndarray]:
    space = dict_space()
    space.seed(seed)
    samples = [space.sample() for _ in range(count)]
    return {key: np.stack([sample[key] for sample in samples]) for key in space.spaces}


def trainer_actions(trainer: Trainer, obs: dict[str, np.ndarray]) -> np.ndarray:
    """The trainer's acting agent's deterministic actions, in evaluation mode."""
    agent = trainer.acting
    agent.eval()
    try:
        tree = {
            "direction": torch.as_tensor(obs["direction"], dtype=torch.float32),
            "image": torch.as_tensor(obs["image"]),
            "vec": torch.as_tensor(obs["vec"]),
        }
        with torch.inference_mode():
            return agent.env_action(agent.act(tree, deterministic=True)).numpy()
    finally:
        agent.train()


@pytest.mark.parametrize("source", ["from_trainer", "load"])
def test_predict_on_one_dict_observation_and_on_a_batch_equals_the_agents_act(source: str, dict_ppo) -> None:
    trainer, checkpoint = dict_ppo
    policy = Policy.from_trainer(trainer) if source == "from_trainer" else Policy.load(checkpoint)
    assert policy.observation_space == dict_space()
    batch = sampled_observations(32)
    expected = trainer_actions(trainer, batch)
    actions, state = policy.predict(batch)
    assert state is None and actions.shape == (32,)
    np.testing.assert_array_equal(actions, expected)
    one = {key: value[7] for key, value in batch.items()}
    action, _ = policy.predict(one)
    assert np.ndim(action) == 0 and trainer.envs.single_action_space.contains(action)
    np.testing.assert_array_equal(action, trainer_actions(trainer, {k: v[7:8] for k, v in batch.items()})[0])
    one_native = {"direction": int(one["direction"]), "image": one["image"].tolist(), "vec": one["vec"].tolist()}
    np.testing.assert_array_equal(policy.predict(one_native)[0], action)  # plain Python values too
    torch_batch = {key: torch.as_tensor(value) for key, value in batch.items()}
    np.testing.assert_array_equal(policy.predict(torch_batch)[0], expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda obs: {k: v for k, v in obs.items() if k != "vec"}, r"KeyError: 'vec'"),
        (lambda obs: {**obs, "goal": np.zeros(2)}, r"observation has keys \['goal'\]"),
        (lambda obs: {**obs, "vec": np.zeros(4, np.float32)}, r"observation 'vec' of shape \(4,\)"),
        (lambda obs: {**obs, "vec": np.array([np.nan, 0, 0], np.float32)}, r"observation 'vec' holds NaN"),
        (
            lambda obs: {**obs, "vec": np.zeros((2, 3), np.float32)},
            r"not all one observation, or all batches of one size",
        ),
        (lambda obs: [obs["direction"], obs["image"], obs["vec"]], r"does not have the structure"),
    ],
    ids=["missing-key", "extra-key", "leaf-shape", "nan", "mixed-batch", "not-a-dict"],
)
def test_predict_refuses_a_dict_observation_that_does_not_fit(change, message: str, dict_ppo) -> None:
    policy = Policy.from_trainer(dict_ppo[0])
    one = {key: value[0] for key, value in sampled_observations(1).items()}
    with pytest.raises(ValueError, match=message):
        policy.predict(change(one))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exporting_a_dict_policy_is_refused_with_a_clear_message(fmt: str, dict_ppo, tmp_path: Path) -> None:
    policy = Policy.from_trainer(dict_ppo[0])
    with pytest.raises(ExportError, match=r"reads Dict observations; exporting is supported for Box observation"):
        policy.export(tmp_path / "policy", format=fmt)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- 9. workers
def test_a_rollout_worker_collects_dict_observations_and_missing_workers_are_zero_filled() -> None:
    """RolloutWorker in this process (as Ray runs it in a worker), then the learner's join of the workers'
    batches (one of three missing)."""

    def agents() -> list:
        return [PPO(normalize_obs=True)]

    learner = Trainer(dict_envs(), agents(), seed=3, num_steps=8)
    worker = RolloutWorker(
        functools.partial(dict_envs, (2, 3)),
        agents,
        index=1,
        seed=3,
        schedule=dict(vars(learner.schedule)),
        learner_num_envs=2,
    )
    states = {agent.name: agent.state_dict() for agent in learner.agents}
    rollout = worker.collect(states, restarts=0, global_step=0, total_steps=None)
    obs = rollout.batch[OBS]
    assert isinstance(obs, dict) and rollout.steps == 16
    assert {key: (value.shape, value.dtype) for key, value in obs.items()} == {
        "direction": ((8, 2), np.float32),
        "image": ((8, 2, 7, 7, 3), np.uint8),
        "vec": ((8, 2, 3), np.float32),
    }
    assert obs["image"][:, 0, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]  # env 0: 2-step episodes
    assert obs["image"][:, 1, 0, 0, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]  # env 1: 3-step episodes
    copy_stats = worker.agents[0].obs_rms.stats["vec"]
    assert float(copy_stats.count) == pytest.approx(1e-4 + 16)  # acting moved the worker's vec statistics

    piece = copy.deepcopy(rollout.batch)
    joined = concatenate_columns([piece, None, piece])
    assert isinstance(joined[OBS], dict) and joined[OBS]["image"].shape == (8, 6, 7, 7, 3)
    assert joined[OBS]["image"].dtype == np.uint8
    np.testing.assert_array_equal(joined[OBS]["vec"][:, 4:], obs["vec"])
    assert not joined[OBS]["image"][:, 2:4].any() and not joined[VALID][:, 2:4].any()
    tree = map_tree(torch.from_numpy, joined[OBS])
    assert torch.equal(tree["direction"][:, :2], torch.from_numpy(obs["direction"]))
