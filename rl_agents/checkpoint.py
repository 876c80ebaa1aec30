"""Safe, atomic training checkpoints.

A checkpoint is a directory, by default ``<checkpoints_dir>/step_<global_step:09d>/``, holding two files:

``tensors.safetensors``
    Every tensor: each agent's ``state_dict`` (parameters *and* buffers, e.g. observation
    normalizer statistics) under ``agents/<agent>/<key>``, the optimizer's per-parameter state
    (Adam's ``exp_avg``, ``exp_avg_sq`` and its tensor ``step``) under
    ``optimizer/<agent>/<parameter>/<key>``, and the trainer's ``torch.Generator`` state under
    ``trainer/generator``.
``state.json``
    Everything else: format and version, counters (``global_step``, ``num_updates``, ...), the
    optimizer's param-group hyperparameters (lr, betas, ...) and any non-tensor optimizer state,
    episode statistics, the per-env episode accumulators and ``_reset_pending``, the run config (when
    the trainer was built from one), the agents' names and classes, and the SHA-256 of the tensors file.

Saving happens only at an update boundary (no partly filled rollout), so the rollout storage is not
part of a checkpoint. The environments' state is (see :mod:`rl_agents.envstate`): tensors under
``envs/...`` and, in ``state.json``, an ``env_state`` entry ``{"captured": true, "state": {...}}``
with the trainer's last observation. A resumed ``train()`` then continues the saved episodes exactly.
Where the envs cannot be captured (an AsyncVectorEnv, an env holding objects of unknown types) the
entry is ``{"captured": false, "reason": ...}`` and, as for checkpoints without the entry, resuming
re-seeds and resets the environments.

Writes are atomic: both files are written and fsynced in a temporary directory next to the target,
which is then renamed into place; a ``latest`` text file naming the newest checkpoint is replaced
atomically just before that rename (so a crash in between leaves a pointer to a missing checkpoint,
which readers skip, rather than one to an older checkpoint). :func:`recover_checkpoints_dir` tidies
what a killed process left (temporary directories, a checkpoint moved aside while being replaced). Loading never unpickles anything: it reads JSON with :mod:`json` and tensors
with :func:`safetensors.torch.load_file`, and any missing, truncated or corrupt file, or a
checkpoint of a different composition, raises :class:`CheckpointError` before the trainer is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    import gymnasium as gym

    from rl_agents.trainer import Trainer

FORMAT = "rl_agents.checkpoint"
VERSION = 1
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
CHECKPOINTS_SUBDIR = "checkpoints"
GENERATOR_KEY = "trainer/generator"
REPLAY_PREFIX = "replay/"
ENV_PREFIX = "envs/"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# Optimizer settings that choose a kernel, not the math: this trainer's own choice (which may depend
# on the device) is kept, whatever the saving trainer used.
_IMPLEMENTATION_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (missing, truncated, corrupt, or of another composition)."""


# ---------------------------------------------------------------------------------------------- paths
def step_dir_name(global_step: int) -> str:
    return f"step_{global_step:09d}"


def checkpoints_dir_of(path: str | os.PathLike) -> Path:
    """``run/checkpoints`` for a run directory that has one, else ``path`` itself."""
    path = Path(path)
    return path / CHECKPOINTS_SUBDIR if (path / CHECKPOINTS_SUBDIR).is_dir() else path


def _is_complete(directory: Path) -> bool:
    state = directory / STATE_FILE
    if not state.is_file() or not (directory / TENSORS_FILE).is_file():
        return False
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def latest_checkpoint(run_or_checkpoints_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under a run directory or a checkpoints directory, or None.

    The ``latest`` pointer wins when it names a complete checkpoint; otherwise (pointer missing,
    stale or damaged) the ``step_*`` directory with the highest step and a complete ``state.json``.
    A path that is itself a checkpoint is returned as is.
    """
    path = Path(run_or_checkpoints_dir)
    if not path.is_dir():
        return None
    if _is_complete(path):
        return path
    directory = checkpoints_dir_of(path)
    pointer = directory / LATEST_FILE
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if name and "/" not in name and "\\" not in name and name not in (".", "..") and _is_complete(directory / name):
        return directory / name
    steps = []
    for child in directory.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and child.is_dir():
            steps.append((int(match.group(1)), child))
    for _, child in sorted(steps, reverse=True):
        if _is_complete(child):
            return child
    return None


def recover_checkpoints_dir(checkpoints_dir: str | os.PathLike) -> None:
    """Tidy what a process killed while saving left in a checkpoints directory.

    Only for a directory no process is saving into (e.g. before resuming a run). A checkpoint being
    replaced that was moved aside (``.old-<name>-*/<name>``) but not yet replaced is moved back;
    temporary ``.tmp-*`` and ``.old-*`` entries are removed; a ``latest`` pointer that does not name a
    complete checkpoint is rewritten to the newest complete one (or removed if there is none).
    """
    directory = Path(checkpoints_dir)
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".old-") and entry.is_dir():
            for moved in entry.iterdir():
                named_ok = not moved.name.startswith(".") and moved.name != LATEST_FILE
                if named_ok and not (directory / moved.name).exists() and _is_complete(moved):
                    os.replace(moved, directory / moved.name)
    for entry in directory.iterdir():
        if entry.name.startswith((".tmp-", ".old-")):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    newest = latest_checkpoint(directory)
    if newest is None or newest.parent != directory:
        (directory / LATEST_FILE).unlink(missing_ok=True)
    elif _read_latest(directory) != newest.name:
        _write_latest(directory, newest.name)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory itself, or the latest checkpoint of a run/checkpoints directory."""
    path = Path(path)
    if (path / STATE_FILE).exists() or (path / TENSORS_FILE).exists():
        return path  # a checkpoint, complete or not: loading reports what is wrong with it
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"{path}: contains no complete checkpoint ({STATE_FILE} + {TENSORS_FILE})")
    return found


# ---------------------------------------------------------------------------------------------- saving
def save_checkpoint(
    trainer: Trainer,
    checkpoints_dir: str | os.PathLike,
    *,
    config: dict[str, Any] | None = None,
    name: str | None = None,
) -> Path:
    """Write ``<checkpoints_dir>/<name>`` (default ``step_<global_step:09d>``) atomically; return its path.

    ``config`` (a run-config dict as made by ``rl_agents.config.config_to_dict``, or a ``RunConfig``)
    is stored so that :func:`load_trainer` can rebuild the agents; it defaults to ``trainer.run_config``.
    An existing checkpoint of the same name is replaced. The ``latest`` pointer is switched to it
    just before it is renamed into place.
    """
    if trainer._step_in_rollout != 0 or trainer._acted:
        raise RuntimeError(
            f"a checkpoint can only be saved at an update boundary: the trainer is at step "
            f"{trainer._step_in_rollout} of {trainer.rollout_steps} of the current rollout"
            + (" and act() was called without observe()" if trainer._acted else "")
            + "; save right after the update (e.g. from train()'s on_update callback)"
        )
    if config is None:
        config = getattr(trainer, "run_config", None)
    elif not isinstance(config, dict):
        from rl_agents.config import config_to_dict

        config = config_to_dict(config)
    tensors, state = _collect(trainer, config)

    directory = Path(checkpoints_dir)
    name = name or step_dir_name(trainer.global_step)
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == LATEST_FILE:
        raise ValueError(f"invalid checkpoint name {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=directory))
    try:
        tensors_path = tmp / TENSORS_FILE
        save_file(tensors, str(tensors_path), metadata={"format": FORMAT, "version": str(VERSION)})
        _fsync_file(tensors_path)
        state["tensors_sha256"] = _sha256(tensors_path)
        state["tensors_bytes"] = tensors_path.stat().st_size
        _write_synced(tmp / STATE_FILE, json.dumps(state, indent=1, allow_nan=True).encode("utf-8"))
        _fsync_dir(tmp)
        # The pointer is switched before the rename: a process killed in between leaves a pointer to a
        # missing checkpoint, which readers skip for the highest complete step (the previous newest),
        # never a pointer to an older checkpoint while a newer one is complete.
        previous = _read_latest(directory)
        _write_latest(directory, name)
        try:
            if target.exists():
                trash = Path(tempfile.mkdtemp(prefix=f".old-{name}-", dir=directory))
                os.replace(target, trash / name)
                os.replace(tmp, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, target)
            _fsync_dir(directory)
        except BaseException:
            if previous and previous != name:
                _write_latest(directory, previous)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _collect(trainer: Trainer, config: dict[str, Any] | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    agents_meta = []
    for agent in trainer.agents:
        extra: dict[str, Any] = {}
        for key, value in agent.state_dict().items():
            if isinstance(value, torch.Tensor):
                tensors[f"agents/{agent.name}/{key}"] = _cpu_copy(value)
            else:  # nn.Module.get_extra_state(): only JSON is accepted, never pickles
                _check_jsonable(value, f"agent {agent.name!r} state_dict entry {key!r}")
                extra[key] = value
        agents_meta.append({"name": agent.name, "class": _class_path(agent), "extra_state": extra})

    optimizer = trainer.optimizer
    param_names = _optimizer_param_names(trainer)
    groups = []
    for group in optimizer.param_groups:
        group_name = group.get("name")
        hyper = {
            key: _jsonable_value(value, f"optimizer group {group_name!r} hyperparameter {key!r}")
            for key, value in group.items()
            if key != "params"
        }
        groups.append(
            {"name": group_name, "hyperparameters": hyper, "params": [param_names[id(p)] for p in group["params"]]}
        )
    scalar_state: dict[str, dict[str, Any]] = {}
    for param, param_state in optimizer.state.items():
        pname = param_names[id(param)]
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{pname}/{key}"] = _cpu_copy(value)
            else:
                _check_jsonable(value, f"optimizer state {key!r} of {pname!r}")
                scalar_state.setdefault(pname, {})[key] = value
    tensors[GENERATOR_KEY] = _cpu_copy(trainer.generator.get_state())
    replay_state = None
    if trainer.replay is not None:
        for key, value in trainer.replay.state_tensors().items():
            tensors[REPLAY_PREFIX + key] = value
        replay_state = {"capacity": trainer.replay.capacity, "position": trainer.replay.position, "size": trainer.replay.size}
    env_tensors, env_state = _capture_envs(trainer)
    tensors.update(env_tensors)

    state = {
        "format": FORMAT,
        "version": VERSION,
        "torch_version": torch.__version__,
        "agents": agents_meta,
        "num_envs": trainer.num_envs,
        "autoreset_mode": str(getattr(trainer.autoreset_mode, "value", trainer.autoreset_mode)),
        "device_type": trainer.device.type,
        "seed": trainer.seed,
        "total_steps": trainer.total_steps,
        "schedule": {key: value for key, value in vars(trainer.schedule).items()},
        "global_step": trainer.global_step,
        "num_updates": trainer.num_updates,
        "log_from_episode": trainer._log_from_episode,
        "episodes": {
            "returns": [float(x) for x in trainer.episodes.returns],
            "lengths": [int(x) for x in trainer.episodes.lengths],
            "end_steps": [int(x) for x in trainer.episodes.end_steps],
        },
        "episode_return": [float(x) for x in trainer._episode_return],
        "episode_length": [int(x) for x in trainer._episode_length],
        "reset_pending": [bool(x) for x in trainer._reset_pending],
        "metrics": {key: float(value) for key, value in trainer.metrics.items()},
        "replay": replay_state,
        "gradient_steps": trainer.gradient_steps,
        "logging": {
            "num_logs": trainer.num_logs,
            "last_log_step": trainer._last_log_step,
            "pending_sums": dict(trainer._log_sums),
            "pending_counts": dict(trainer._log_counts),
        },
        "optimizer": {
            "class": _class_path(optimizer),
            "base_lrs": list(trainer.base_lrs),
            "param_groups": groups,
            "scalar_state": scalar_state,
        },
        "config": config,
        "env_state": env_state,
    }
    _check_jsonable(config, "run config")
    return tensors, state


def _capture_envs(trainer: Trainer) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The envs' state and the last observation, or a record of why they could not be captured.

    None when no step was observed yet (nothing to continue)."""
    from rl_agents.envstate import EnvStateUnsupported, capture_env_state

    obs = getattr(trainer, "_last_obs", None)
    if obs is None:
        return {}, None
    try:
        tensors, env_state = capture_env_state(trainer.envs, obs)
    except EnvStateUnsupported as error:
        reason = _one_line(error)
        warnings.warn(
            f"the environments' state cannot be saved in checkpoints ({reason}); "
            "a run resumed from them re-seeds and resets its environments",
            stacklevel=4,
        )
        return {}, {"captured": False, "reason": reason}
    return tensors, {"captured": True, "state": env_state}


def _optimizer_param_names(trainer: Trainer) -> dict[int, str]:
    """``id(parameter) -> "<agent>/<parameter name>"`` for every agent parameter."""
    names: dict[int, str] = {}
    for agent in trainer.agents:
        for pname, param in agent.named_parameters():
            names.setdefault(id(param), f"{agent.name}/{pname}")
    for group in trainer.optimizer.param_groups:
        for param in group["params"]:
            if id(param) not in names:
                raise ValueError(f"optimizer group {group.get('name')!r} holds a parameter that belongs to no agent")
    return names


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    # A fresh contiguous copy: safetensors refuses tensors that share memory (tied weights, views).
    return tensor.detach().to("cpu", copy=True).contiguous()


def _class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _jsonable_value(value: Any, where: str) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    _check_jsonable(value, where)
    return value


def _check_jsonable(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_jsonable(item, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: cannot be saved: dict key {key!r} is not a string")
            _check_jsonable(item, where)
        return
    raise TypeError(f"{where}: cannot be saved as JSON ({type(value).__name__}); checkpoints never pickle")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_latest(directory: Path) -> str:
    try:
        return (directory / LATEST_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _write_latest(directory: Path, name: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-latest-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(f"{name}\n".encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, directory / LATEST_FILE)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)


# ---------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, torch.Tensor]]:
    """``(checkpoint dir, state.json contents, tensors)`` after checking both files; never unpickles."""
    directory = resolve_checkpoint(path)
    state = _read_state(directory / STATE_FILE)
    tensors_path = directory / TENSORS_FILE
    if not tensors_path.is_file():
        raise CheckpointError(f"{tensors_path}: missing")
    size = tensors_path.stat().st_size
    if size != state["tensors_bytes"]:
        raise CheckpointError(
            f"{tensors_path}: {size} bytes, but {STATE_FILE} recorded {state['tensors_bytes']} (truncated or replaced)"
        )
    if _sha256(tensors_path) != state["tensors_sha256"]:
        raise CheckpointError(
            f"{tensors_path}: SHA-256 does not match the one recorded in {STATE_FILE} (corrupt or replaced)"
        )
    try:
        tensors = load_file(str(tensors_path), device="cpu")
    except Exception as error:  # noqa: BLE001 (SafetensorError, OSError, ...: any failure to parse)
        raise CheckpointError(f"{tensors_path}: not a readable safetensors file ({_one_line(error)})") from None
    return directory, state, tensors


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run config stored in a checkpoint's ``state.json`` (None when it had none)."""
    return _read_state(resolve_checkpoint(path) / STATE_FILE)["config"]


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "version": int,
    "agents": list,
    "num_envs": int,
    "autoreset_mode": str,
    "device_type": str,
    "seed": int,
    "total_steps": (int, type(None)),
    "schedule": dict,
    "global_step": int,
    "num_updates": int,
    "log_from_episode": int,
    "episodes": dict,
    "episode_return": list,
    "episode_length": list,
    "reset_pending": list,
    "metrics": dict,
    "optimizer": dict,
    "config": (dict, type(None)),
    "tensors_sha256": str,
    "tensors_bytes": int,
}


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)")
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({_one_line(error)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(state).__name__}")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rl_agents checkpoint (format {state.get('format')!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: format version {state.get('version')!r} is not supported (this library reads {VERSION})"
        )
    for key, expected in _REQUIRED.items():
        if key not in state:
            raise CheckpointError(f"{path}: missing key {key!r}")
        if not _is_type(state[key], expected):
            raise CheckpointError(f"{path}: key {key!r} has the wrong type ({type(state[key]).__name__})")
    for key in ("global_step", "num_updates", "log_from_episode", "num_envs", "tensors_bytes"):
        if state[key] < 0:
            raise CheckpointError(f"{path}: key {key!r} is negative ({state[key]})")
    for index, meta in enumerate(state["agents"]):
        if not (
            isinstance(meta, dict)
            and isinstance(meta.get("name"), str)
            and isinstance(meta.get("class"), str)
            and isinstance(meta.get("extra_state", {}), dict)
        ):
            raise CheckpointError(f"{path}: agents[{index}] must have a string 'name' and 'class'")
    episodes = state["episodes"]
    for key, kind in (("returns", (int, float)), ("lengths", int), ("end_steps", int)):
        values = episodes.get(key)
        if not isinstance(values, list) or not all(_is_type(v, kind) for v in values):
            raise CheckpointError(f"{path}: episodes.{key} must be a list of numbers")
    if not len(episodes["returns"]) == len(episodes["lengths"]) == len(episodes["end_steps"]):
        raise CheckpointError(f"{path}: episodes.returns, lengths and end_steps have different lengths")
    if state["log_from_episode"] > len(episodes["returns"]):
        raise CheckpointError(f"{path}: log_from_episode exceeds the number of episodes")
    for key, kind in (("episode_return", (int, float)), ("episode_length", int), ("reset_pending", bool)):
        values = state[key]
        if len(values) != state["num_envs"] or not all(_is_type(v, kind) for v in values):
            raise CheckpointError(
                f"{path}: {key} must hold one {getattr(kind, '__name__', 'number')} per env ({state['num_envs']})"
            )
    optimizer = state["optimizer"]
    groups = optimizer.get("param_groups")
    if not isinstance(groups, list) or not all(
        isinstance(g, dict)
        and isinstance(g.get("hyperparameters"), dict)
        and isinstance(g.get("params"), list)
        and all(isinstance(p, str) for p in g["params"])
        for g in groups
    ):
        raise CheckpointError(f"{path}: optimizer.param_groups is malformed")
    base_lrs = optimizer.get("base_lrs")
    if (
        not isinstance(base_lrs, list)
        or len(base_lrs) != len(groups)
        or not all(_is_type(v, (int, float)) for v in base_lrs)
    ):
        raise CheckpointError(f"{path}: optimizer.base_lrs must hold one number per param group")
    scalar_state = optimizer.get("scalar_state")
    if not isinstance(scalar_state, dict) or not all(isinstance(v, dict) for v in scalar_state.values()):
        raise CheckpointError(f"{path}: optimizer.scalar_state is malformed")
    if not re.fullmatch(r"[0-9a-f]{64}", state["tensors_sha256"]):
        raise CheckpointError(f"{path}: tensors_sha256 is not a SHA-256 hex digest")
    return state


def _is_type(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in kinds:
        return False  # JSON true/false is not a number here
    return isinstance(value, kinds)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------------------------------------- loading
def load_state(trainer: Trainer, path: str | os.PathLike) -> Path:
    """Restore a checkpoint into ``trainer``, which must have the same agents (names, classes, shapes).

    Restored: every agent's parameters and buffers, the optimizer (state and hyperparameters such as
    the annealed lr), ``base_lrs``, the trainer's generator, ``seed``, ``total_steps``, the step and
    update counters, episode statistics, per-env episode accumulators and ``_reset_pending``, and
    ``run_config`` (only if the trainer has none). Optimizer settings that pick a kernel (``fused``,
    ``foreach``, ...) stay the trainer's own. Everything is checked before anything is changed, so on
    CheckpointError the trainer is untouched. Returns the checkpoint directory that was loaded.

    When the checkpoint holds the environments' state, it is restored into ``trainer.envs`` (which
    must be made the same way: same ids, wrappers and number of envs) with the last observation, and
    the next ``train()`` continues those episodes instead of resetting. Otherwise (an older
    checkpoint, envs that could not be captured, or envs that do not fit the saved state: a warning
    says which) ``train()`` re-seeds and resets the envs; the per-env accumulators and
    ``_reset_pending`` then describe episodes that no longer exist, and ``train()`` clears them.
    """
    directory, state, tensors = read_checkpoint(path)
    tensors_path = directory / TENSORS_FILE
    state_path = directory / STATE_FILE

    # ---- composition
    saved_agents = {meta["name"]: meta for meta in state["agents"]}
    current = {agent.name: agent for agent in trainer.agents}
    for name in saved_agents:
        if name not in current:
            raise CheckpointError(
                f"{state_path}: checkpoint has agent {name!r}, which this trainer lacks (it has {sorted(current)})"
            )
    for name, agent in current.items():
        if name not in saved_agents:
            raise CheckpointError(
                f"{state_path}: trainer agent {name!r} is not in the checkpoint (it has {sorted(saved_agents)})"
            )
        if saved_agents[name]["class"] != _class_path(agent):
            raise CheckpointError(
                f"{state_path}: agent {name!r} was a {saved_agents[name]['class']} in the checkpoint, "
                f"but is a {_class_path(agent)} here"
            )
    if state["num_envs"] != trainer.num_envs:
        raise CheckpointError(
            f"{state_path}: saved with {state['num_envs']} envs, but this trainer has {trainer.num_envs}"
        )
    mode = str(getattr(trainer.autoreset_mode, "value", trainer.autoreset_mode))
    if state["autoreset_mode"] != mode:
        raise CheckpointError(
            f"{state_path}: saved with autoreset mode {state['autoreset_mode']!r}, but the envs use {mode!r}"
        )

    # ---- agent tensors
    agent_states: dict[str, dict[str, torch.Tensor]] = {}
    expected_keys: set[str] = set()
    for name, agent in current.items():
        prefix = f"agents/{name}/"
        loaded: dict[str, Any] = {}
        extra = saved_agents[name].get("extra_state", {})
        for key, value in agent.state_dict().items():
            if not isinstance(value, torch.Tensor):
                if key not in extra:
                    raise CheckpointError(f"{state_path}: agent {name!r}: missing extra state {key!r}")
                loaded[key] = extra[key]
                continue
            full = prefix + key
            expected_keys.add(full)
            if full not in tensors:
                raise CheckpointError(
                    f"{tensors_path}: agent {name!r}: missing tensor {key!r} (was the agent built with other options?)"
                )
            _check_tensor(tensors[full], value, tensors_path, f"agent {name!r}: tensor {key!r}")
            loaded[key] = tensors[full]
        agent_states[name] = loaded

    # ---- optimizer
    optimizer = trainer.optimizer
    param_names = _optimizer_param_names(trainer)
    saved_opt = state["optimizer"]
    if saved_opt.get("class") != _class_path(optimizer):
        raise CheckpointError(
            f"{state_path}: optimizer was {saved_opt.get('class')!r}, this trainer uses {_class_path(optimizer)!r}"
        )
    saved_groups = saved_opt["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise CheckpointError(
            f"{state_path}: optimizer has {len(saved_groups)} param groups, "
            f"this trainer has {len(optimizer.param_groups)}"
        )
    template = optimizer.state_dict()
    new_groups = []
    index_of: dict[str, int] = {}
    params_by_name: dict[str, torch.Tensor] = {}
    for group, template_group, saved in zip(optimizer.param_groups, template["param_groups"], saved_groups):
        names = [param_names[id(p)] for p in group["params"]]
        label = group.get("name")
        if saved.get("name") != label:
            raise CheckpointError(
                f"{state_path}: optimizer param group {saved.get('name')!r} does not match this trainer's {label!r}"
            )
        if saved["params"] != names:
            missing = sorted(set(names) - set(saved["params"]))
            extra_names = sorted(set(saved["params"]) - set(names))
            raise CheckpointError(
                f"{state_path}: agent {label!r}: optimized parameters differ "
                f"(missing {missing}, unexpected {extra_names})"
            )
        hyper = dict(template_group)
        for key, value in saved["hyperparameters"].items():
            if key in ("params", "param_names") or key in _IMPLEMENTATION_KEYS:
                continue
            hyper[key] = (
                tuple(value) if isinstance(template_group.get(key), tuple) and isinstance(value, list) else value
            )
        new_groups.append(hyper)
        for pname, index, param in zip(names, template_group["params"], group["params"]):
            index_of[pname] = index
            params_by_name[pname] = param
    new_opt_state: dict[int, dict[str, Any]] = {}
    prefix = "optimizer/"
    for full, tensor in tensors.items():
        if not full.startswith(prefix):
            continue
        expected_keys.add(full)
        pname, _, key = full[len(prefix) :].rpartition("/")
        if pname not in index_of:
            raise CheckpointError(
                f"{tensors_path}: optimizer state {full!r} is for a parameter this trainer does not optimize"
            )
        param = params_by_name[pname]
        if tensor.dim() != 0 and tuple(tensor.shape) != tuple(param.shape):
            raise CheckpointError(
                f"{tensors_path}: optimizer state {key!r} of {pname!r} has shape {list(tensor.shape)}, "
                f"parameter has {list(param.shape)}"
            )
        new_opt_state.setdefault(index_of[pname], {})[key] = tensor
    for pname, values in saved_opt["scalar_state"].items():
        if pname not in index_of:
            raise CheckpointError(
                f"{state_path}: optimizer state for {pname!r}, a parameter this trainer does not optimize"
            )
        for key, value in values.items():
            new_opt_state.setdefault(index_of[pname], {})[key] = value
    key_sets = {frozenset(values) for values in new_opt_state.values()}
    if len(key_sets) > 1:  # torch's optimizers keep the same keys for every parameter they have state for
        everything = frozenset().union(*key_sets)
        pname, values = next(
            (n, new_opt_state[i])
            for n, i in index_of.items()
            if i in new_opt_state and set(new_opt_state[i]) != everything
        )
        raise CheckpointError(f"{tensors_path}: optimizer state of {pname!r} lacks {sorted(everything - set(values))}")

    # ---- generator
    if GENERATOR_KEY not in tensors:
        raise CheckpointError(f"{tensors_path}: missing tensor {GENERATOR_KEY!r}")
    expected_keys.add(GENERATOR_KEY)
    generator_state = tensors[GENERATOR_KEY]
    restore_generator = state["device_type"] == trainer.device.type
    if restore_generator:
        if generator_state.dtype != torch.uint8 or generator_state.dim() != 1:
            raise CheckpointError(
                f"{tensors_path}: {GENERATOR_KEY!r} must be a 1-d uint8 tensor, "
                f"got {generator_state.dtype} {list(generator_state.shape)}"
            )
        try:
            torch.Generator(device=trainer.device).set_state(generator_state)
        except Exception as error:  # noqa: BLE001 (set_state rejects a bad state with RuntimeError or others)
            raise CheckpointError(
                f"{tensors_path}: {GENERATOR_KEY!r} is not a valid generator state ({_one_line(error)})"
            ) from None

    # ---- replay buffer
    replay_tensors: dict[str, torch.Tensor] = {}
    if trainer.replay is not None:
        replay_tensors = {key[len(REPLAY_PREFIX):]: value for key, value in tensors.items() if key.startswith(REPLAY_PREFIX)}
        expected_keys.update(REPLAY_PREFIX + key for key in replay_tensors)
        _check_replay(trainer, state.get("replay"), replay_tensors, state_path)

    # ---- environments (a state that does not fit these envs is a warning, not an error)
    env_tensors = {key: value for key, value in tensors.items() if key.startswith(ENV_PREFIX)}
    expected_keys.update(env_tensors)
    restore_envs, env_warning = _prepare_env_restore(trainer, state.get("env_state"), env_tensors, state_path)

    unexpected = sorted(set(tensors) - expected_keys)
    if unexpected:
        owner = next(
            (
                name
                for name in sorted(saved_agents, key=len, reverse=True)
                if unexpected[0].startswith(f"agents/{name}/")
            ),
            None,
        )
        who = f"agent {owner!r}: " if owner else ""
        raise CheckpointError(
            f"{tensors_path}: {who}checkpoint has tensor {unexpected[0]!r} that this trainer does not"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + " (was the agent built with other options?)"
        )

    # ---- apply (nothing above changed the trainer)
    for name, agent in current.items():
        agent.load_state_dict(agent_states[name], strict=True)
    opt_state_dict = {"state": new_opt_state, "param_groups": new_groups}
    try:
        optimizer.load_state_dict(opt_state_dict)
    except Exception as error:  # noqa: BLE001 (torch raises ValueError or KeyError)
        raise CheckpointError(f"{tensors_path}: optimizer state does not fit ({_one_line(error)})") from None
    if restore_generator:
        trainer.generator.set_state(generator_state)
    else:
        warnings.warn(
            f"{directory}: the random generator was saved on {state['device_type']!r} and cannot be restored on "
            f"{trainer.device.type!r}; action sampling and minibatch order will differ from the original run",
            stacklevel=3,
        )
    trainer.base_lrs = [float(x) for x in saved_opt["base_lrs"]]
    trainer.seed = state["seed"]
    trainer.total_steps = state["total_steps"]
    trainer.global_step = state["global_step"]
    trainer.num_updates = state["num_updates"]
    trainer._step_in_rollout = 0
    trainer._acted = False
    trainer._log_from_episode = state["log_from_episode"]
    episodes = state["episodes"]
    trainer.episodes.returns[:] = [float(x) for x in episodes["returns"]]
    trainer.episodes.lengths[:] = [int(x) for x in episodes["lengths"]]
    trainer.episodes.end_steps[:] = [int(x) for x in episodes["end_steps"]]
    trainer._episode_return = np.asarray(state["episode_return"], dtype=np.float64)
    trainer._episode_length = np.asarray(state["episode_length"], dtype=np.int64)
    trainer._reset_pending = np.asarray(state["reset_pending"], dtype=bool)
    trainer.metrics = {key: float(value) for key, value in state["metrics"].items() if _is_type(value, (int, float))}
    if trainer.replay is not None:
        trainer.replay.restore(replay_tensors, position=state["replay"]["position"], size=state["replay"]["size"])
    trainer.gradient_steps = int(state.get("gradient_steps", 0))
    logging_state = state.get("logging") or {}
    trainer.num_logs = int(logging_state.get("num_logs", trainer.num_updates))
    trainer._last_log_step = int(logging_state.get("last_log_step", trainer.global_step))
    trainer._log_sums = {k: float(v) for k, v in (logging_state.get("pending_sums") or {}).items()}
    trainer._log_counts = {k: int(v) for k, v in (logging_state.get("pending_counts") or {}).items()}
    if state["config"] is not None and getattr(trainer, "run_config", None) is None:
        trainer.run_config = state["config"]
    trainer._last_obs = trainer._resume_obs = None
    if restore_envs is not None:
        try:
            trainer._last_obs = trainer._resume_obs = restore_envs()
        except Exception as error:  # noqa: BLE001 (checked beforehand; train() resets half-restored envs)
            env_warning = f"the environments' state could not be restored ({type(error).__name__}: {_one_line(error)})"
    if env_warning is not None:
        warnings.warn(f"{directory}: {env_warning}; train() re-seeds and resets the environments", stacklevel=3)
    return directory


def _prepare_env_restore(
    trainer: Trainer, env_state: Any, env_tensors: dict[str, torch.Tensor], path: Path
) -> tuple[Any, str | None]:
    """(a function restoring the envs and returning the saved observation, or None; a warning or None)."""
    from rl_agents.envstate import EnvStateMismatch, prepare_restore

    if env_state is None:  # an older checkpoint, or one saved before any step
        if env_tensors:
            raise CheckpointError(f"{path}: has environment tensors but no 'env_state' entry")
        return None, None
    if not isinstance(env_state, dict) or not isinstance(env_state.get("captured"), bool):
        raise CheckpointError(f"{path}: 'env_state' must be an object with a boolean 'captured'")
    if not env_state["captured"]:
        return None, f"the environments' state could not be saved ({env_state.get('reason', 'no reason recorded')})"
    try:
        return prepare_restore(trainer.envs, env_tensors, env_state.get("state")), None
    except EnvStateMismatch as error:
        return None, f"the saved environment state does not fit these environments ({_one_line(error)})"


def _check_replay(trainer: Trainer, saved: Any, tensors: dict[str, torch.Tensor], path: Path) -> None:
    replay = trainer.replay
    assert replay is not None
    if not isinstance(saved, dict) or not all(_is_type(saved.get(k), int) for k in ("capacity", "position", "size")):
        raise CheckpointError(f"{path}: this trainer trains from a replay buffer, but the checkpoint has no valid 'replay' entry")
    if saved["capacity"] != replay.capacity:
        raise CheckpointError(f"{path}: replay buffer held {saved['capacity']} steps, this trainer's holds {replay.capacity}")
    if not (0 <= saved["size"] <= replay.capacity and 0 <= saved["position"] < replay.capacity):
        raise CheckpointError(f"{path}: replay position {saved['position']} or size {saved['size']} is out of range")
    for key, tensor in tensors.items():
        if tensor.dim() < 2 or tensor.shape[0] != saved["size"] or tensor.shape[1] != trainer.num_envs:
            raise CheckpointError(
                f"{path}: replay tensor {key!r} has shape {list(tensor.shape)}, expected [{saved['size']}, {trainer.num_envs}, ...]"
            )
    if saved["size"] > 0 and "valid" not in tensors:
        raise CheckpointError(f"{path}: replay buffer lacks its 'valid' mask")


def _check_tensor(saved: torch.Tensor, current: torch.Tensor, path: Path, what: str) -> None:
    if tuple(saved.shape) != tuple(current.shape):
        raise CheckpointError(
            f"{path}: {what} has shape {list(saved.shape)} in the checkpoint, {list(current.shape)} here"
        )
    if saved.dtype != current.dtype:
        raise CheckpointError(f"{path}: {what} has dtype {saved.dtype} in the checkpoint, {current.dtype} here")


def load_trainer(
    path: str | os.PathLike,
    envs: gym.vector.VectorEnv | None = None,
    *,
    device: str | torch.device | None = None,
    loggers: list | tuple = (),
    trainer_cls: type[Trainer] | None = None,
) -> Trainer:
    """Rebuild a Trainer from a checkpoint's run config, then restore its state.

    ``envs`` defaults to the environments the config describes (``rl_agents.envs.make_envs``).
    ``device`` overrides the config's device. ``trainer_cls`` (default ``Trainer``) is the class built.
    """
    import dataclasses

    from rl_agents.config import ConfigError, config_from_dict, make_trainer
    from rl_agents.trainer import Trainer

    directory = resolve_checkpoint(path)
    raw = read_checkpoint_config(directory)
    if raw is None:
        raise CheckpointError(
            f"{directory / STATE_FILE}: has no run config, so the agents cannot be rebuilt; "
            "construct the Trainer with the same agents and call trainer.load_state(path)"
        )
    try:
        config = config_from_dict(raw, source=str(directory / STATE_FILE))
    except ConfigError as error:
        raise CheckpointError(f"{directory / STATE_FILE}: stored run config is invalid ({_one_line(error)})") from None
    if device is not None:
        config = dataclasses.replace(config, device=str(device))
    trainer = make_trainer(config, loggers, envs=envs, trainer_cls=trainer_cls or Trainer)
    load_state(trainer, directory)
    return trainer


__all__ = [
    "CheckpointError",
    "latest_checkpoint",
    "load_state",
    "load_trainer",
    "read_checkpoint",
    "read_checkpoint_config",
    "recover_checkpoints_dir",
    "save_checkpoint",
]
