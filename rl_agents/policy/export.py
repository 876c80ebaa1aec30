"""Exporting a policy's deterministic action as a file that runs without this library.

The exported graph maps a batch of observations (``obs``: ``[batch, *obs_shape]``, float32, or uint8
for images) to environment actions (``action``: int64 for discrete spaces, float32 for Box, already
clipped or scaled to the bounds), with whatever the agent does on the way (observation
normalization, the greedy or mean action). It is the agent's own ``act`` and ``env_action``,
captured by tracing (TorchScript) or ``torch.export`` (ONNX).

Tracing records the operations one call performs, so an ``act`` that branches in Python on the
*values* of its input would be captured wrongly. Every export is therefore checked: the written file
is loaded back (``torch.jit.load``; ``onnxruntime``) and run on random observations of the space, and
the export is refused, naming the agent, unless its actions equal :meth:`Policy.act_batch`'s
(discrete actions exactly, continuous ones to 1e-5 relative to the action bounds: ONNX Runtime's
kernels round differently from PyTorch's).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rl_agents.core.agent import Agent
from rl_agents.envs.spaces import space_record

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
CONTINUOUS_TOLERANCE = 1e-5  # relative to the action bounds' range (1 where unbounded)
ONNX_OPSET = 18


class Policy(Protocol):
    """What exporting needs of a :class:`rl_agents.Policy` (which imports this module)."""

    agent: Agent
    observation_space: gym.Space
    action_space: gym.Space
    device: torch.device
    checkpoint: Path | None
    observation_dtype: torch.dtype

    def act_batch(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor: ...


class ExportError(RuntimeError):
    """A policy that cannot be exported, or whose exported file does not act as the policy does."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    observations_checked: int
    max_difference: float  # largest |exported action - predict's action| over the checked observations

    def summary(self) -> str:
        if self.observations_checked == 0:
            return f"{self.path} ({self.format}; not checked)"
        same = "equal" if self.max_difference == 0 else f"within {self.max_difference:.2g} of"
        return (
            f"{self.path} ({self.format}); on {self.observations_checked} random observations its actions are "
            f"{same} predict's"
        )


class DeterministicPolicy(nn.Module):
    """The agent's deterministic ``act`` followed by ``env_action``: what gets exported.

    It acts with a copy of the agent: exporting runs ``act`` on symbolic tensors, and an agent that
    caches values derived from its parameters (PPO's fused inference weights) would keep symbolic
    ones. The copy's parameters need no gradients, so neither do the exported graph's outputs."""

    def __init__(self, policy: Policy):
        super().__init__()
        self.agent = copy.deepcopy(policy.agent).eval().requires_grad_(False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.agent.env_action(self.agent.act(obs, deterministic=True))


def export_policy(policy: Policy, path: Path, format: str, *, check: int = 1000) -> ExportResult:
    """Write ``policy`` to ``path`` as ``format`` ("onnx" or "torchscript") and check the file on
    ``check`` random observations (0: no check). The file is replaced only once it passed."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}: use one of {', '.join(FORMATS)}")
    if check < 0:
        raise ValueError(f"check must be >= 0, got {check}")
    _require_modules(format, check)
    if policy.has_memory:
        raise ExportError(
            f"agent {policy.agent.name!r} carries recurrent state; exporting agents with memory is not "
            "supported yet (use Policy.predict(obs, state))"
        )
    if not isinstance(policy.observation_space, gym.spaces.Box):
        raise ExportError(
            f"agent {policy.agent.name!r} reads {type(policy.observation_space).__name__} observations; exporting "
            "is supported for Box observation spaces only (use Policy.predict)"
        )
    if policy.device.type != "cpu":
        raise ExportError(f"export a policy loaded on the CPU (Policy.load(path, device='cpu')), not {policy.device}")
    module = DeterministicPolicy(policy).eval()
    example = sample_observations(policy, 4, seed=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    try:
        with _quiet_exporters():
            _write(module, example, scratch, format, policy)
        difference = _check(policy, scratch, format, check) if check else 0.0
        scratch.replace(path)
    finally:
        scratch.unlink(missing_ok=True)
    return ExportResult(path, format, check, difference)


def _require_modules(format: str, check: int) -> None:
    needed = ["onnx", "onnxscript"] + (["onnxruntime"] if check else []) if format == "onnx" else []
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"exporting to ONNX needs {', '.join(missing)}: pip install 'rl-agents[export]' "
            "(onnx, onnxscript and onnxruntime)"
        )


def sample_observations(policy: Policy, count: int, seed: int) -> torch.Tensor:
    """``count`` observations drawn from the policy's observation space (seeded), as one batch."""
    space = policy.observation_space
    space.seed(seed)
    samples = np.stack([np.asarray(space.sample()) for _ in range(count)])
    return torch.as_tensor(samples).to(policy.observation_dtype)


def _write(module: nn.Module, example: torch.Tensor, path: Path, format: str, policy: Policy) -> None:
    name = _who(policy)
    try:
        if format == "torchscript":
            traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(path), _extra_files={"rl_agents.json": _metadata(policy)})
        else:
            _write_onnx(module, example, path, policy)
    except ExportError:
        raise
    except Exception as error:  # the exporters raise many kinds; each names the operation it could not take
        reason = " ".join(str(error).split())[:400]
        raise ExportError(f"{name} cannot be exported to {format}: {type(error).__name__}: {reason}") from error


def _who(policy: Policy) -> str:
    return f"agent {policy.agent.name!r} ({type(policy.agent).__name__})"


def _write_onnx(module: nn.Module, example: torch.Tensor, path: Path, policy: Policy) -> None:
    import onnx

    batch = torch.export.Dim("batch")
    torch.onnx.export(
        module,
        (example,),
        str(path),
        input_names=["obs"],
        output_names=["action"],
        dynamic_shapes=({0: batch},),
        opset_version=ONNX_OPSET,
        external_data=False,  # one self-contained file: policy networks are small
        dynamo=True,
        verbose=False,
    )
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"rl_agents": _metadata(policy)})
    onnx.save(model, str(path))


def _metadata(policy: Policy) -> str:
    """What a deployment needs to know besides the graph: the spaces and where the policy came from."""
    return json.dumps(
        {
            "agent": policy.agent.name,
            "class": type(policy.agent).__name__,
            "observation_space": space_record(policy.observation_space),
            "action_space": space_record(policy.action_space),
            "checkpoint": str(policy.checkpoint) if policy.checkpoint else None,
        },
        allow_nan=True,
    )


def _check(policy: Policy, path: Path, format: str, count: int) -> float:
    """Largest difference between the file's actions and the policy's on ``count`` random observations."""
    observations = sample_observations(policy, count, seed=0)
    expected = policy.act_batch(observations).cpu().numpy()
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream, still loads
            loaded = torch.jit.load(str(path))
        with torch.inference_mode():
            actual = loaded(observations).numpy()
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        actual = session.run(None, {"obs": observations.numpy()})[0]
    return _compare(policy, expected, np.asarray(actual), format)


def _compare(policy: Policy, expected: np.ndarray, actual: np.ndarray, format: str) -> float:
    name = _who(policy)
    if actual.shape != expected.shape:
        raise ExportError(
            f"the {format} export of {name} returns actions of shape {actual.shape}, the policy {expected.shape}"
        )
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).reshape(len(expected), -1)
    if np.issubdtype(expected.dtype, np.floating):
        allowed = CONTINUOUS_TOLERANCE * _action_range(policy, difference.shape[1])
    else:
        allowed = np.zeros(difference.shape[1])
    wrong = (difference > allowed).any(axis=1) | ~np.isfinite(difference).all(axis=1)
    if wrong.any():
        raise ExportError(
            f"the {format} export of {name} acts differently from the agent on {int(wrong.sum())} of {len(wrong)} "
            f"random observations (largest difference {difference.max():.3g}): its act() probably branches in "
            "Python on the values of its input, which an exported graph cannot follow"
        )
    return float(difference.max()) if difference.size else 0.0


def _action_range(policy: Policy, width: int) -> np.ndarray:
    space = policy.action_space
    low, high = np.asarray(getattr(space, "low", -np.inf)), np.asarray(getattr(space, "high", np.inf))
    span = np.broadcast_to((high.astype(np.float64) - low.astype(np.float64)).reshape(-1), (width,)).copy()
    span[~np.isfinite(span)] = 1.0
    return np.maximum(span, 1.0)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """The exporters' progress lines and warnings about optional packages are not the user's concern."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
