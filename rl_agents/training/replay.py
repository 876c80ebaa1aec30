"""Replay buffer for off-policy learners: a ring of ``[capacity, num_envs, ...]`` host tensors.

Chunks of ``[T, num_envs, ...]`` transitions (already preprocessed, so exploration bonuses' rewards
are stored with them) are appended along time; the oldest are overwritten once the ring is full.
Keeping each env's transitions in time order is what makes n-step returns possible at sampling time.

Sampling is uniform over the stored transitions that are real (``valid``): the reset step of a
next-step autoreset is stored, to keep the time axis regular, but never sampled. A part of the
composition may supply a :class:`~rl_agents.core.sampling.ReplaySampler` instead (prioritized replay):
the buffer then tells it every slot it writes, draws through it, and passes it the learner's feedback;
its state is saved, restored and rolled back with the buffer's.

Structured observations (Dict or Tuple spaces) are stored leaf by leaf under flat keys (``obs.image``,
``next_obs.image``, ...; see :func:`rl_agents.core.tree.flatten_structured`), so the ring, its journal
and its checkpoints handle nothing but tensors; sampled minibatches give them back as trees.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from rl_agents.core.agent import (
    BOOTSTRAP_OBS,
    EPISODE_START,
    N_STEPS,
    NEXT_OBS,
    OBS,
    REPLAY_INDEX,
    SAMPLE_WEIGHT,
    TERMINATED,
    TRUNCATED,
    VALID,
    Batch,
    RewardStream,
)
from rl_agents.core.sampling import ReplaySampler
from rl_agents.core.state import Apply, StateError, count, entry
from rl_agents.core.tree import Tree, flatten_structured, map_space, named_leaves, nest_structured, tree_leaves


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not available on this platform
        return 0


@dataclass(frozen=True)
class ReplayMark:
    """What :meth:`ReplayBuffer.rewind` needs to undo the adds made since :meth:`ReplayBuffer.mark`."""

    position: int
    size: int
    invalid_count: int
    saved: list[tuple[slice, Batch]] | None  # the stored rows the adds overwrite; None: nothing allocated yet
    fresh: list[slice]  # the rows they write that held no data (zeros) yet
    sampler: Any = None  # what the sampler's rewind needs (None: uniform sampling)


class ReplayBuffer:
    """Args:
    capacity: vector steps kept (``buffer_size // num_envs``); each holds ``num_envs`` transitions.
    device: where sampled minibatches are returned; the ring itself stays in host memory.
    sampler: draws minibatches instead of uniform sampling (e.g. prioritized replay); None: uniform.
    observation_space: the single env's observation space; a Dict or Tuple one is stored leaf by leaf.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        device: torch.device,
        sampler: ReplaySampler | None = None,
        observation_space: gym.Space | None = None,
    ):
        if capacity < 1:
            raise ValueError(f"the replay buffer must hold at least one vector step, got capacity {capacity}")
        self.capacity = capacity
        self.num_envs = num_envs
        self.device = device
        self.data: Batch = {}
        self._invalid_count = 0  # invalid transitions in the ring; sampling rejects only when there are any
        self.position = 0  # next vector step to write
        self.size = 0  # vector steps stored
        self.sampler = sampler
        # Where each structured observation key's leaves live in ``data`` (empty for a plain space).
        self.structures: dict[str, Tree] = {}
        if observation_space is not None and isinstance(observation_space, (gym.spaces.Dict, gym.spaces.Tuple)):
            layout = map_space(lambda leaf: None, observation_space)
            self.structures = {key: named_leaves(layout, key) for key in (OBS, NEXT_OBS, BOOTSTRAP_OBS)}
        if sampler is not None:
            sampler.reset(capacity * num_envs)  # one slot per transition: step * num_envs + env

    def __len__(self) -> int:
        return self.size * self.num_envs

    def add(self, chunk: Batch) -> None:
        """Append ``[T, num_envs, ...]`` tensors (the same keys every time, ``valid`` among them)."""
        if VALID not in chunk:
            raise KeyError("a replay chunk needs the 'valid' mask")
        chunk = flatten_structured(chunk, self.structures)
        length = next(iter(chunk.values())).shape[0]
        if not self.data:
            self._allocate(chunk)
        for start in range(0, length, self.capacity):  # a chunk longer than the ring keeps its newest part
            piece = {key: value[start : start + self.capacity] for key, value in chunk.items()}
            self._write(piece, min(self.capacity, length - start))

    def _allocate(self, chunk: Batch) -> None:
        per_step = sum(value[0].numel() * value.element_size() for value in chunk.values())
        needed, available = per_step * self.capacity, _physical_memory()
        if available and needed > 0.8 * available:
            raise MemoryError(
                f"a replay buffer of {self.capacity * self.num_envs:,} transitions needs {needed / 2**30:.1f} GiB "
                f"({', '.join(f'{key} {tuple(value.shape[2:])} {value.dtype}' for key, value in chunk.items())}), "
                f"more than 80% of this machine's {available / 2**30:.1f} GiB; lower buffer_size"
            )
        for key, value in chunk.items():
            self.data[key] = torch.zeros((self.capacity, *value.shape[1:]), dtype=value.dtype)

    def _write(self, piece: Batch, length: int) -> None:
        rows = (torch.arange(length) + self.position) % self.capacity
        overwritten = rows[rows < self.size]
        self._invalid_count += int((~piece[VALID][:length]).sum()) - int((~self.data[VALID][overwritten]).sum())
        for key, stored in self.data.items():
            if key not in piece:
                raise KeyError(f"replay chunk lacks {key!r}, which earlier chunks had")
            stored[rows] = piece[key].to("cpu")
        if self.sampler is not None:
            slots = (rows.unsqueeze(1) * self.num_envs + torch.arange(self.num_envs)).reshape(-1)
            self.sampler.added(slots.numpy(), piece[VALID][:length].to("cpu").reshape(-1).numpy())
        self.position = (self.position + length) % self.capacity
        self.size = min(self.size + length, self.capacity)

    def _ring_slices(self, length: int) -> list[slice]:
        """The ring rows the next ``length`` vector steps are written to: one slice, two where they wrap."""
        length = min(length, self.capacity)
        stop = self.position + length
        if stop <= self.capacity:
            return [slice(self.position, stop)]
        return [slice(self.position, self.capacity), slice(0, stop - self.capacity)]

    def mark(self, length: int) -> ReplayMark:
        """Remember what adding ``length`` vector steps will change, for :meth:`rewind` (a failed update's
        batch, see :mod:`rl_agents.training.rollback`). Only the stored rows the add overwrites are copied:
        none while the ring is filling, since rows past ``size`` were never written and hold zeros."""
        sampler_mark = None if self.sampler is None else self.sampler.mark()
        if not self.data:
            return ReplayMark(self.position, self.size, self._invalid_count, None, [], sampler_mark)
        saved: list[tuple[slice, Batch]] = []
        fresh: list[slice] = []
        for rows in self._ring_slices(length):
            stored = slice(rows.start, min(rows.stop, self.size))
            if stored.start < stored.stop:
                saved.append((stored, {key: value[stored].clone() for key, value in self.data.items()}))
            if max(rows.start, self.size) < rows.stop:
                fresh.append(slice(max(rows.start, self.size), rows.stop))
        return ReplayMark(self.position, self.size, self._invalid_count, saved, fresh, sampler_mark)

    def rewind(self, mark: ReplayMark) -> None:
        """Put back the rows, position, size and count of invalid transitions of ``mark`` (and the sampler)."""
        self.position, self.size, self._invalid_count = mark.position, mark.size, mark.invalid_count
        if self.sampler is not None:
            self.sampler.rewind(mark.sampler)
        if mark.saved is None:
            self.data = {}
            return
        for rows, saved in mark.saved:
            for key, value in saved.items():
                self.data[key][rows] = value
        for rows in mark.fresh:
            for value in self.data.values():
                value[rows] = 0

    def sample(
        self,
        batch_size: int,
        generator: torch.Generator,
        *,
        n_step: int = 1,
        streams: tuple[RewardStream, ...] = (),
        progress: float = 0.0,
    ) -> Batch:
        """``batch_size`` valid transitions as flat ``[batch_size, ...]`` tensors, drawn uniformly or by the
        sampler (``progress``: the fraction of the run done, for its schedules).

        Rows also hold ``bootstrap_obs``, ``n_steps``, ``sample_weight`` (the sampler's importance
        weights; ones when uniform) and ``replay_index`` (the slot each row came from). With ``n_step``
        > 1 each row looks ahead up to n steps in its env, stopping where the episode ended or the newest data is:
        ``bootstrap_obs``, ``terminated`` and ``truncated`` come from the last step reached, each
        stream's reward is its ``gamma``-discounted sum and ``n_steps`` says how many steps were summed;
        ``next_obs`` stays the one-step next observation (e.g. for curiosity's dynamics models).
        """
        if self.sampler is None:
            flat = self._draw(batch_size, generator)
            weights = torch.ones(batch_size)
        else:
            if self.size == 0:
                raise RuntimeError("the replay buffer holds too few valid transitions to sample (0 stored)")
            slots, drawn_weights = self.sampler.draw(batch_size, generator, progress)
            flat, weights = torch.from_numpy(slots), torch.from_numpy(drawn_weights)
        steps, envs = flat // self.num_envs, flat % self.num_envs
        rows = {key: value.flatten(0, 1).index_select(0, flat) for key, value in self.data.items()}
        rows[SAMPLE_WEIGHT] = weights
        rows[REPLAY_INDEX] = flat
        count = torch.ones(batch_size, dtype=torch.int64)
        for next_key, bootstrap_key in self._bootstrap_keys():
            if next_key in rows:
                rows[bootstrap_key] = rows[next_key]
        if n_step > 1:
            count = self._add_n_step(rows, steps, envs, n_step, streams)
        rows[N_STEPS] = count.float()
        return nest_structured(
            {key: value.to(self.device, non_blocking=True) for key, value in rows.items()}, self.structures
        )

    def _bootstrap_keys(self) -> list[tuple[str, str]]:
        """(stored next-observation key, bootstrap key) pairs: one, or one per observation leaf."""
        if not self.structures:
            return [(NEXT_OBS, BOOTSTRAP_OBS)]
        return list(zip(tree_leaves(self.structures[NEXT_OBS]), tree_leaves(self.structures[BOOTSTRAP_OBS])))

    def feedback(self, slots: torch.Tensor, values: torch.Tensor) -> None:
        """Pass the sampler the loss output it consumes for the rows drawn from ``slots``."""
        if self.sampler is not None:
            self.sampler.feedback(slots.to("cpu").numpy(), values.detach().to("cpu", torch.float64).numpy())

    def _draw(self, batch_size: int, generator: torch.Generator, max_rounds: int = 100) -> torch.Tensor:
        """Flat indices (step * num_envs + env) drawn uniformly over the valid transitions by rejection
        (invalid ones are the rare reset steps)."""
        valid = self.data[VALID][: self.size].reshape(-1) if self.data else torch.zeros(0, dtype=torch.bool)
        if self._invalid_count == 0 and len(valid):  # e.g. same-step autoreset: every row is a transition
            return torch.randint(len(valid), (batch_size,), generator=generator, device=generator.device).cpu()
        chosen: list[torch.Tensor] = []
        needed = batch_size
        for _ in range(max_rounds):
            if needed == 0 or len(valid) == 0:
                break
            draw = torch.randint(len(valid), (needed * 2,), generator=generator, device=generator.device).cpu()
            kept = draw[valid[draw]][:needed]
            chosen.append(kept)
            needed -= len(kept)
        if needed > 0:
            raise RuntimeError(f"the replay buffer holds too few valid transitions to sample ({len(self)} stored)")
        return torch.cat(chosen)

    def _add_n_step(
        self, rows: Batch, steps: torch.Tensor, envs: torch.Tensor, n_step: int, streams: tuple[RewardStream, ...]
    ) -> torch.Tensor:
        newer = (self.position - 1 - steps) % self.capacity  # stored steps after each sampled one
        terminated, truncated = self.data[TERMINATED], self.data[TRUNCATED]

        def done(at: torch.Tensor) -> torch.Tensor:
            return terminated[at, envs] | truncated[at, envs]

        alive = ~done(steps)  # whether the look-ahead may continue past the current step
        last = steps.clone()
        count = torch.ones_like(steps)
        for offset in range(1, n_step):
            reach = alive & (newer >= offset)
            ahead = (steps + offset) % self.capacity
            for stream in streams:
                reward = self.data[stream.key][ahead, envs]
                rows[stream.key] = rows[stream.key] + torch.where(reach, stream.gamma**offset * reward, 0.0)
            last = torch.where(reach, ahead, last)
            count = count + reach.long()
            alive = reach & ~done(ahead)
        for key in (TERMINATED, TRUNCATED):
            rows[key] = self.data[key][last, envs]
        for next_key, bootstrap_key in self._bootstrap_keys():
            if next_key in self.data:
                rows[bootstrap_key] = self.data[next_key][last, envs]
        return count

    # ------------------------------------------------------------------ episodes (a ReplayView for transforms)
    def episode_extent(self, slots: torch.Tensor, window: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """``(behind, ahead)``: stored steps of each slot's episode before and after it (see
        :class:`~rl_agents.core.transforms.ReplayView`). Found by scanning the ring's done flags (and,
        backwards, the reset steps of next-step autoresets; and the episode starts, where ``episode_start`` is
        stored) ``window`` steps at a time, one gather per
        window: episodes of up to ``window`` steps cost one."""
        slots = slots.to("cpu")
        steps, envs = slots // self.num_envs, slots % self.num_envs
        newer = (self.position - 1 - steps) % self.capacity  # stored steps after each slot's
        oldest = self.position if self.size == self.capacity else 0
        older = (steps - oldest) % self.capacity  # stored steps before it
        terminated, truncated, valid = self.data[TERMINATED], self.data[TRUNCATED], self.data[VALID]
        # Where ``episode_start`` is stored, it marks the first step of every episode, also one begun by a
        # reset without a done flag (a new train() call, restarted envs): the step before it ends an episode.
        starts = self.data.get(EPISODE_START)

        def starts_after(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
            if starts is None:
                return torch.zeros(rows.shape, dtype=torch.bool)
            return starts[(rows + 1) % self.capacity, columns]

        def ends_episode(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
            return terminated[rows, columns] | truncated[rows, columns] | starts_after(rows, columns)

        def before_start(rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:  # or an autoreset's reset step
            return ends_episode(rows, columns) | ~valid[rows, columns]

        # (the flags are gathered where the scans look, never computed over the whole ring)
        ahead = self._scan(steps, envs, newer, ends_episode, direction=1, first_offset=0, window=window)
        behind = self._scan(steps, envs, older, before_start, direction=-1, first_offset=1, window=window)
        return behind, ahead

    def _scan(
        self,
        steps: torch.Tensor,
        envs: torch.Tensor,
        limit: torch.Tensor,
        stop: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        direction: int,
        first_offset: int,
        window: int,
    ) -> torch.Tensor:
        """How many steps from each of ``steps`` (in ``direction``) lie inside its episode: ``ahead`` counts up
        to and including the first ``stop`` step (offset 0 on); ``behind`` the steps before the first ``stop``
        step (offset 1 on). Capped by ``limit``, the stored steps in that direction."""
        found = limit.clone()  # no stop within the stored steps: the episode reaches the newest/oldest
        pending = torch.arange(len(steps))
        base = first_offset
        while len(pending):
            offsets = torch.arange(base, base + window)
            rows = (steps[pending, None] + direction * offsets) % self.capacity
            inside = offsets <= limit[pending, None]
            hits = stop(rows, envs[pending, None]) & inside
            hit_any = hits.any(dim=1)
            first = hits.float().argmax(dim=1) + base  # the first stop's offset (where there is one)
            found[pending[hit_any]] = first[hit_any] - (0 if direction == 1 else 1)
            exhausted = ~inside[:, -1]  # the window passed the stored steps
            pending = pending[~hit_any & ~exhausted]
            base += window
        return found

    def stored_at(self, key: str, slots: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The stored ``key`` (a flat name) ``offsets`` steps after the transitions at ``slots`` (same env)."""
        slots = slots.to("cpu")
        steps, envs = slots // self.num_envs, slots % self.num_envs
        return self.data[key][(steps + offsets.to("cpu")) % self.capacity, envs]

    def state_dict(self) -> dict[str, Any]:
        """The ring's geometry and its stored data (the first ``size`` steps), for checkpoints."""
        return {
            "capacity": self.capacity,
            "position": self.position,
            "size": self.size,
            "data": {key: value[: self.size].clone() for key, value in self.data.items()},
            "sampler": None if self.sampler is None else self.sampler.state_dict(),
        }

    def prepare_load(self, state: Any, where: str = "replay") -> Apply:
        """Check a :meth:`state_dict` against this buffer; returns the function that loads it."""
        capacity, position, size = (count(state, key, where) for key in ("capacity", "position", "size"))
        data = entry(state, "data", dict, where)
        if capacity != self.capacity:
            raise StateError(f"{where}: replay buffer held {capacity} steps, this trainer's holds {self.capacity}")
        if not (size <= capacity and position < capacity):
            raise StateError(f"{where}: replay position {position} or size {size} is out of range")
        for key, tensor in data.items():
            if (
                not isinstance(tensor, torch.Tensor)
                or tensor.dim() < 2
                or tensor.shape[0] != size
                or tensor.shape[1] != self.num_envs
            ):
                shape = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
                raise StateError(
                    f"{where}: replay tensor {key!r} has shape {shape}, expected [{size}, {self.num_envs}, ...]"
                )
        if size > 0 and VALID not in data:
            raise StateError(f"{where}: replay buffer lacks its 'valid' mask")
        apply_sampler = self._prepare_sampler_load(state, where)

        def apply() -> None:
            self._restore(data, position=position, size=size)
            apply_sampler()

        return apply

    def _prepare_sampler_load(self, state: dict[str, Any], where: str) -> Apply:
        saved = state.get("sampler")
        if self.sampler is None:
            if saved is not None:
                raise StateError(
                    f"{where}: the checkpoint's replay has a sampler's state (e.g. prioritized replay), "
                    "but this trainer samples uniformly"
                )
            return lambda: None
        if saved is None:
            raise StateError(
                f"{where}: this trainer's replay has a sampler (e.g. prioritized replay), "
                "but the checkpoint has no sampler state"
            )
        return self.sampler.prepare_load(saved, f"{where}.sampler")

    def load_state_dict(self, state: Any) -> None:
        self.prepare_load(state)()

    def _restore(self, tensors: Batch, *, position: int, size: int) -> None:
        self.data = {}
        for key, value in tensors.items():
            stored = torch.zeros((self.capacity, *value.shape[1:]), dtype=value.dtype)
            stored[:size] = value
            self.data[key] = stored
        self.position, self.size = position, size
        self._invalid_count = int((~self.data[VALID][:size]).sum()) if VALID in self.data else 0
