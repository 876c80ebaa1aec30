"""Checkpoint directories on disk: names, the ``latest`` pointer, atomic writes, and tidying after a crash.

A checkpoint is a directory, by default ``<checkpoints_dir>/step_<global_step:09d>/``; a ``latest``
text file names the newest one. Writes are atomic: files are written and fsynced in a temporary
directory next to the target, which is then renamed into place; the ``latest`` pointer is replaced
atomically just before that rename (so a crash in between leaves a pointer to a missing checkpoint,
which readers skip, rather than one to an older checkpoint). :func:`recover_checkpoints_dir` tidies
what a killed process left (temporary directories, a checkpoint moved aside while being replaced).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

FORMAT = "rl_agents.checkpoint"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
CHECKPOINTS_SUBDIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (missing, truncated, corrupt, or of another composition)."""


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


def write_checkpoint_dir(directory: Path, name: str, write_files: Callable[[Path], None]) -> Path:
    """Create ``directory/name`` atomically: ``write_files(tmp)`` fills a temporary directory, which
    replaces any checkpoint of that name; the ``latest`` pointer is switched to it just before."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == LATEST_FILE:
        raise ValueError(f"invalid checkpoint name {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=directory))
    try:
        write_files(tmp)
        fsync_dir(tmp)
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
            fsync_dir(directory)
        except BaseException:
            if previous and previous != name:
                _write_latest(directory, previous)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
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
    fsync_dir(directory)
