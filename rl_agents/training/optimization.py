"""One optimizer step on the sum of every agent's loss terms, refusing NaN and infinite numbers.

A non-finite loss term or gradient raises :class:`NonFiniteLossError` naming the agent and the term
(or the agent whose parameters hold the gradient) before the optimizer steps, or, with
``skip_non_finite_updates``, skips the step with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from rl_agents.core.agent import Agent, Batch, CompositionError
from rl_agents.core.schedules import Schedule
from rl_agents.training.errors import NonFiniteLossError


@contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Treat subnormal floats as zero on the CPU while optimizing.

    Adam's moment estimates of weights whose gradient stays zero (e.g. behind a dead ReLU) decay into
    the subnormal range, where CPU arithmetic is many times slower: with them, Adam took 450 us per
    step instead of 46 us for DQN's (256, 256) network. The flag is process-wide, so it is switched
    off again afterwards; values below 1e-38 become 0, which changes nothing measurable.
    """
    if not torch.set_flush_denormal(True):  # not supported on this CPU
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def default_learning_rate(acting: Agent) -> float | None:
    """The learning rate of a group that gives none (an agent built with ``lr=None``): the acting
    agent's (its first group's), as when one optimizer trains the whole composition."""
    groups = acting.param_groups()
    return groups[0].get("lr") if groups else None


def build_optimizer(agents: Sequence[Agent], default_lr: float | None = None) -> torch.optim.Optimizer:
    """One Adam over every agent's parameter groups (named ``<agent>`` or ``<agent>/<group>``); a
    group without a learning rate gets ``default_lr`` (see :func:`default_learning_rate`)."""
    groups = []
    for agent in sorted(agents, key=lambda a: a.name):
        agent_groups = agent.param_groups()
        for index, group in enumerate(agent_groups):
            if group.get("lr") is None:
                if default_lr is None:
                    raise CompositionError(
                        f"agent {agent.name!r} has trainable parameters but no learning rate, and the acting agent "
                        "has none to share: give it lr=..."
                    )
                group = {**group, "lr": default_lr}
            name = agent.name if len(agent_groups) == 1 else f"{agent.name}/{group.get('name', index)}"
            groups.append({**group, "name": name})
    if not groups:
        raise CompositionError("no agent has trainable parameters")
    try:  # the fused kernel is several times faster for the many small tensors of RL networks
        return torch.optim.Adam(groups, eps=1e-5, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(groups, eps=1e-5, foreach=True)


def _non_finite_terms(values: dict[str, float], agents: Sequence[Agent]) -> str:
    bad = []
    for key, value in values.items():
        if "/loss/" in key and not math.isfinite(value):
            agent, term = key.split("/loss/", 1)
            bad.append(f"agent {agent!r} loss term {term!r} is {value}")
    if bad:
        return "non-finite loss: " + "; ".join(bad)
    weights = ", ".join(f"{agent.name!r} {agent.loss_weight}" for agent in agents)
    return f"non-finite loss: every loss term is finite but their weighted sum is not (loss weights: {weights})"


class SummedLossStep:
    """Steps ``optimizer`` on the weighted sum of the agents' loss terms (in ``order``), clipping the
    gradient norm to the schedule's ``max_grad_norm`` when set (read at each step)."""

    def __init__(
        self,
        order: Sequence[Agent],
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        device: torch.device,
        skip_non_finite: bool,
    ):
        self.order = tuple(order)
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.schedule = schedule
        self.device = device
        self.skip_non_finite = skip_non_finite
        self.skipped = 0  # steps skipped for non-finite numbers (this object's life)

    def __call__(
        self, minibatch: Batch, where: str, before_step: Callable[[], None] | None = None
    ) -> dict[str, float] | None:
        """One optimizer step; returns the logged values, or None when it was skipped because the loss
        or a gradient is not finite (``skip_non_finite``). ``where`` says when, for messages;
        ``before_step`` runs once the numbers are checked, right before the optimizer steps."""
        weighted: list[torch.Tensor] = []
        names: list[str] = []
        logged: list[torch.Tensor | float] = []
        for agent in self.order:
            terms, agent_metrics = agent.loss(minibatch)
            for term_name, term in terms.items():
                weighted.append(term if agent.loss_weight == 1.0 else agent.loss_weight * term)
                names.append(f"{agent.name}/loss/{term_name}")
                logged.append(term.detach())
            names.extend(f"{agent.name}/{key}" for key in agent_metrics)
            logged.extend(agent_metrics.values())
        total = weighted[0] if len(weighted) == 1 else torch.stack(weighted).sum()
        # One conversion for every logged scalar instead of one host sync per value.
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.device) for v in logged])
        values = dict(zip(names, stacked.tolist()))
        loss = float(total.detach())
        if not math.isfinite(loss):
            return self._non_finite(_non_finite_terms(values, self.order), where)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        # Gradients are checked before clipping, which would spread one agent's NaN over every gradient
        # (get_total_norm + clip_grads_with_norm_ is what clip_grad_norm_ does); NaN and inf reach the norm.
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):
            culprits = self._non_finite_gradients(values)
            if culprits:  # else every gradient is finite and only their sum or norm overflowed
                return self._non_finite(f"non-finite gradient although every loss term is finite: {culprits}", where)
        if self.schedule.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.schedule.max_grad_norm, norm)
        values["trainer/grad_norm"] = grad_norm
        if before_step is not None:
            before_step()
        self.optimizer.step()
        values["trainer/loss"] = loss
        return values

    def _non_finite_gradients(self, values: dict[str, float]) -> str:
        """Which agents' parameters hold a NaN or infinite gradient, with those agents' loss terms."""
        parts = []
        for agent in self.order:
            names = [
                name
                for name, p in agent.named_parameters()
                if p.grad is not None and not bool(torch.isfinite(p.grad).all())
            ]
            if names:
                shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
                prefix = f"{agent.name}/loss/"
                terms = ", ".join(
                    f"{key[len(prefix) :]!r} = {value:.6g}" for key, value in values.items() if key.startswith(prefix)
                )
                parts.append(f"agent {agent.name!r} in {shown} (its loss terms: {terms or 'none'})")
        return "; ".join(parts)

    def _non_finite(self, message: str, where: str) -> None:
        """Raise NonFiniteLossError, or skip the step with a warning when ``skip_non_finite``."""
        message = f"{message} ({where})"
        if not self.skip_non_finite:
            raise NonFiniteLossError(
                message
                + (
                    "; skip_non_finite_updates=True (--set trainer.skip_non_finite_updates=true) "
                    "skips such updates instead"
                )
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        warnings.warn(f"skipped a minibatch update: {message}", RuntimeWarning, stacklevel=5)
