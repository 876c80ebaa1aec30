"""Prioritized experience replay (Schaul et al. 2016, "Prioritized Experience Replay"), proportional
variant, as a part: ``--agents dqn+per``, ``sac+per``, ``agents=[DQN(), PER()]``.

PER never acts and has no networks. It supplies the replay buffer's sampler
(:meth:`~rl_agents.core.agent.Agent.replay_sampler`): transition ``i`` is drawn with probability
``P(i) = p_i / sum_k p_k``, where ``p_i = (|priority_i| + epsilon) ** alpha`` and ``priority_i`` is what
the learner's loss last output for it (``priority``, e.g. DQN's |TD error|; a declared loss output). A
new transition gets the largest ``p`` given so far, so that it is seen at least once. The bias this
sampling adds is corrected by importance-sampling weights ``w_i = (N P(i)) ** -beta``, divided by the
largest weight in the minibatch (as Dopamine's Rainbow does; N cancels), which reach the learner's
loss as the declared key ``sample_weight``; ``beta`` anneals linearly from ``beta`` to ``final_beta``
over the first ``beta_fraction`` of the run.

Draws are stratified: the total priority is cut into ``batch_size`` equal segments and one transition is
drawn in each, as in the paper. The sums live in a vectorized sum tree (:mod:`rl_agents.core.sum_tree`).
Defaults are the paper's for the proportional variant (alpha 0.6, beta 0.4 annealed to 1); Rainbow
(Hessel et al. 2018) uses alpha 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rl_agents.core.agent import PRIORITY, Agent, DataSpec, check_option
from rl_agents.core.sampling import ReplaySampler
from rl_agents.core.state import StateError, entry
from rl_agents.core.sum_tree import SumTree


class PrioritizedSampler(ReplaySampler):
    """The proportional prioritized sampler (see the module docstring)."""

    feedback_key = PRIORITY

    def __init__(self, alpha: float, beta: float, final_beta: float, beta_fraction: float, epsilon: float):
        self.alpha, self.beta, self.final_beta = alpha, beta, final_beta
        self.beta_fraction, self.epsilon = beta_fraction, epsilon
        self.tree = SumTree(1)
        self.max_priority = 1.0  # the largest p given so far: what new transitions get
        self._journal: list[tuple[np.ndarray, np.ndarray]] = []  # (slots, their previous p) since mark()

    def reset(self, slots: int) -> None:
        self.tree = SumTree(slots)
        self.max_priority = 1.0
        self._journal = []

    def _write(self, slots: np.ndarray, priorities: np.ndarray) -> None:
        self._journal.append((slots.copy(), self.tree.get(slots).copy()))
        self.tree.set(slots, priorities)

    def added(self, slots: np.ndarray, valid: np.ndarray) -> None:
        self._write(slots, np.where(valid, self.max_priority, 0.0))

    def beta_at(self, progress: float) -> float:
        fraction = min(progress / self.beta_fraction, 1.0) if self.beta_fraction > 0 else 1.0
        return self.beta + fraction * (self.final_beta - self.beta)

    def draw(self, batch_size: int, generator: torch.Generator, progress: float) -> tuple[np.ndarray, np.ndarray]:
        total = self.tree.total
        if not total > 0:
            raise RuntimeError("the replay buffer holds no transition with a positive priority to sample")
        uniform = torch.rand(batch_size, generator=generator, device=generator.device, dtype=torch.float64)
        targets = (np.arange(batch_size) + uniform.cpu().numpy()) * (total / batch_size)
        slots = self.tree.find(np.minimum(targets, np.nextafter(total, 0.0)))
        probabilities = self.tree.get(slots) / total
        # (N P_i)^-beta / max_j (N P_j)^-beta: the largest weight is the least probable row's.
        weights = (probabilities / probabilities.min()) ** -self.beta_at(progress)
        return slots, weights.astype(np.float32)

    def feedback(self, slots: np.ndarray, values: np.ndarray) -> None:
        priorities = (np.abs(values) + self.epsilon) ** self.alpha
        self._write(slots, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max(initial=0.0)))

    def mark(self) -> float:
        self._journal = []
        return self.max_priority

    def rewind(self, mark: float) -> None:
        for slots, previous in reversed(self._journal):
            self.tree.set(slots, previous)
        self._journal = []
        self.max_priority = mark

    def state_dict(self) -> dict[str, Any]:
        return {"priorities": torch.from_numpy(self.tree.leaves.copy()), "max_priority": self.max_priority}

    def prepare_load(self, state: Any, where: str) -> Callable[[], None]:
        priorities = entry(state, "priorities", torch.Tensor, where)
        max_priority = entry(state, "max_priority", (int, float), where)
        if priorities.dtype != torch.float64 or tuple(priorities.shape) != (self.tree.size,):
            raise StateError(
                f"{where}: priorities are {priorities.dtype} {list(priorities.shape)}, "
                f"expected float64 [{self.tree.size}] (one per replay slot)"
            )
        if not bool(torch.isfinite(priorities).all()) or bool((priorities < 0).any()):
            raise StateError(f"{where}: priorities must be finite and >= 0")
        if not (math.isfinite(max_priority) and max_priority > 0):
            raise StateError(f"{where}: max_priority must be a finite number > 0, got {max_priority}")

        def apply() -> None:
            self.tree.leaves[:] = priorities.numpy()
            self.tree.rebuild()
            self.max_priority = float(max_priority)
            self._journal = []

        return apply


class PER(Agent):
    """Prioritized experience replay, a part for any replay learner whose loss outputs ``priority`` and
    reads ``sample_weight`` (DQN, SAC).

    Args:
        alpha: how much the priorities count (0: uniform sampling).
        beta: importance-sampling correction at the start (1: full correction).
        final_beta: the correction at the end of the annealing.
        beta_fraction: fraction of the run's total steps over which beta anneals linearly.
        epsilon: added to |priority| so that no transition's probability becomes 0.
    """

    default_name = "per"

    def __init__(
        self,
        *,
        alpha: float = 0.6,
        beta: float = 0.4,
        final_beta: float = 1.0,
        beta_fraction: float = 1.0,
        epsilon: float = 1e-6,
        name: str | None = None,
    ):
        super().__init__(name=name)
        check_option(self.name, "alpha", alpha, 0.0)
        check_option(self.name, "beta", beta, 0.0, 1.0)
        check_option(self.name, "final_beta", final_beta, 0.0, 1.0)
        check_option(self.name, "beta_fraction", beta_fraction, 0.0, 1.0)
        check_option(self.name, "epsilon", epsilon, 0.0)
        if epsilon == 0.0:
            raise ValueError(
                f"agent {self.name!r}: epsilon must be > 0, or a transition whose priority is 0 is never replayed"
            )
        self.alpha, self.beta, self.final_beta = alpha, beta, final_beta
        self.beta_fraction, self.epsilon = beta_fraction, epsilon

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({PRIORITY}))

    def replay_sampler(self) -> PrioritizedSampler:
        return PrioritizedSampler(self.alpha, self.beta, self.final_beta, self.beta_fraction, self.epsilon)

    def loss_terms(self) -> dict[str, str]:
        return {}
