"""Run-time checks that each agent's ``preprocess`` wrote what its ``data_spec().provides`` declares.

Composition checks (:mod:`rl_agents.core.composition`) prove that the declarations fit together; these
checks catch an agent whose code does not match its declaration, at the agent that broke it rather
than at whichever agent later reads the key. After each ``preprocess`` every provided key must be in
the batch, be a tensor of leading shape ``[T, N]`` (a reward stream exactly ``[T, N]``), live on the
learner's device and, when floating, be finite. They are always on, so they are kept cheap: shapes and
devices are tensor metadata (no host sync), and the finiteness flags of all of an agent's keys come to
the host together, in one sync per agent.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rl_agents.core.agent import VALID, Agent, Batch, ContractError
from rl_agents.training.errors import NonFiniteProvidedError


def _shape(shape: Iterable[int], more: bool = False) -> str:
    """``[128, 4]``; with ``more``, ``[128, 4, ...]`` (any trailing dimensions)."""
    return "[" + ", ".join([*(str(size) for size in shape), *(["..."] if more else [])]) + "]"


def _on_device(tensor: torch.Tensor, device: torch.device) -> bool:
    # A device without an index ("cuda") matches any index of its type, as tensors always carry one.
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


class ProvidedKeysCheck:
    """Checks the keys each agent declared it provides, right after its ``preprocess``.

    Args:
        provides: every agent's declared ``provides``, by agent name.
        reward_keys: the ``reward/<stream>`` keys of the learner's reward streams (exactly ``[T, N]``).
        device: the learner's device, where every provided tensor must be.
    """

    def __init__(self, provides: dict[str, frozenset[str]], reward_keys: frozenset[str], device: torch.device):
        self.provides = {name: sorted(keys) for name, keys in provides.items()}  # sorted: stable messages
        self.reward_keys = reward_keys
        self.device = device

    def __call__(self, agent: Agent, batch: Batch, where: str) -> None:
        """Raise :class:`ContractError` (missing key, wrong type, shape or device) or
        :class:`NonFiniteProvidedError` (a NaN or inf in a floating key) naming ``agent`` and the key.

        A non-finite provided value is raised whatever ``skip_non_finite_updates`` says: that option
        skips a minibatch whose loss went non-finite, not an agent that wrote NaN into the data every
        other agent trains on. ``where`` (e.g. ``update 7, step 4096``) ends the non-finite message."""
        keys = self.provides.get(agent.name)
        if not keys:
            return
        rollout = tuple(batch[VALID].shape[:2])  # [T, N]: the collector always stores ``valid``
        floating: list[tuple[str, torch.Tensor]] = []
        for key in keys:
            value = self._checked(agent.name, key, batch, rollout)
            if value.is_floating_point():
                floating.append((key, value))
        if not floating:
            return
        # One host sync for every key of this agent, not one per key.
        finite = torch.stack([torch.isfinite(value).all() for _, value in floating]).tolist()
        if all(finite):
            return
        counts = ", ".join(  # the error path may sync freely
            f"{key!r} ({int(torch.isnan(value).sum())} NaN, {int(torch.isinf(value).sum())} inf "
            f"of {value.numel()} values)"
            for (key, value), ok in zip(floating, finite)
            if not ok
        )
        raise NonFiniteProvidedError(f"agent {agent.name!r} provided a non-finite {counts} in {where}")

    def _checked(self, agent: str, key: str, batch: Batch, rollout: tuple[int, ...]) -> torch.Tensor:
        """``batch[key]`` once it is there, a tensor of the right leading shape, on the learner's device."""
        value = batch.get(key)
        if value is None:
            raise ContractError(
                f"agent {agent!r} declared it provides {key!r}, but its preprocess did not write it "
                f"(batch keys after it: {', '.join(sorted(batch))})"
            )
        if not isinstance(value, torch.Tensor):
            raise ContractError(
                f"agent {agent!r} provides {key!r} as {type(value).__name__}; expected a torch.Tensor "
                f"of shape {_shape(rollout, more=True)}"
            )
        if key in self.reward_keys:
            if tuple(value.shape) != rollout:
                raise ContractError(
                    f"agent {agent!r} provides {key!r} with shape {_shape(value.shape)}; expected {_shape(rollout)} "
                    "(a reward stream holds one number per step and env)"
                )
        elif tuple(value.shape[:2]) != rollout:
            raise ContractError(
                f"agent {agent!r} provides {key!r} with shape {_shape(value.shape)}; "
                f"expected {_shape(rollout, more=True)} "
                "(batch tensors are [num_steps, num_envs, ...] during preprocessing)"
            )
        if not _on_device(value, self.device):
            raise ContractError(
                f"agent {agent!r} provides {key!r} on device {value.device}; "
                f"expected {self.device} (the learner's device)"
            )
        return value
