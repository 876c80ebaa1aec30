"""Hindsight Experience Replay: the replay ring's episode extents, goal relabeling by each strategy against
hand-built rings whose goals name their step, the refusals, and DQN+HER trained, resumed and run from the
command line on BitFlip."""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rl_agents import DQN, HER, PER, PPO, RND, CompositionError, Trainer
from rl_agents.agents.her import STRATEGIES, HindsightRelabeling
from rl_agents.cli.main import main
from rl_agents.core.agent import (
    BOOTSTRAP_OBS,
    NEXT_OBS,
    OBS,
    REPLAY_INDEX,
    TERMINATED,
    TRUNCATED,
    VALID,
    ContractError,
    EnvContext,
)
from rl_agents.envs import make_envs
from rl_agents.envs.bit_flip import BitFlipEnv
from rl_agents.training.replay import ReplayBuffer

REWARD = "reward/extrinsic"
ACHIEVED, DESIRED = "achieved_goal", "desired_goal"
CPU = torch.device("cpu")
Flags = tuple[tuple[int, int], ...]  # (step, env) pairs


# ---------------------------------------------------------------------------------------------- hand-built rings
def flags(steps: list[int], num_envs: int, where: Flags) -> torch.Tensor:
    mask = torch.zeros(len(steps), num_envs, dtype=torch.bool)
    for step, env in where:
        if step in steps:
            mask[steps.index(step), env] = True
    return mask


def flat_chunk(
    steps: list[int], num_envs: int, *, terminated: Flags = (), truncated: Flags = (), invalid: Flags = ()
) -> dict[str, torch.Tensor]:
    """A ``[T, N, ...]`` chunk of plain transitions whose obs is ``step * 10 + env`` (next_obs: + 10)."""
    value = torch.tensor(steps, dtype=torch.float32)[:, None] * 10 + torch.arange(num_envs)[None, :]
    return {
        OBS: value.unsqueeze(-1),
        NEXT_OBS: (value + 10).unsqueeze(-1),
        REWARD: torch.ones(len(steps), num_envs),
        VALID: ~flags(steps, num_envs, invalid),
        TERMINATED: flags(steps, num_envs, terminated),
        TRUNCATED: flags(steps, num_envs, truncated),
    }


def slot(step: int, env: int, capacity: int, num_envs: int) -> int:
    """The replay index of absolute step ``step`` of env ``env``: ring row * num_envs + env."""
    return (step % capacity) * num_envs + env


def extents(buffer: ReplayBuffer, cases: dict[tuple[int, int], tuple[int, int]], window: int) -> dict:
    keys = list(cases)
    slots = torch.tensor([slot(step, env, buffer.capacity, buffer.num_envs) for step, env in keys])
    behind, ahead = buffer.episode_extent(slots, window=window)
    assert behind.dtype == ahead.dtype == torch.int64 and behind.device.type == "cpu"
    return {key: (int(b), int(a)) for key, b, a in zip(keys, behind, ahead)}


WINDOWS = [64, 1, 2, 3]  # the default, and windows smaller than the episodes (several scans)


@pytest.mark.parametrize("window", WINDOWS)
def test_episode_extent_of_a_filling_ring_with_next_step_autoreset_rows(window: int) -> None:
    """Capacity 8, two envs, steps 0..5 stored. Env 0: terminated at 2, reset row 3, episode 4.. still
    running. Env 1: truncated at 1, reset row 2, terminated at 4, reset row 5. The unwritten rows 6, 7 are
    made to look like a running episode: ``ahead`` must stop at the newest stored step all the same."""
    buffer = ReplayBuffer(capacity=8, num_envs=2, device=CPU)
    buffer.add(
        flat_chunk(
            [0, 1, 2, 3, 4, 5], 2, terminated=((2, 0), (4, 1)), truncated=((1, 1),), invalid=((3, 0), (2, 1), (5, 1))
        )
    )
    buffer.data[VALID][6:] = True  # stale rows past the newest step: valid, never done
    expected = {
        (0, 0): (0, 2),
        (1, 0): (1, 1),
        (2, 0): (2, 0),  # the step that terminated: nothing ahead
        (4, 0): (0, 1),  # behind stops at the reset row 3
        (5, 0): (1, 0),  # the newest stored step of a running episode
        (0, 1): (0, 1),
        (1, 1): (1, 0),  # truncated
        (3, 1): (0, 1),  # behind stops at the reset row 2
        (4, 1): (1, 0),
    }
    assert extents(buffer, expected, window) == expected


@pytest.mark.parametrize("window", WINDOWS)
def test_episode_extent_of_a_wrapped_ring(window: int) -> None:
    """Capacity 8, two envs, steps 0..11 written: the ring holds steps 4..11, step 4 (the oldest) at row 4
    just after step 11 (the newest) at row 3. Env 0: one episode over steps 0..9 (terminated at 9, its
    first four steps overwritten), reset row 10, a new episode at 11. Env 1 (same-step autoreset, no
    reset rows): truncated at 1 (overwritten), an episode 2..6 terminated at 6, the next one 7.. running."""
    buffer = ReplayBuffer(capacity=8, num_envs=2, device=CPU)
    buffer.add(flat_chunk(list(range(0, 5)), 2, truncated=((1, 1),)))
    buffer.add(flat_chunk(list(range(5, 12)), 2, terminated=((9, 0), (6, 1)), invalid=((10, 0),)))
    assert (buffer.size, buffer.position) == (8, 4)
    expected = {
        (4, 0): (0, 5),  # behind stops at the oldest stored step, not at step 11 in the row before
        (6, 0): (2, 3),
        (9, 0): (5, 0),
        (11, 0): (0, 0),  # after the reset row; ahead does not run on into step 4's row
        (4, 1): (0, 2),
        (5, 1): (1, 1),
        (6, 1): (2, 0),
        (7, 1): (0, 4),  # same-step autoreset: the episode starts right after the done
        (9, 1): (2, 2),
        (11, 1): (4, 0),
    }
    assert extents(buffer, expected, window) == expected


@pytest.mark.parametrize("window", WINDOWS)
def test_episode_extent_of_one_episode_longer_than_the_ring(window: int) -> None:
    """No done flag anywhere: every step's episode is exactly the stored steps (6..9 of capacity 4)."""
    buffer = ReplayBuffer(capacity=4, num_envs=1, device=CPU)
    buffer.add(flat_chunk(list(range(10)), 1))
    expected = {(6, 0): (0, 3), (7, 0): (1, 2), (8, 0): (2, 1), (9, 0): (3, 0)}
    assert extents(buffer, expected, window) == expected


def reference_extents(history: list[list[tuple[bool, bool]]], capacity: int) -> dict[tuple[int, int], tuple[int, int]]:
    """(behind, ahead) of every valid stored (step, env), walking each env's steps one by one."""
    total = len(history)
    oldest = max(0, total - capacity)
    result = {}
    for env in range(len(history[0])):
        for step in range(oldest, total):
            valid, done = history[step][env]
            if not valid:
                continue
            behind = 0
            while step - behind - 1 >= oldest:
                before_valid, before_done = history[step - behind - 1][env]
                if before_done or not before_valid:
                    break
                behind += 1
            ahead = 0
            while not history[step + ahead][env][1] and step + ahead + 1 < total:
                ahead += 1
            result[(step, env)] = (behind, ahead)
    return result


@pytest.mark.parametrize("seed", range(4))
def test_episode_extent_matches_a_step_by_step_walk_on_random_rings(seed: int) -> None:
    rng = random.Random(seed)
    capacity, num_envs = 16, 3
    buffer = ReplayBuffer(capacity=capacity, num_envs=num_envs, device=CPU)
    history: list[list[tuple[bool, bool]]] = []
    pending_reset = [False] * num_envs  # next-step autoreset: the step after a done is a reset row
    for _ in range(rng.randint(3, 8)):
        length = rng.randint(1, 20)  # sometimes longer than the ring
        steps = list(range(len(history), len(history) + length))
        terminated, truncated, invalid = [], [], []
        for step in steps:
            row = []
            for env in range(num_envs):
                if pending_reset[env]:
                    invalid.append((step, env))
                    pending_reset[env] = False
                    row.append((False, False))
                    continue
                done = rng.random() < 0.2
                if done:
                    (terminated if rng.random() < 0.5 else truncated).append((step, env))
                    pending_reset[env] = env != 2  # env 2: same-step autoreset, no reset rows
                row.append((True, done))
            history.append(row)
        buffer.add(
            flat_chunk(
                steps, num_envs, terminated=tuple(terminated), truncated=tuple(truncated), invalid=tuple(invalid)
            )
        )
    expected = reference_extents(history, capacity)
    for window in (1, 2, 5, 64):
        assert extents(buffer, expected, window) == expected


def test_stored_at_reads_across_the_ring_wrap() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, device=CPU)
    buffer.add(flat_chunk(list(range(12)), 2))  # steps 4..11 stored; step 8 at row 0
    starts = [(6, 0), (9, 0), (4, 1), (11, 1), (7, 1)]
    slots = torch.tensor([slot(step, env, 8, 2) for step, env in starts])
    offsets = torch.tensor([3, -5, 7, -7, 0])
    # obs = step * 10 + env of steps 9, 4, 11, 4 and 7
    assert buffer.stored_at(OBS, slots, offsets).squeeze(-1).tolist() == [90.0, 40.0, 111.0, 41.0, 71.0]
    assert buffer.stored_at(NEXT_OBS, slots, offsets).squeeze(-1).tolist() == [100.0, 50.0, 121.0, 51.0, 81.0]


# ---------------------------------------------------------------------------------------------- relabeling
GOAL_SPACE = gym.spaces.Dict(
    {key: gym.spaces.Box(-1000.0, 1000.0, (2,), np.float32) for key in ("observation", ACHIEVED, DESIRED)}
)
UNSET_GOAL = -1.0  # the goal every stored transition pursued: never achieved
STORED_REWARD = 5.0


def goal_chunk(
    steps: list[int], num_envs: int, *, terminated: Flags = (), truncated: Flags = (), invalid: Flags = ()
) -> dict:
    """Dict-observation transitions whose goals name their step: ``next_obs.achieved_goal`` of step s in
    env e is [s, e] (obs's: [s - 0.5, e]); every desired goal is [-1, -1] and every reward 5."""
    step = torch.tensor(steps, dtype=torch.float32)[:, None].expand(len(steps), num_envs)
    env = torch.arange(num_envs, dtype=torch.float32)[None, :].expand(len(steps), num_envs)

    def observation(achieved_step: torch.Tensor) -> dict[str, torch.Tensor]:
        leaves = {
            "observation": torch.stack([achieved_step * 100, env], -1),
            ACHIEVED: torch.stack([achieved_step, env], -1),
            DESIRED: torch.full((len(steps), num_envs, 2), UNSET_GOAL),
        }
        return {key: leaves[key] for key in GOAL_SPACE.spaces}  # in the space's order

    return {
        OBS: observation(step - 0.5),
        NEXT_OBS: observation(step.clone()),
        REWARD: torch.full((len(steps), num_envs), STORED_REWARD),
        VALID: ~flags(steps, num_envs, invalid),
        TERMINATED: flags(steps, num_envs, terminated),
        TRUNCATED: flags(steps, num_envs, truncated),
    }


def goal_distance_reward(achieved: np.ndarray, desired: np.ndarray, info: object) -> np.ndarray:
    """A batched compute_reward that says which goal it was given: minus the L1 distance."""
    assert isinstance(info, list) and len(info) == len(achieved)
    return -np.abs(achieved - desired).sum(-1)


def wrapped_goal_ring() -> tuple[ReplayBuffer, dict[tuple[int, int], tuple[int, int]]]:
    """Capacity 8, two envs, steps 0..11 written (4..11 stored), next-step autoreset. Env 0: an episode
    0..6 terminated at 6 (stored from 4), reset row 7, an episode 8..11 still running. Env 1: terminated
    at 3 (overwritten), reset row 4, an episode 5..8 truncated at 8, reset row 9, an episode 10..11
    running. Returns the buffer and each valid stored (step, env)'s episode as (first stored, last)."""
    buffer = ReplayBuffer(capacity=8, num_envs=2, device=CPU, observation_space=GOAL_SPACE)
    buffer.add(goal_chunk(list(range(0, 6)), 2, terminated=((3, 1),), invalid=((4, 1),)))
    buffer.add(goal_chunk(list(range(6, 12)), 2, terminated=((6, 0),), truncated=((8, 1),), invalid=((7, 0), (9, 1))))
    episodes = {0: [(4, 6), (8, 11)], 1: [(5, 8), (10, 11)]}
    ranges = {
        (step, env): (first, last)
        for env, spans in episodes.items()
        for first, last in spans
        for step in range(first, last + 1)
    }
    return buffer, ranges


def snapshot(batch: dict) -> dict:
    return {
        key: {leaf: v.clone() for leaf, v in value.items()} if isinstance(value, dict) else value.clone()
        for key, value in batch.items()
    }


def assert_same_batch(a: dict, b: dict, skip: frozenset[str] = frozenset()) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            for leaf in a[key]:
                if f"{key}.{leaf}" not in skip:
                    assert torch.equal(a[key][leaf], b[key][leaf]), f"{key}.{leaf}"
        elif key not in skip:
            assert torch.equal(a[key], b[key]), key


def allowed_steps(strategy: str, step: int, first: int, last: int) -> set[int]:
    return {"final": {last}, "future": set(range(step, last + 1)), "episode": set(range(first, last + 1))}[strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_relabeled_goals_come_from_the_rows_own_episode(strategy: str) -> None:
    """Every row relabeled (fraction 1): its new goal, the same in obs, next_obs and bootstrap_obs, is
    the achieved goal of a step its strategy allows, in its own episode and env; over 2000 rows every
    allowed step comes up; the reward is compute_reward(the row's achieved goal, the new goal); nothing
    else changes, and neither the tensors the minibatch held (next_obs and bootstrap_obs share theirs)
    nor the ring are written."""
    buffer, ranges = wrapped_goal_ring()
    stored = {key: value.clone() for key, value in buffer.data.items()}
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(2000, generator)
    assert batch[NEXT_OBS][DESIRED] is batch[BOOTSTRAP_OBS][DESIRED]  # one-step: shared leaves
    held = {key: batch[key][DESIRED] for key in (OBS, NEXT_OBS)} | {REWARD: batch[REWARD]}
    before = snapshot(batch)

    metrics = HindsightRelabeling(strategy, 1.0, goal_distance_reward, "her").apply(batch, buffer, generator)

    assert float(metrics["relabeled"]) == 1.0
    for key in (OBS, NEXT_OBS):  # the tensors the minibatch held are unchanged (new ones were assigned)
        assert torch.equal(held[key], before[key][DESIRED]) and held[key] is not batch[key][DESIRED]
    assert torch.equal(held[REWARD], before[REWARD])
    assert all(torch.equal(value, stored[key]) for key, value in buffer.data.items())
    desired = {f"{key}.{DESIRED}" for key in (OBS, NEXT_OBS, BOOTSTRAP_OBS)}
    assert_same_batch(batch, before, skip=frozenset(desired | {REWARD}))

    goal = batch[OBS][DESIRED]
    assert torch.equal(batch[NEXT_OBS][DESIRED], goal) and torch.equal(batch[BOOTSTRAP_OBS][DESIRED], goal)
    row_step, row_env = batch[NEXT_OBS][ACHIEVED].long().unbind(1)
    assert torch.equal(batch[REPLAY_INDEX], (row_step % 8) * 2 + row_env)  # the goals name the right step
    assert torch.equal(goal[:, 1].long(), row_env)  # the row's own env
    assert torch.equal(goal, goal.round())  # a stored next_obs achieved goal, not obs's [s - 0.5, e]
    chosen: dict[tuple[int, int], set[int]] = {}
    for step, env, goal_step in zip(row_step.tolist(), row_env.tolist(), goal[:, 0].long().tolist()):
        chosen.setdefault((step, env), set()).add(goal_step)
    assert chosen.keys() == ranges.keys()  # every valid stored transition was drawn (and only those)
    for (step, env), goal_steps in chosen.items():
        assert goal_steps == allowed_steps(strategy, step, *ranges[(step, env)]), (step, env)
    assert batch[REWARD].dtype == torch.float32
    assert torch.equal(batch[REWARD], -(goal[:, 0] - row_step.float()).abs())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_unfinished_episode_only_uses_its_stored_steps(strategy: str) -> None:
    """One env, steps 0..4 of a running episode in a ring of 8; rows 5..7 are filled with recognizable
    stale transitions (valid, achieved goal [99, 0], a done at 6): no goal may come from them."""
    buffer = ReplayBuffer(capacity=8, num_envs=1, device=CPU, observation_space=GOAL_SPACE)
    buffer.add(goal_chunk(list(range(5)), 1))
    buffer.data[VALID][5:] = True
    buffer.data[TERMINATED][6] = True
    buffer.data[f"{NEXT_OBS}.{ACHIEVED}"][5:] = torch.tensor([99.0, 0.0])
    generator = torch.Generator().manual_seed(1)
    batch = buffer.sample(500, generator)
    HindsightRelabeling(strategy, 1.0, goal_distance_reward, "her").apply(batch, buffer, generator)
    row_step = batch[NEXT_OBS][ACHIEVED][:, 0].long()
    goal_step = batch[NEXT_OBS][DESIRED][:, 0].long()
    assert set(row_step.tolist()) == {0, 1, 2, 3, 4}
    assert set(goal_step.tolist()) == {4} if strategy == "final" else {0, 1, 2, 3, 4}
    if strategy == "future":
        assert (goal_step >= row_step).all()


def bound_her(**options) -> HER:
    her = HER(**options)
    her.bind(EnvContext(GOAL_SPACE, gym.spaces.Discrete(2), 2, CPU, (), compute_reward=goal_distance_reward))
    return her


@pytest.mark.parametrize("n_sampled_goal, low, high", [(4, 0.75, 0.85), (1, 0.45, 0.55), (0, 0.0, 0.0)])
def test_her_relabels_its_fraction_of_rows_and_leaves_the_others_untouched(
    n_sampled_goal: int, low: float, high: float
) -> None:
    transform = bound_her(n_sampled_goal=n_sampled_goal).replay_transform()
    assert transform.relabel_fraction == n_sampled_goal / (n_sampled_goal + 1)
    buffer, _ = wrapped_goal_ring()
    generator = torch.Generator().manual_seed(2)
    batch = buffer.sample(4000, generator)
    before = snapshot(batch)
    metrics = transform.apply(batch, buffer, generator)
    relabeled = (batch[OBS][DESIRED] != UNSET_GOAL).all(1)
    assert low <= float(relabeled.float().mean()) <= high
    assert float(metrics["relabeled"]) == pytest.approx(float(relabeled.float().mean()))
    kept = ~relabeled
    for key in (OBS, NEXT_OBS, BOOTSTRAP_OBS):
        assert ((batch[key][DESIRED] != UNSET_GOAL).all(1) == relabeled).all()  # all three leaves, or none
        assert torch.equal(batch[key][DESIRED][kept], before[key][DESIRED][kept])
    assert torch.equal(batch[REWARD][kept], before[REWARD][kept])
    assert (batch[REWARD][relabeled] <= 0).all()  # recomputed (stored rewards are 5)
    if n_sampled_goal == 0:
        assert_same_batch(batch, before)


def test_relabeling_is_reproducible_from_the_generator() -> None:
    transform = HindsightRelabeling("future", 0.8, goal_distance_reward, "her")
    buffer, _ = wrapped_goal_ring()
    results = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(5)
        batch = buffer.sample(256, generator)
        transform.apply(batch, buffer, generator)
        results.append((batch[OBS][DESIRED], batch[REWARD]))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


# ---------------------------------------------------------------------------------------------- refusals
def bit_flip(num_envs: int = 2, n_bits: int = 4) -> gym.vector.VectorEnv:
    return make_envs("rl_agents/BitFlip-v0", num_envs, n_bits=n_bits)


def test_her_refuses_a_non_goal_environment() -> None:
    with pytest.raises(CompositionError, match="agent 'her' relabels goals, but the observation space .* is not goal"):
        Trainer(make_envs("CartPole-v1", 1), [DQN(), HER()], seed=1)


def test_her_refuses_an_on_policy_learner() -> None:
    with pytest.raises(
        CompositionError, match="agent 'her' rewrites replay minibatches, but agent 'ppo' trains on-policy"
    ):
        Trainer(bit_flip(1), [PPO(), HER()], seed=1)


def test_her_refuses_n_step_returns() -> None:
    with pytest.raises(CompositionError, match=r"agent 'her' rewrites single transitions.*\(n_step=3\).*use n_step 1"):
        Trainer(bit_flip(1), [DQN(), HER()], seed=1, n_step=3)


def test_her_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="goal_selection_strategy must be one of 'future', 'final', 'episode', got 'b"):
        HER(goal_selection_strategy="best")
    with pytest.raises(ValueError, match="n_sampled_goal must be >= 0, got -1"):
        HER(n_sampled_goal=-1)
    with pytest.raises(RuntimeError, match="must be bound"):
        HER().replay_transform()


class NoRewardFunction(gym.Env):
    """A goal Dict observation, but no compute_reward."""

    observation_space = GOAL_SPACE
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_her_refuses_a_goal_environment_without_compute_reward() -> None:
    envs = gym.vector.SyncVectorEnv([NoRewardFunction])
    with pytest.raises(CompositionError, match="agent 'her' relabels goals, but the environment has no compute_reward"):
        Trainer(envs, [DQN(), HER()], seed=1)


@pytest.mark.parametrize(
    "compute_reward, match",
    [
        (lambda a, d, info: -np.abs(a - d), r"returned \(16, 2\) values for 16 goal pairs"),  # per goal component
        (lambda a, d, info: np.float32(0.0), r"returned \(\) values for 16 goal pairs"),
        (lambda a, d, info: np.full(len(a), np.nan), r"returned \(16,\) values with NaN or inf for 16 goal pairs"),
    ],
    ids=["per-component", "scalar", "nan"],
)
def test_a_broken_compute_reward_is_a_contract_error(compute_reward: Callable, match: str) -> None:
    buffer, _ = wrapped_goal_ring()
    generator = torch.Generator().manual_seed(0)
    batch = buffer.sample(16, generator)
    with pytest.raises(ContractError, match=r"agent 'her': the environment's compute_reward " + match):
        HindsightRelabeling("future", 1.0, compute_reward, "her").apply(batch, buffer, generator)


class UnbatchedBitFlip(BitFlipEnv):
    """compute_reward works for one goal pair but returns one value per bit for a batch."""

    def compute_reward(self, achieved_goal, desired_goal, info):
        if np.ndim(achieved_goal) == 1:
            return super().compute_reward(achieved_goal, desired_goal, info)
        return -(np.asarray(achieved_goal) != np.asarray(desired_goal)).astype(np.float32)


def test_a_broken_compute_reward_stops_training_naming_her() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: UnbatchedBitFlip(n_bits=4)])
    trainer = Trainer(envs, [DQN(), HER()], seed=0, learning_starts=20, buffer_size=200, batch_size=8)
    with pytest.raises(ContractError, match=r"agent 'her': the environment's compute_reward returned \(\d+, 4\)"):
        trainer.train(100, progress=False, quiet=True)


# ---------------------------------------------------------------------------------------------- end to end
class History:
    def __init__(self) -> None:
        self.rows: list[tuple[int, dict[str, float]]] = []

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append((step, dict(metrics)))

    def close(self) -> None:
        pass


def dqn_her(seed: int = 0, history: History | None = None) -> Trainer:
    return Trainer(
        bit_flip(),
        [DQN(), HER()],
        seed=seed,
        learning_starts=50,
        buffer_size=1000,
        loggers=[history] if history else (),
        log_interval=50,
    )


def assert_same_parameters(a: Trainer, b: Trainer) -> None:
    for agent_a, agent_b in zip(a.agents, b.agents):
        sa, sb = agent_a.state_dict(), agent_b.state_dict()
        assert sa.keys() == sb.keys()
        for key in sa:
            assert torch.equal(sa[key], sb[key]), f"{agent_a.name}/{key}"
    assert torch.equal(a.generator.get_state(), b.generator.get_state())


def slots_whose_episode_mixes_goals(trainer: Trainer) -> list[int]:
    """Valid ring slots whose episode, as ``episode_extent`` finds it, starts or ends at a step pursuing
    another desired goal: a BitFlip episode keeps its goal, so such a span joins two episodes."""
    replay = trainer.learner.replay
    slots = torch.arange(replay.size * replay.num_envs)[replay.data[VALID][: replay.size].reshape(-1)]
    behind, ahead = replay.episode_extent(slots)
    key = f"{OBS}.{DESIRED}"
    own = replay.stored_at(key, slots, torch.zeros_like(slots))
    same = (replay.stored_at(key, slots, -behind) == own).all(1) & (replay.stored_at(key, slots, ahead) == own).all(1)
    return slots[~same].tolist()


def test_dqn_her_trains_on_bit_flip_and_relabels_consistently() -> None:
    history = History()
    trainer = dqn_her(history=history)
    given: list[torch.Generator] = []
    transform = trainer.learner._transforms[0][1]
    apply = transform.apply
    transform.apply = lambda batch, replay, generator: given.append(generator) or apply(batch, replay, generator)
    trainer.train(300, progress=False, quiet=True)
    # one relabeling per gradient step, drawing from the learner's generator (checkpointed: exact resumes)
    assert len(given) == trainer.learner.total_gradient_steps
    assert all(generator is trainer.learner.generator for generator in given)
    assert slots_whose_episode_mixes_goals(trainer) == []
    assert trainer.global_step >= 300 and trainer.learner.total_gradient_steps > 0
    relabeled = [metrics["her/relabeled"] for _, metrics in history.rows if "her/relabeled" in metrics]
    assert relabeled and all(0.6 <= value <= 1.0 for value in relabeled)  # 0.8 of each minibatch of 32
    assert all(torch.isfinite(p).all() for p in trainer.acting.parameters())
    # On the real ring: every row's reward is the env's for its goal (stored ones and relabeled ones).
    replay = trainer.learner.replay
    generator = torch.Generator().manual_seed(0)
    batch = replay.sample(1000, generator)
    apply(batch, replay, generator)
    expected = BitFlipEnv(n_bits=4).compute_reward(batch[NEXT_OBS][ACHIEVED].numpy(), batch[OBS][DESIRED].numpy(), {})
    assert np.array_equal(batch[REWARD].numpy(), expected)
    assert (batch[REWARD] == 0).float().mean() > 0.1  # hindsight goals are often reached


def test_dqn_her_resumes_from_a_checkpoint_exactly(tmp_path: Path) -> None:
    """A trains 300 steps, saving once it has passed 150 (at a logged update, as tests/test_reliability.py
    does: a second ``train()`` call would reset the envs); B loads that checkpoint and trains to 300: the
    same ring, parameters and generator (HER's draws come from the learner's generator, which the
    checkpoint holds)."""
    saved: list[Path] = []

    def save_halfway(trainer: Trainer) -> None:
        if not saved and trainer.global_step >= 150:
            saved.append(trainer.save(tmp_path / "checkpoints"))

    first = dqn_her()
    first.train(300, progress=False, quiet=True, on_update=save_halfway)
    assert saved
    resumed = dqn_her(seed=9)
    resumed.load_state(saved[0])
    assert 150 <= resumed.global_step < 300
    resumed.train(300, progress=False, quiet=True)
    assert resumed.global_step == first.global_step
    assert resumed.learner.total_gradient_steps == first.learner.total_gradient_steps > 0
    replay, loaded = first.learner.replay, resumed.learner.replay
    assert replay.position == loaded.position and replay.size == loaded.size
    assert all(torch.equal(value, loaded.data[key]) for key, value in replay.data.items())
    assert_same_parameters(first, resumed)


def restart_then_step(trainer: Trainer, total_steps: int) -> None:
    """Restart the envs (as after a failure) and go on with the public loop to ``total_steps``."""
    obs = trainer.restart_envs()
    while trainer.global_step < total_steps:
        obs, reward, terminated, truncated, info = trainer.collector.envs.step(trainer.act(obs))
        trainer.observe(obs, reward, terminated, truncated, info)


@pytest.mark.parametrize("go_on", ["train", "restart_envs"])
def test_an_episode_cut_by_a_reset_does_not_run_into_the_next_one(go_on: str) -> None:
    """A reset without a done flag (a second train() call, restarted envs) ends the episode it cut."""
    trainer = Trainer(
        bit_flip(n_bits=8),
        [DQN(), HER()],
        seed=0,
        learning_starts=50,
        buffer_size=1000,
    )
    trainer.train(200, progress=False, quiet=True)  # stops mid-episode (8 steps, or fewer when solved)
    if go_on == "restart_envs":
        restart_then_step(trainer, 400)
    else:
        trainer.train(400, progress=False, quiet=True)  # resets the envs (Trainer.train's docstring)
    assert slots_whose_episode_mixes_goals(trainer) == []


# ---------------------------------------------------------------------------------------------- command line
def test_cli_trains_dqn_her_on_bit_flip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The BitFlip preset (15 bits, learning from step 1000) with learning from step 50 and a log every 100
    steps, so that 300 steps train and write metrics."""
    run = tmp_path / "run"
    args = ["--env", "rl_agents/BitFlip-v0", "--agents", "dqn+her", "--steps", "300", "--seed", "1"]
    settings = ["--set", "trainer.learning_starts=50", "--set", "trainer.log_interval=100"]
    code = main(["train", *args, *settings, "--out", str(run), "--quiet"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) >= 2
    relabeled = [float(row["her/relabeled"]) for row in rows if row.get("her/relabeled")]
    assert relabeled and all(0.7 <= value <= 0.9 for value in relabeled)  # 4 of 5 rows of 128 per minibatch
    assert yaml.safe_load((run / "config.yaml").read_text())["agents"] == "dqn+her"


def test_cli_refuses_ppo_her_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code = main(["train", "--env", "rl_agents/BitFlip-v0", "--agents", "ppo+her", "--steps", "300", "--out", str(run)])
    code_out = capsys.readouterr()
    lines = code_out.err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("rl-agents: error: ") and "'her'" in lines[0]
    assert "on-policy" in lines[0] and "Traceback" not in code_out.err


def test_cli_trains_sac_her_on_continuous_bit_flip_with_its_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--agents sac+her`` picks the SAC preset: 15 continuous bits (a Box action space)."""
    run = tmp_path / "run"
    args = ["--env", "rl_agents/BitFlip-v0", "--agents", "sac+her", "--steps", "300", "--seed", "1"]
    settings = ["--set", "trainer.learning_starts=50", "--set", "trainer.log_interval=100"]
    assert main(["train", *args, *settings, "--out", str(run), "--quiet"]) == 0, capsys.readouterr().err
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["agents"] == "sac+her" and config["env_kwargs"] == {"n_bits": 15, "continuous": True}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert any(row.get("her/relabeled") for row in rows)


def test_her_composes_with_prioritized_replay_and_a_bonus() -> None:
    """dqn+per+her+rnd: PER draws the rows, HER relabels them, RND adds its stream; all train."""
    trainer = Trainer(
        bit_flip(n_bits=6), [DQN(), PER(), HER(), RND()], seed=0, learning_starts=50, buffer_size=1000, log_interval=50
    )
    before = {name: value.clone() for name, value in trainer.agents[0].state_dict().items()}
    metrics: list[dict[str, float]] = []
    trainer.train(300, progress=False, quiet=True, on_update=lambda t: metrics.append(dict(t.metrics)))
    relabeled = [m["her/relabeled"] for m in metrics if "her/relabeled" in m]
    assert relabeled and all(0.5 <= value <= 1.0 for value in relabeled)
    assert any(not torch.equal(before[name], value) for name, value in trainer.agents[0].state_dict().items())
    assert trainer.learner.replay.sampler is not None and "reward/intrinsic" in trainer.learner.replay.data
