"""The Learner: owns the composition and turns batches into parameter updates.

It binds the agents to the environment's spaces, checks that they fit together, resolves the
schedule, and owns the optimizer, the random generator of action sampling and minibatch order, the
replay buffer (off-policy) and the target networks. :meth:`Learner.update` takes one collected batch
``[rollout_steps, num_envs, ...]``: every agent's preprocessing in dependency order, then the summed
loss over minibatches (of the rollout on-policy; sampled from the replay buffer, which the batch joins
first, off-policy). An update is all or nothing: a NaN or inf anywhere in it rolls it back (see
:mod:`rl_agents.training.rollback`) before the error is raised.
"""

from __future__ import annotations

import functools
import operator
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import gymnasium as gym
import torch

from rl_agents.core.agent import (
    NEXT_OBS,
    REPLAY_KEYS,
    TERMINATED,
    TRUNCATED,
    VALID,
    Agent,
    Batch,
    CompositionError,
    ContractError,
    EnvContext,
)
from rl_agents.core.agent_state import record_baseline
from rl_agents.core.composition import Composition, collect_streams, find_acting_agent, resolve
from rl_agents.core.schedules import (
    OnPolicySchedule,
    ReplaySchedule,
    Schedule,
    check_schedule,
    rollout_steps,
    schedule_fields,
)
from rl_agents.core.state import Apply, StateError, count, entry, numbers
from rl_agents.core.tree import map_tree
from rl_agents.envs.goals import RewardFunction, goal_reward_function
from rl_agents.training.contract_checks import ProvidedKeysCheck
from rl_agents.training.errors import NonFiniteError
from rl_agents.training.minibatches import merge_time_and_envs, sequence_minibatch, split_bounds
from rl_agents.training.optimization import (
    SummedLossStep,
    build_optimizer,
    default_learning_rate,
    subnormals_flushed,
)
from rl_agents.training.optimizer_state import optimizer_state_dict, prepare_optimizer_load
from rl_agents.training.replay import ReplayBuffer
from rl_agents.training.rollback import UpdateSnapshot
from rl_agents.training.sampler_feedback import (
    SamplerChoice,
    choose_sampler,
    feed_sampler,
    refuse_sampler_on_policy,
    supplied_samplers,
    supplied_transforms,
)

GENERATOR_DTYPE = torch.uint8


@dataclass(frozen=True)
class EnvSpaces:
    """What the Learner needs of the environments: one env's spaces and how many envs feed a batch."""

    observation_space: gym.Space
    action_space: gym.Space
    num_envs: int
    compute_reward: RewardFunction | None = field(default=None, compare=False)  # goal-conditioned envs'

    @classmethod
    def of(cls, envs: gym.vector.VectorEnv, num_envs: int | None = None) -> EnvSpaces:
        return cls(
            envs.single_observation_space,
            envs.single_action_space,
            envs.num_envs if num_envs is None else num_envs,
            goal_reward_function(envs),
        )


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without CUDA is refused."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False")
    return resolved


def _metrics_of(agent_name: str, logged: dict[str, float]) -> dict[str, float]:
    prefix = agent_name + "/"
    return {key[len(prefix) :]: value for key, value in logged.items() if key.startswith(prefix)}


def _mean_of(sums: dict[str, float], count_: int) -> dict[str, float]:
    return {key: value / max(count_, 1) for key, value in sums.items()}


class Learner:
    """Args:
    spaces: the environments' spaces and number of envs.
    agents: exactly one acting agent plus any number of others.
    seed: seeds network initialization (per agent, from its name) and the generator.
    device: where the networks and batches live.
    skip_non_finite_updates: skip a minibatch step whose loss or gradient is not finite (with a
        warning) instead of raising NonFiniteLossError.
    **schedule: settings of the acting agent's schedule; ``None`` values take its suggestion.
    """

    def __init__(
        self,
        spaces: EnvSpaces,
        agents: list[Agent],
        *,
        seed: int,
        device: torch.device,
        skip_non_finite_updates: bool = False,
        **schedule: Any,
    ):
        self.spaces = spaces
        self.num_envs = spaces.num_envs
        self.agents = list(agents)
        self.seed = seed
        self.device = device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.acting = find_acting_agent(self.agents)
        self.streams = collect_streams(self.agents)
        self._bind_agents()
        self.schedule: Schedule = self._resolve_schedule(schedule)
        self.off_policy = isinstance(self.schedule, ReplaySchedule)
        samplers = supplied_samplers(self.agents)
        refuse_sampler_on_policy(samplers, self.acting, self.off_policy)
        self._transforms = supplied_transforms(self.agents, self.acting, self.schedule)
        extra_keys = REPLAY_KEYS if self.off_policy else frozenset()
        self.composition: Composition = resolve(self.agents, self.acting, self.streams, extra_keys=extra_keys)
        specs = self.composition.specs
        self._check_provided = ProvidedKeysCheck(
            {name: spec.provides for name, spec in specs.items()}, frozenset(s.key for s in self.streams), device
        )
        self.optimizer = build_optimizer(self.agents, default_learning_rate(self.acting))
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        sampler = choose_sampler(samplers, self.composition) if self.off_policy else None
        self._feedback_provider = "" if sampler is None else sampler.provider  # whose loss feeds the sampler
        self.replay = self._build_replay(sampler)
        self._target_pairs = [pair for agent in self.agents for pair in agent.target_networks()]
        self._target_tensors: list[tuple[list[torch.Tensor], ...]] | None = None
        self.step = SummedLossStep(
            self.composition.order, self.optimizer, self.schedule, device, skip_non_finite_updates
        )
        self.num_updates = 0
        self.total_gradient_steps = 0  # replay minibatch steps over the run (target updates count them)
        targets = [target for _, target in self._target_pairs]
        self._snapshot = UpdateSnapshot(self.agents, self.optimizer, self.generator, self.replay, targets)

    # ------------------------------------------------------------------ construction
    def _bind_agents(self) -> None:
        for agent in sorted(self.agents, key=lambda a: a.name):
            ctx = EnvContext(
                observation_space=self.spaces.observation_space,
                action_space=self.spaces.action_space,
                num_envs=self.num_envs,
                device=self.device,
                streams=self.streams,
                generator=self.generator,
                compute_reward=self.spaces.compute_reward,
            )
            bind_agent(agent, ctx, self.seed)
            agent.to(self.device)
            record_baseline(agent)  # what saving compares the agent's plain attributes with

    def _resolve_schedule(self, overrides: dict[str, Any]) -> Schedule:
        schedule = self.acting.suggested_schedule() or OnPolicySchedule()
        names = {item.name for item in fields(schedule)}
        every_name = schedule_fields()
        for key, value in overrides.items():
            if key not in every_name:
                raise TypeError(f"Trainer got an unexpected keyword argument {key!r}")
            if value is None:
                continue
            if key not in names:
                how = (
                    "off-policy from a replay buffer"
                    if isinstance(schedule, ReplaySchedule)
                    else "on-policy from rollouts"
                )
                raise CompositionError(
                    f"{key!r} does not apply: agent {self.acting.name!r} trains {how}, "
                    f"whose settings are {', '.join(sorted(names))}"
                )
            setattr(schedule, key, value)
        check_schedule(schedule)
        self._fit_sequence_minibatches(schedule, explicit=overrides.get("num_minibatches") is not None)
        return schedule

    def _fit_sequence_minibatches(self, schedule: Schedule, *, explicit: bool) -> None:
        """Sequence minibatches split the envs: more minibatches than envs is refused when set
        explicitly, and a suggested number is lowered to the number of envs."""
        if not isinstance(schedule, OnPolicySchedule) or not schedule.sequence_minibatches:
            return
        if schedule.num_minibatches <= self.num_envs:
            return
        if explicit:
            raise CompositionError(
                f"num_minibatches={schedule.num_minibatches} with sequence_minibatches splits the envs into "
                f"groups, but there are only {self.num_envs} envs: use num_minibatches <= {self.num_envs}"
            )
        schedule.num_minibatches = self.num_envs

    def _build_replay(self, sampler: SamplerChoice | None) -> ReplayBuffer | None:
        if not isinstance(self.schedule, ReplaySchedule):
            return None
        capacity = max(self.schedule.buffer_size // self.num_envs, 1)
        return ReplayBuffer(
            capacity,
            self.num_envs,
            self.device,
            None if sampler is None else sampler.sampler,
            observation_space=self.spaces.observation_space,
        )

    @property
    def rollout_steps(self) -> int:
        """Vector steps per batch: the rollout length, or the replay schedule's train frequency."""
        return rollout_steps(self.schedule)

    @property
    def random_steps(self) -> int:
        """Env steps at the start during which the acting agent acts at random (replay schedules)."""
        return self.schedule.learning_starts if isinstance(self.schedule, ReplaySchedule) else 0

    @property
    def skipped_updates(self) -> int:
        return self.step.skipped

    def counters(self) -> dict[str, float]:
        """Running totals to log: skipped non-finite updates, when skipping is on."""
        return {"trainer/skipped_updates": float(self.step.skipped)} if self.step.skip_non_finite else {}

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch, *, global_step: int, total_steps: int | None) -> dict[str, float]:
        """Preprocess ``batch`` in dependency order, then optimize every agent's summed loss; returns
        this update's metrics. ``global_step`` (env steps so far) and ``total_steps`` drive
        ``learning_starts`` and learning-rate annealing.

        All or nothing: when a NonFiniteError (a NaN or inf loss or gradient) stops the update, at any
        minibatch, everything it changed (agents, optimizer, generator, replay buffer, counters) is put
        back as it was before the error is raised, so the learner stays at an update boundary. The same
        holds when an agent's ``preprocess`` breaks its declared ``provides`` (see
        :mod:`rl_agents.training.contract_checks`): a ContractError, or NonFiniteProvidedError for a NaN/inf."""
        self._snapshot.take(batch[VALID].shape[0] if self.replay is not None else 0)
        counters = self.num_updates, self.total_gradient_steps, self.step.skipped
        try:  # (inline, not a helper: warnings' stack levels count the frames down to the optimizer step)
            metrics: dict[str, float] = {}
            where = f"update {self.num_updates + 1}, step {global_step}"
            for agent in self.composition.order:
                for key, value in agent.preprocess(batch).items():
                    metrics[f"{agent.name}/{key}"] = float(value)
                self._check_provided(agent, batch, where)  # the agent that broke its contract, not a later reader
            if self.replay is None:
                self._set_learning_rate(total_steps)
                with subnormals_flushed():
                    metrics.update(self._optimize_rollout(batch, where))
            else:
                self.replay.add({key: value for key, value in batch.items() if key in self._replay_keys})
                with subnormals_flushed():
                    metrics.update(self._optimize_replay(global_step, total_steps, where))
        except (NonFiniteError, ContractError):  # a broken agent contract leaves the learner as it was too
            self._snapshot.restore()
            self.num_updates, self.total_gradient_steps, self.step.skipped = counters
            raise
        for agent in self.agents:
            agent.after_update()
        self.num_updates += 1
        return metrics

    @property
    def _replay_keys(self) -> frozenset[str]:
        return (
            self.composition.used_keys
            | {NEXT_OBS, VALID, TERMINATED, TRUNCATED}
            | {stream.key for stream in self.streams}
        )

    def _set_learning_rate(self, total_steps: int | None) -> None:
        schedule = self.schedule
        if not isinstance(schedule, OnPolicySchedule) or not schedule.anneal_lr or not total_steps:
            return
        updates_total = max(total_steps // (schedule.num_steps * self.num_envs), 1)
        fraction = max(1.0 - self.num_updates / updates_total, 0.0)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = fraction * base

    @property
    def sequence_keys(self) -> frozenset[str]:
        """Keys some agent reads as whole env sequences (in sequence minibatches)."""
        return frozenset().union(*(spec.sequence_needs for spec in self.composition.specs.values()))

    def _optimize_rollout(self, batch: Batch, where: str) -> dict[str, float]:
        """Epochs x minibatches (of shuffled valid rows, or of whole env sequences); returns the mean of
        every logged value."""
        schedule = self.schedule
        assert isinstance(schedule, OnPolicySchedule)
        used = self.composition.used_keys | {VALID}
        if schedule.sequence_minibatches:
            columns = {key: value for key, value in batch.items() if key in used}
            epoch = functools.partial(self._sequence_epoch, columns, self.sequence_keys)
        else:
            flat = {k: map_tree(merge_time_and_envs, v) for k, v in batch.items() if k in used}
            epoch = functools.partial(self._row_epoch, flat, flat[VALID].nonzero().squeeze(1))
        sums: dict[str, float] = {}
        steps = 0
        for epoch_index in range(schedule.num_epochs):
            last: dict[str, float] = {}
            minibatches = list(epoch())
            for index, minibatch in enumerate(minibatches):
                final = epoch_index == schedule.num_epochs - 1 and index == len(minibatches) - 1
                step_values = self.step(minibatch, where, None if final else self._snapshot.protect)
                if step_values is None:  # skipped: non-finite (skip_non_finite_updates)
                    continue
                last = step_values
                for key, value in last.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            if any(agent.stop_epochs(_metrics_of(agent.name, last)) for agent in self.agents):
                break
        return _mean_of(sums, steps)

    def _row_epoch(self, flat: Batch, valid_rows: torch.Tensor) -> Iterator[Batch]:
        """One epoch's minibatches of shuffled valid rows."""
        assert isinstance(self.schedule, OnPolicySchedule)
        order = valid_rows[torch.randperm(len(valid_rows), generator=self.generator, device=self.device)]
        # One gather per key and epoch; the minibatches are then contiguous slices (views).
        shuffled = {key: map_tree(lambda leaf: leaf[order], value) for key, value in flat.items()}
        for start, stop in split_bounds(len(valid_rows), self.schedule.num_minibatches):
            rows = operator.itemgetter(slice(start, stop))
            yield {key: map_tree(rows, value) for key, value in shuffled.items()}

    def _sequence_epoch(self, columns: Batch, sequence_keys: frozenset[str]) -> Iterator[Batch]:
        """One epoch's minibatches of whole env sequences: the envs shuffled and split into
        ``num_minibatches`` groups (see :func:`sequence_minibatch`)."""
        assert isinstance(self.schedule, OnPolicySchedule)
        num_envs = columns[VALID].shape[1]
        env_order = torch.randperm(num_envs, generator=self.generator, device=self.device)
        for start, stop in split_bounds(num_envs, self.schedule.num_minibatches):
            yield sequence_minibatch(columns, env_order[start:stop], sequence_keys)

    def _optimize_replay(self, global_step: int, total_steps: int | None, where: str) -> dict[str, float]:
        """``gradient_steps`` minibatches sampled from the replay buffer, with target updates; a sampler
        gets its feedback after each optimizer step."""
        schedule = self.schedule
        assert isinstance(schedule, ReplaySchedule) and self.replay is not None
        if global_step <= schedule.learning_starts:  # as SB3: train once more than learning_starts were seen
            return {}
        sums: dict[str, float] = {}
        steps = 0
        progress = min(global_step / total_steps, 1.0) if total_steps else 0.0
        for index in range(schedule.gradient_steps):
            minibatch = self.replay.sample(
                schedule.batch_size, self.generator, n_step=schedule.n_step, streams=self.streams, progress=progress
            )
            for name, transform in self._transforms:  # e.g. hindsight relabeling
                for key, value in transform.apply(minibatch, self.replay, self.generator).items():
                    sums[f"{name}/{key}"] = sums.get(f"{name}/{key}", 0.0) + float(value)
            final = index == schedule.gradient_steps - 1
            step_values = self.step(minibatch, where, None if final else self._snapshot.protect)
            if step_values is not None:  # None: skipped as non-finite (skip_non_finite_updates)
                if self.replay.sampler is not None:
                    feed_sampler(self.replay, minibatch, self._feedback_provider, where)
                for key, value in step_values.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
            self.total_gradient_steps += 1
            if self.total_gradient_steps % schedule.target_update_interval == 0:
                self.update_targets(schedule.tau)
        return {key: value / steps for key, value in sums.items()}

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """Move every target network toward its online network by ``tau`` (1: copy); buffers are copied."""
        if self._target_tensors is None:  # load_state_dict copies in place, so the tensors stay the same
            self._target_tensors = [
                ([*online.parameters()], [*target.parameters()], [*online.buffers()], [*target.buffers()])
                for online, target in self._target_pairs
            ]
        for online_params, target_params, online_buffers, target_buffers in self._target_tensors:
            if tau == 1.0:
                torch._foreach_copy_(target_params, online_params)
            else:
                torch._foreach_lerp_(target_params, online_params, tau)
            if online_buffers:
                torch._foreach_copy_(target_buffers, online_buffers)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The optimizer by parameter name, the learning rates annealing starts from, the generator,
        the counters and the replay buffer. The agents' own state is theirs (``agent.state_dict()``)."""
        return {
            "optimizer": optimizer_state_dict(self.agents, self.optimizer),
            "base_lrs": [float(x) for x in self.base_lrs],
            "generator": self.generator.get_state(),
            "generator_device": self.device.type,
            "num_updates": self.num_updates,
            "total_gradient_steps": self.total_gradient_steps,
            "replay": None if self.replay is None else self.replay.state_dict(),
        }

    def prepare_load(self, state: Any, where: str = "learner") -> tuple[Apply, str | None]:
        """Check a :meth:`state_dict`; returns the function that applies it and a warning, if any (a
        generator saved on another device type cannot be restored: sampling then differs)."""
        apply_optimizer = prepare_optimizer_load(
            self.agents, self.optimizer, entry(state, "optimizer", dict, where), f"{where}.optimizer"
        )
        groups = len(self.optimizer.param_groups)
        base_lrs = numbers(state, "base_lrs", (int, float), groups, where, f"one number per param group ({groups})")
        num_updates = count(state, "num_updates", where)
        gradient_steps = count(state, "total_gradient_steps", where)
        generator_state, warning = self._check_generator(state, where)
        apply_replay = self._prepare_replay_load(entry(state, "replay", (dict, type(None)), where), f"{where}.replay")

        def apply() -> None:
            apply_optimizer()
            if generator_state is not None:
                self.generator.set_state(generator_state)
            self.base_lrs = [float(x) for x in base_lrs]
            self.num_updates = num_updates
            self.total_gradient_steps = gradient_steps
            apply_replay()

        return apply, warning

    def _check_generator(self, state: Any, where: str) -> tuple[torch.Tensor | None, str | None]:
        saved = entry(state, "generator", torch.Tensor, where)
        device_type = entry(state, "generator_device", str, where)
        if device_type != self.device.type:
            return None, (
                f"the random generator was saved on {device_type!r} and cannot be restored on {self.device.type!r}; "
                "action sampling and minibatch order will differ from the original run"
            )
        if saved.dtype != GENERATOR_DTYPE or saved.dim() != 1:
            raise StateError(f"{where}: generator must be a 1-d uint8 tensor, got {saved.dtype} {list(saved.shape)}")
        try:
            torch.Generator(device=self.device).set_state(saved)
        except Exception as error:
            raise StateError(
                f"{where}: generator is not a valid generator state ({' '.join(str(error).split())})"
            ) from None
        return saved, None

    def _prepare_replay_load(self, saved: dict[str, Any] | None, where: str) -> Apply:
        if self.replay is None:
            if saved is not None:
                raise StateError(f"{where}: the checkpoint has a replay buffer, but this trainer trains on-policy")
            return lambda: None
        if saved is None:
            raise StateError(f"{where}: this trainer trains from a replay buffer, but the checkpoint has none")
        return self.replay.prepare_load(saved, where)


def bind_agent(agent: Agent, ctx: EnvContext, seed: int) -> None:
    """``agent.bind(ctx)`` with torch's global RNG seeded from ``seed`` and the agent's name, then put
    back: an agent's initialization depends on the seed and its own name only, never on the other
    agents or the list order, and leaves the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(agent.name.encode()))
        agent.bind(ctx)
