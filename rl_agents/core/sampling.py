"""Replay samplers: what decides which stored transitions a replay minibatch holds.

The replay buffer draws uniformly unless a part of the composition supplies a :class:`ReplaySampler`
(:meth:`Agent.replay_sampler <rl_agents.core.agent.Agent.replay_sampler>`), e.g. prioritized replay. A
sampler sees every transition the buffer stores (by slot: ``step * num_envs + env`` in the ring), draws
the slots of each minibatch with their importance-sampling weights (``sample_weight``), and is fed, after
each optimizer step, the per-row values it consumes (:attr:`ReplaySampler.feedback_key`), which a learner's
loss outputs (``DataSpec.loss_outputs``).

Its state belongs to the replay buffer's: saved in checkpoints with it, and rolled back with it when an
update fails (:meth:`mark` before the update, :meth:`rewind` after the failure).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class ReplaySampler(ABC):
    """Draws replay minibatches; see the module docstring."""

    feedback_key: str  # the loss output it consumes after each optimizer step (e.g. "priority")

    @abstractmethod
    def reset(self, slots: int) -> None:
        """The buffer holds ``slots`` transitions (its capacity times the number of envs), none stored yet."""

    @abstractmethod
    def added(self, slots: np.ndarray, valid: np.ndarray) -> None:
        """Transitions were written to ``slots`` (overwriting what they held); ``valid`` False marks the
        reset steps of next-step autoresets, which must never be drawn."""

    @abstractmethod
    def draw(self, batch_size: int, generator: torch.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        """The slots of one minibatch and their importance-sampling weights (float32), using ``generator``
        for every random number; ``progress``: the fraction of the run done (0 when its length is unknown)."""

    @abstractmethod
    def feedback(self, slots: np.ndarray, values: np.ndarray) -> None:
        """The loss output :attr:`feedback_key` of the rows drawn from ``slots``, after the optimizer step."""

    @abstractmethod
    def mark(self) -> Any:
        """Start recording what changes, for :meth:`rewind`; returns what rewind needs."""

    @abstractmethod
    def rewind(self, mark: Any) -> None:
        """Undo every change since :meth:`mark` returned ``mark``."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Tensors and JSON values (for checkpoints)."""

    @abstractmethod
    def prepare_load(self, state: Any, where: str) -> Callable[[], None]:
        """Check a :meth:`state_dict` (raising StateError naming ``where``); returns what loads it."""
