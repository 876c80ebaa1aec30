"""Update schedules: when the Learner trains and on what. Each setting is declared once, here.

An acting agent suggests one schedule (:meth:`Agent.suggested_schedule`); explicit settings (Trainer
keyword arguments, the config's ``trainer:`` section) override it. The config schema and the Trainer
both take the settings' names, types and ranges from these dataclasses: a field's ``metadata`` says
its range, and :func:`check_setting` is the one place that enforces it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


def _at_least(minimum: int) -> Any:
    return {"min": minimum}


# Shared by both schedules: the gradient-norm clip (None: no clipping).
_GRAD_NORM = {"positive_or_none": True}


@dataclass
class OnPolicySchedule:
    """On-policy updates (e.g. PPO, A2C): every ``num_steps`` vector steps the rollout is preprocessed
    and trained on for ``num_epochs`` passes of ``num_minibatches`` minibatches, then discarded.
    ``anneal_lr`` decays every learning rate linearly to 0 over the run's total steps.
    ``sequence_minibatches`` minibatches whole env sequences instead of shuffled rows: each epoch the
    envs are shuffled and split into ``num_minibatches`` groups (so it must not exceed the number of
    envs), and each minibatch holds every valid step of its envs, in time order, plus the whole
    ``[T, B]`` sequences of the keys the agents declared in ``sequence_needs`` (a recurrent policy
    replays its memory over them)."""

    num_steps: int = field(default=128, metadata=_at_least(1))
    num_epochs: int = field(default=4, metadata=_at_least(1))
    num_minibatches: int = field(default=4, metadata=_at_least(1))
    max_grad_norm: float | None = field(default=0.5, metadata=_GRAD_NORM)
    anneal_lr: bool = True
    sequence_minibatches: bool = False


@dataclass
class ReplaySchedule:
    """Off-policy updates from a replay buffer (e.g. DQN, SAC).

    Transitions go into a replay buffer of ``buffer_size`` transitions (over all envs). Until
    ``learning_starts`` env steps the acting agent's ``random_act`` chooses the actions and nothing is
    trained. Then every ``train_frequency`` vector steps the new transitions are preprocessed (e.g. an
    exploration bonus computes their reward) and stored, and ``gradient_steps`` minibatches of
    ``batch_size`` uniformly sampled transitions are trained on. Every ``target_update_interval``
    gradient steps each target network moves toward its online network by ``tau`` (1: a hard copy).
    ``n_step`` > 1 samples n-step returns.
    """

    buffer_size: int = field(default=1_000_000, metadata=_at_least(1))
    batch_size: int = field(default=256, metadata=_at_least(1))
    learning_starts: int = field(default=100, metadata=_at_least(0))
    train_frequency: int = field(default=1, metadata=_at_least(1))
    gradient_steps: int = field(default=1, metadata=_at_least(1))
    target_update_interval: int = field(default=1, metadata=_at_least(1))
    tau: float = field(default=1.0, metadata={"unit_interval": True})
    n_step: int = field(default=1, metadata=_at_least(1))
    max_grad_norm: float | None = field(default=None, metadata=_GRAD_NORM)


Schedule = OnPolicySchedule | ReplaySchedule
SCHEDULE_KINDS: tuple[type, ...] = (OnPolicySchedule, ReplaySchedule)


def schedule_fields() -> dict[str, dataclasses.Field]:
    """Every schedule setting by name (``max_grad_norm`` is in both schedules, with one rule)."""
    return {f.name: f for kind in SCHEDULE_KINDS for f in dataclasses.fields(kind)}


def setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the schedule setting ``name`` ("must be >= 1" ...), or None."""
    rules = schedule_fields()[name].metadata
    if value is None:
        return None if name == "max_grad_norm" else "must be set"
    if "min" in rules and not value >= rules["min"]:
        return f"must be >= {rules['min']}"
    if rules.get("unit_interval") and not 0.0 < value <= 1.0:
        return "must be in (0, 1]"
    if rules.get("positive_or_none") and not (value > 0 and not math.isnan(value)):
        return "must be > 0 (or None: no clipping)"
    return None


def check_setting(name: str, value: Any) -> None:
    """Raise ValueError("<name> must be ..., got <value>") for a value out of the setting's range."""
    problem = setting_problem(name, value)
    if problem is not None:
        raise ValueError(f"{name} {problem}, got {value}")


def check_schedule(schedule: Schedule) -> None:
    for item in dataclasses.fields(schedule):
        check_setting(item.name, getattr(schedule, item.name))


def rollout_steps(schedule: Schedule) -> int:
    """Vector steps between updates: the rollout length, or the replay schedule's train frequency."""
    return schedule.train_frequency if isinstance(schedule, ReplaySchedule) else schedule.num_steps
