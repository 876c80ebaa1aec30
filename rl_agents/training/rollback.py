"""Rolling a failed update back, so that a NaN or inf leaves the trainer where the update found it.

Why: one :meth:`Learner.update <rl_agents.training.learner.Learner.update>` is many optimizer steps
(epochs x minibatches on-policy; ``gradient_steps`` replay minibatches with target-network updates
off-policy), after the agents' preprocessing moved their statistics (e.g. normalizers) and, off-policy,
the batch joined the replay buffer. A non-finite loss or gradient is found only at the step it occurs
in, when the steps before it in the same update are applied already. Training stops there
(:class:`~rl_agents.training.errors.NonFiniteLossError`), and the trainer promises that nothing of the
failed update is applied: the ``last_good`` checkpoint that ``train(..., save_on_error=...)`` writes
must sit at an update boundary, so that a run resumed from it is the run that goes on from there.

So the Learner takes an :class:`UpdateSnapshot` before every update and restores it when a
:class:`~rl_agents.training.errors.NonFiniteError` stops one: every agent's state-dict tensors
(parameters, target networks, persistent buffers such as normalizer statistics) and extra state, the
optimizer's state (none before its first step) and param-group settings (the learning rate), the
generator's state, and of the replay buffer what the update's add changes (:meth:`ReplayBuffer.mark`).
The Learner restores its own counters.

Cost: updates rarely fail but every update takes a snapshot, so it is cheap (measured on the CPU: about
2% of a one-gradient-step DQN update on CartPole, under 0.6% for PPO, SAC and 128-step DQN updates).

* Tensors are copied with ``torch._foreach_copy_`` into copies allocated once. Each agent tensor is
  found through its slot (the ``_parameters`` or ``_buffers`` dict of the module holding it, and its
  name), located once: a tensor that is replaced (``self.stat = new``, ``.to()``) is seen; one
  registered after the first update is not, which checkpoints of the agent could not load either.
* What only optimizer steps and target updates change (the trained parameters, the target networks,
  the optimizer's state: most of the bytes) is copied by :meth:`UpdateSnapshot.protect`, which the
  Learner calls right before an optimizer step that a later step of the same update may still fail
  after: once per update, and never in updates of one optimizer step (a failure there comes before
  anything of that kind changed). So trained parameters and target networks must change only there,
  not in ``preprocess``.
* Of the replay buffer only the stored rows the add overwrites are copied (none while it fills).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rl_agents.core.agent import Agent
from rl_agents.training.replay import ReplayBuffer, ReplayMark

Slot = tuple[dict[str, Any], str]  # a module's _parameters or _buffers dict, and a name in it
OptimizerEntry = tuple[torch.Tensor, dict[str, Any] | None]  # a parameter and its optimizer state (None: none)


def state_slots(modules: Sequence[nn.Module]) -> tuple[list[Slot], list[nn.Module]]:
    """Where each tensor of the modules' ``state_dict()`` sits, and the submodules with extra state."""
    slots: list[Slot] = []
    with_extra_state: list[nn.Module] = []
    for root in modules:
        for module in root.modules():
            slots += [(module._parameters, name) for name, value in module._parameters.items() if value is not None]
            slots += [
                (module._buffers, name)
                for name, value in module._buffers.items()
                if value is not None and name not in module._non_persistent_buffers_set
            ]
            if type(module).get_extra_state is not nn.Module.get_extra_state:
                with_extra_state.append(module)
    return slots, with_extra_state


def optimizer_entries(optimizer: torch.optim.Optimizer) -> tuple[list[OptimizerEntry], list[torch.Tensor]]:
    """Each parameter's optimizer state (a shallow copy: the same tensors; other values deep-copied),
    and those tensors."""
    entries: list[OptimizerEntry] = []
    tensors: list[torch.Tensor] = []
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param)  # .get: the state is a defaultdict
            if not state:
                entries.append((param, None))
                continue
            kept = {
                key: value if isinstance(value, torch.Tensor) else copy.deepcopy(value) for key, value in state.items()
            }
            entries.append((param, kept))
            tensors += [value for value in kept.values() if isinstance(value, torch.Tensor)]
    return entries, tensors


class TensorCopies:
    """Copies of a list of tensors, refilled in place while the tensors stay the same ones."""

    def __init__(self) -> None:
        self.sources: list[torch.Tensor] = []
        self.copies: list[torch.Tensor] = []

    def fill(self, sources: list[torch.Tensor]) -> None:
        if len(self.sources) != len(sources) or not all(map(operator.is_, self.sources, sources)):
            self.copies = [torch.empty_like(source, requires_grad=False) for source in sources]
        self.sources = sources
        if sources:
            with torch.no_grad():
                torch._foreach_copy_(self.copies, sources)

    def put_back(self, slots: list[Slot]) -> None:
        """The sources back into ``slots`` (the first of them, in order) with their copied values."""
        for (container, name), source in zip(slots, self.sources):
            container[name] = source  # a tensor the update replaced is put back
        if self.sources:
            with torch.no_grad():
                torch._foreach_copy_(self.sources, self.copies)


class UpdateSnapshot:
    """The state one update changes: :meth:`take` before the update, :meth:`protect` before an
    optimizer step that a later one may fail after, :meth:`restore` after a failure."""

    def __init__(
        self,
        agents: Sequence[Agent],
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        replay: ReplayBuffer | None,
        target_networks: Sequence[nn.Module] = (),
    ):
        self.agents = list(agents)
        self.optimizer = optimizer
        self.generator = generator
        self.replay = replay
        self.target_networks = list(target_networks)
        self._slots: tuple[list[Slot], list[Slot]] | None = None  # (taken at once, protected), located once
        self._extra_state_modules: list[nn.Module] = []
        self._eager, self._protected = TensorCopies(), TensorCopies()
        self._is_protected = False  # in this update
        self._extra_states: list[Any] = []
        self._optimizer_entries: list[OptimizerEntry] = []
        self._group_settings: list[dict[str, Any]] = []
        self._generator_state: torch.Tensor | None = None
        self._replay_mark: ReplayMark | None = None

    def _locate(self) -> tuple[list[Slot], list[Slot]]:
        slots, self._extra_state_modules = state_slots(self.agents)
        stepped = {id(param) for group in self.optimizer.param_groups for param in group["params"]}
        changed_by_steps = stepped | {id(container[name]) for container, name in state_slots(self.target_networks)[0]}
        late = [slot for slot in slots if id(slot[0][slot[1]]) in changed_by_steps]
        return [slot for slot in slots if id(slot[0][slot[1]]) not in changed_by_steps], late

    def take(self, replay_steps: int = 0) -> None:
        """Copy the state; ``replay_steps``: the vector steps the update adds to the replay buffer."""
        if self._slots is None:
            self._slots = self._locate()
        self._eager.fill([container[name] for container, name in self._slots[0]])
        self._is_protected = False
        self._extra_states = [copy.deepcopy(module.get_extra_state()) for module in self._extra_state_modules]
        self._group_settings = [
            {k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups
        ]
        self._generator_state = self.generator.get_state()
        self._replay_mark = None if self.replay is None else self.replay.mark(replay_steps)

    def protect(self) -> None:
        """Copy the trained parameters, the target networks and the optimizer's state, once per update."""
        if self._is_protected or self._slots is None:
            return
        self._optimizer_entries, optimizer_tensors = optimizer_entries(self.optimizer)
        self._protected.fill([container[name] for container, name in self._slots[1]] + optimizer_tensors)
        self._is_protected = True

    def restore(self) -> None:
        """Put everything back as :meth:`take` found it (the same tensors, holding the same values);
        gradients are dropped."""
        if self._slots is None or self._generator_state is None:
            raise RuntimeError("restore() before take()")
        self._eager.put_back(self._slots[0])
        if self._is_protected:  # else no optimizer step has changed them yet
            self._protected.put_back(self._slots[1])
            for param, state in self._optimizer_entries:
                if state is None:
                    self.optimizer.state.pop(param, None)
                else:
                    self.optimizer.state[param] = dict(state)
        for module, state in zip(self._extra_state_modules, self._extra_states):
            module.set_extra_state(state)
        for group, settings in zip(self.optimizer.param_groups, self._group_settings):
            group.update(settings)
        self.optimizer.zero_grad(set_to_none=True)
        self.generator.set_state(self._generator_state)
        if self.replay is not None and self._replay_mark is not None:
            self.replay.rewind(self._replay_mark)
