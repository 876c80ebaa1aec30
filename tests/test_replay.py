"""Replay buffer: wraparound, uniform sampling of valid rows only, n-step returns by hand."""

from __future__ import annotations

import pytest
import torch

from rl_agents.core.agent import BOOTSTRAP_OBS, N_STEPS, NEXT_OBS, OBS, TERMINATED, TRUNCATED, VALID, RewardStream
from rl_agents.training.replay import ReplayBuffer

EXT = RewardStream("extrinsic", gamma=0.5)
BONUS = RewardStream("bonus", gamma=0.9, episodic=False)


def chunk(steps: list[int], num_envs: int = 1, *, terminated=(), truncated=(), invalid=()) -> dict[str, torch.Tensor]:
    """Transitions whose obs is the step number (per env: step * 10 + env) and reward = obs."""
    t = torch.tensor(steps, dtype=torch.float32)[:, None] * 10 + torch.arange(num_envs)[None, :]
    flags = {key: torch.zeros(len(steps), num_envs, dtype=torch.bool) for key in (TERMINATED, TRUNCATED)}
    valid = torch.ones(len(steps), num_envs, dtype=torch.bool)
    for key, where in ((TERMINATED, terminated), (TRUNCATED, truncated)):
        for step, env in where:
            flags[key][steps.index(step), env] = True
    for step, env in invalid:
        valid[steps.index(step), env] = False
    return {
        OBS: t.unsqueeze(-1),
        NEXT_OBS: (t + 10).unsqueeze(-1),
        EXT.key: t.clone(),
        BONUS.key: torch.ones_like(t),
        VALID: valid,
        **flags,
    }


def test_wraparound_keeps_the_newest_steps_in_a_ring() -> None:
    buffer = ReplayBuffer(capacity=4, num_envs=2, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2], num_envs=2))
    assert (buffer.size, buffer.position, len(buffer)) == (3, 3, 6)
    buffer.add(chunk([3, 4], num_envs=2))
    assert (buffer.size, buffer.position) == (4, 1)
    # step 4 overwrote step 0 at ring row 0
    assert buffer.data[OBS][:, :, 0].tolist() == [[40, 41], [10, 11], [20, 21], [30, 31]]
    buffer.add(chunk(list(range(5, 15)), num_envs=2))  # longer than the ring: only the newest 4 remain
    assert sorted(buffer.data[OBS][:, 0, 0].tolist()) == [110, 120, 130, 140]


def test_sampling_is_uniform_over_valid_rows_and_never_returns_invalid_ones() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3], num_envs=2, invalid=[(1, 0), (2, 1)]))
    generator = torch.Generator().manual_seed(0)
    sample = buffer.sample(6000, generator)
    assert sample[VALID].all()
    counts = torch.bincount(sample[OBS][:, 0].long(), minlength=32)
    drawn = {value: int(counts[value]) for value in (0, 1, 11, 20, 30, 31, 21, 10)}
    assert drawn[10] == 0 and drawn[21] == 0  # the two invalid rows
    for value in (0, 1, 11, 20, 30, 31):  # six valid rows, each about 1000 times
        assert 850 < drawn[value] < 1150, drawn
    assert sample[N_STEPS].eq(1).all() and torch.equal(sample[BOOTSTRAP_OBS], sample[NEXT_OBS])


def test_sampling_is_reproducible_from_the_generator() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=1, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3, 4]))
    first = buffer.sample(16, torch.Generator().manual_seed(3))[OBS]
    second = buffer.sample(16, torch.Generator().manual_seed(3))[OBS]
    assert torch.equal(first, second)


def only_row(buffer: ReplayBuffer, obs_value: float, n_step: int) -> dict[str, torch.Tensor]:
    """Sample until the row whose obs is ``obs_value`` comes up; return its fields."""
    generator = torch.Generator().manual_seed(0)
    sample = buffer.sample(512, generator, n_step=n_step, streams=(EXT, BONUS))
    index = (sample[OBS][:, 0] == obs_value).nonzero()[0, 0]
    return {key: value[index] for key, value in sample.items()}


def test_n_step_returns_against_hand_computed_references() -> None:
    # one env, obs = reward = 10 * step; episode terminates at step 3 and the next-step reset row 4 is invalid
    buffer = ReplayBuffer(capacity=16, num_envs=1, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3, 4, 5, 6, 7], terminated=[(3, 0)], invalid=[(4, 0)]))
    # full 3 steps from step 0: 0 + 0.5 * 10 + 0.25 * 20 = 10, next obs is step 2's next (30)
    row = only_row(buffer, 0.0, 3)
    assert float(row[EXT.key]) == pytest.approx(10.0)
    assert float(row[BONUS.key]) == pytest.approx(1 + 0.9 + 0.81)
    assert float(row[BOOTSTRAP_OBS][0]) == 30.0 and float(row[N_STEPS]) == 3 and not bool(row[TERMINATED])
    assert float(row[NEXT_OBS][0]) == 10.0  # next_obs stays the one-step next observation
    # from step 2 the episode terminates at step 3: 20 + 0.5 * 30 = 35, terminal, 2 steps
    row = only_row(buffer, 20.0, 3)
    assert float(row[EXT.key]) == pytest.approx(35.0)
    assert float(row[N_STEPS]) == 2 and bool(row[TERMINATED]) and float(row[BOOTSTRAP_OBS][0]) == 40.0
    # from step 6 only step 7 is newer: 60 + 0.5 * 70 = 95 over 2 steps, bootstrapping from 80
    row = only_row(buffer, 60.0, 3)
    assert float(row[EXT.key]) == pytest.approx(95.0)
    assert float(row[N_STEPS]) == 2 and float(row[BOOTSTRAP_OBS][0]) == 80.0


def test_n_step_stops_at_truncation_and_keeps_the_truncated_flag() -> None:
    buffer = ReplayBuffer(capacity=16, num_envs=1, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3], truncated=[(1, 0)], invalid=[(2, 0)]))
    row = only_row(buffer, 0.0, 4)
    assert float(row[EXT.key]) == pytest.approx(0 + 0.5 * 10)
    assert float(row[N_STEPS]) == 2 and bool(row[TRUNCATED]) and not bool(row[TERMINATED])


def test_n_step_look_ahead_follows_the_ring_across_the_wrap() -> None:
    buffer = ReplayBuffer(capacity=4, num_envs=1, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3, 4, 5]))  # ring rows hold steps 4, 5, 2, 3
    row = only_row(buffer, 30.0, 3)  # step 3 at ring row 3, then steps 4 and 5 at rows 0 and 1
    assert float(row[EXT.key]) == pytest.approx(30 + 0.5 * 40 + 0.25 * 50)
    assert float(row[N_STEPS]) == 3 and float(row[BOOTSTRAP_OBS][0]) == 60.0
    row = only_row(buffer, 50.0, 3)  # the newest step: nothing to look ahead to
    assert float(row[EXT.key]) == pytest.approx(50.0) and float(row[N_STEPS]) == 1


def test_restore_round_trips_the_ring() -> None:
    buffer = ReplayBuffer(capacity=4, num_envs=2, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2, 3, 4, 5], num_envs=2))
    copy = ReplayBuffer(capacity=4, num_envs=2, device=torch.device("cpu"))
    copy.load_state_dict(buffer.state_dict())
    for seed in range(3):
        a = buffer.sample(32, torch.Generator().manual_seed(seed), n_step=2, streams=(EXT,))
        b = copy.sample(32, torch.Generator().manual_seed(seed), n_step=2, streams=(EXT,))
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_buffer_larger_than_memory_is_refused_with_its_size() -> None:
    buffer = ReplayBuffer(capacity=10**11, num_envs=1, device=torch.device("cpu"))
    with pytest.raises(MemoryError, match=r"100,000,000,000 transitions needs .* GiB .*lower buffer_size"):
        buffer.add(chunk([0, 1]))


def test_sampling_rejects_only_while_invalid_rows_are_stored_and_restore_agrees() -> None:
    buffer = ReplayBuffer(capacity=3, num_envs=1, device=torch.device("cpu"))
    buffer.add(chunk([0, 1, 2], invalid=[(1, 0)]))
    assert buffer._invalid_count == 1
    buffer.add(chunk([3, 4]))  # overwrites steps 0 and 1: the invalid row is gone
    assert buffer._invalid_count == 0
    copy = ReplayBuffer(capacity=3, num_envs=1, device=torch.device("cpu"))
    copy.load_state_dict(buffer.state_dict())
    assert copy._invalid_count == 0
    a = buffer.sample(16, torch.Generator().manual_seed(5))
    b = copy.sample(16, torch.Generator().manual_seed(5))
    assert torch.equal(a[OBS], b[OBS])
