"""Minibatch transforms: a part that rewrites sampled replay rows before the losses see them.

Hindsight relabeling is the example: it replaces some rows' goals with goals achieved later in the same
episode and recomputes their rewards. A part supplies a :class:`ReplayTransform`
(:meth:`Agent.replay_transform <rl_agents.core.agent.Agent.replay_transform>`); after each replay draw
the Learner calls :meth:`ReplayTransform.apply` on the minibatch, in the order the parts were given,
with a read-only :class:`ReplayView` of the buffer (to look along each row's episode) and the Learner's
generator (so relabeling is seeded and resumes exactly). A transform keeps no state of its own: what it
needs is in the replay buffer, which is checkpointed and rolled back already.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

import torch

# A minibatch (rl_agents.core.agent.Batch, whose module imports this one): keys to tensors or observation trees.
Batch = dict[str, Any]


class ReplayView(Protocol):
    """What a transform may read of the replay buffer (it must not write to it)."""

    def episode_extent(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For the transitions at ``slots`` (``replay_index``): how many stored steps of the same env
        and episode lie before each (``behind``, back to the episode's first step still stored) and
        after it (``ahead``, up to the step where the episode ended, or the newest stored step while
        it runs). int64 ``[B]`` each, on the CPU."""
        ...

    def stored_at(self, key: str, slots: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The stored ``key`` (a flat name: ``next_obs.achieved_goal`` for a Dict observation's leaf) of the
        transitions ``offsets`` steps after those at ``slots`` in the same env (negative: before), on the
        CPU. Offsets must stay within :meth:`episode_extent`."""
        ...


class ReplayTransform(ABC):
    """Rewrites replay minibatches; see the module docstring."""

    reads: frozenset[str]  # minibatch keys it reads
    rewrites: frozenset[str]  # minibatch keys it replaces (values or observation leaves)
    # It rewrites one-step transitions (e.g. rewards recomputed for one step), so n-step returns are refused.
    single_step: bool = True

    @abstractmethod
    def apply(self, minibatch: Batch, replay: ReplayView, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Rewrite ``minibatch`` in place (assigning new tensors: rows may share storage with other keys);
        returns metrics (0-d tensors or floats), e.g. the fraction of rows relabeled."""
