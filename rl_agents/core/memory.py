"""Carrying an acting agent's state (memory) from one ``act`` to the next, for a batch of envs.

One class serves every place that acts: the Collector, evaluation and :class:`~rl_agents.policy.Policy`.
For an agent that declares no carried state it calls ``act(obs, deterministic)`` and does nothing else,
so such agents see no change."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.core.agent import Agent, Batch, ContractError, next_carried_key
from rl_agents.core.state import StateError


class CarriedState:
    """The carried state of ``agent`` for ``num_envs`` envs, starting from its initial state."""

    def __init__(self, agent: Agent, num_envs: int, device: torch.device):
        self.agent = agent
        self.num_envs = num_envs
        self.device = device
        self.shapes = dict(agent.carried_state())
        self.values: Batch = self.initial()

    def initial(self) -> Batch:
        return self.agent.initial_carried_state(self.num_envs, self.device) if self.shapes else {}

    def reset(self, envs: np.ndarray | torch.Tensor) -> None:
        """Put the envs where ``envs`` (a bool per env) is True back to the initial state."""
        if not self.shapes or not bool(np.asarray(envs).any()):
            return
        mask = torch.as_tensor(np.asarray(envs), device=self.device)
        initial = self.initial()
        self.values = {
            name: torch.where(mask.view(-1, *([1] * (value.dim() - 1))), initial[name], value)
            for name, value in self.values.items()
        }

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        """``agent.act`` with the carried state; the state moves on to what it returned."""
        if not self.shapes:
            return self.agent.act(obs, deterministic=deterministic)
        outputs = self.agent.act(obs, deterministic=deterministic, state=dict(self.values))
        missing = [name for name in self.shapes if next_carried_key(name) not in outputs]
        if missing:
            raise ContractError(
                f"agent {self.agent.name!r} declared carried state {missing[0]!r}, but its act did not return "
                f"{next_carried_key(missing[0])!r} (it returned: {', '.join(sorted(outputs))})"
            )
        self.values = {name: outputs[next_carried_key(name)] for name in self.shapes}
        return outputs

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().cpu().clone() for name, value in self.values.items()}

    def check(self, saved: Any, where: str) -> Batch:
        """``saved`` checked against the declared shapes (StateError naming what differs)."""
        saved = {} if saved is None else saved
        if not isinstance(saved, dict) or set(saved) != set(self.shapes):
            names = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
            raise StateError(f"{where}: carried state {names} does not match the agent's {sorted(self.shapes)}")
        for name, shape in self.shapes.items():
            value = saved[name]
            expected = (self.num_envs, *shape)
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
                got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise StateError(f"{where}: carried state {name!r} must have shape {expected}, got {got}")
        return saved

    def load(self, saved: Batch) -> None:
        self.values = {name: value.to(self.device, torch.float32).clone() for name, value in saved.items()}


def episode_starts_after_step(autoreset_mode: Any, done: np.ndarray, stepped_reset: np.ndarray) -> np.ndarray:
    """Which envs' next observation starts an episode, after a vector step in which each env was done
    (``done``) or was the reset step of a next-step autoreset (``stepped_reset``). Same-step autoreset:
    the envs that finished (their next observation is already a reset one). Next-step autoreset: the
    envs that just reset (a finished env first returns its final observation, then resets)."""
    return stepped_reset.copy() if autoreset_mode == AutoresetMode.NEXT_STEP else done.copy()
