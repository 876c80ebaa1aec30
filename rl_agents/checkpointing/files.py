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
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

FORMAT = "rl_agents.checkpoint"
TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
LATEST_FILE = "latest"
CHECKPOINTS_SUBDIR = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")
# state.json holds the tree without its tensors: counters, settings, bounded episode statistics.
# Far larger is not a checkpoint of ours; reading it whole could exhaust memory.
MAX_STATE_BYTES = 64 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (missing, truncated, corrupt, or of another composition)."""


def step_dir_name(global_step: int) -> str:
    return f"step_{global_step:09d}"


def checkpoints_dir_of(path: str | os.PathLike) -> Path:
    """``run/checkpoints`` for a run directory that has one, else ``path`` itself."""
    path = Path(path)
    return path / CHECKPOINTS_SUBDIR if (path / CHECKPOINTS_SUBDIR).is_dir() else path


def regular_file_problem(path: Path, max_bytes: int | None = None) -> str | None:
    """Why ``path`` cannot be read as a checkpoint file (missing, a link, a device or FIFO, too large),
    or None. Checked with ``lstat`` before opening: opening a FIFO would block, a link may name anything."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link (checkpoint files are never links; refusing to follow it)"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if max_bytes is not None and info.st_size > max_bytes:
        return f"is {info.st_size:,} bytes, more than the {max_bytes:,} this file can be"
    return None


def _is_complete(directory: Path) -> bool:
    """Whether ``directory`` holds both files and a state.json of this format (a quick check, not a
    verification: :func:`rl_agents.checkpointing.format.read_checkpoint` verifies)."""
    state = directory / STATE_FILE
    if regular_file_problem(state, MAX_STATE_BYTES) or regular_file_problem(directory / TENSORS_FILE):
        return False
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def is_checkpoint_dir(path: Path) -> bool:
    """A directory that is, or was meant to be, a checkpoint: it holds either file (intact or not)."""
    return path.is_dir() and (os.path.lexists(path / STATE_FILE) or os.path.lexists(path / TENSORS_FILE))


def checkpoint_candidates(run_or_checkpoints_dir: str | os.PathLike) -> list[Path]:
    """Every checkpoint under a run or checkpoints directory, newest first, intact or damaged.

    Newest is what the ``latest`` pointer names (the last checkpoint written), then ``step_*`` by
    step, then any other names (``last_good``, a user's own) by modification time. A pointer that
    names nothing is skipped: a process killed between switching it and renaming the checkpoint into
    place leaves one. A path that is itself a checkpoint is the one candidate.
    """
    path = Path(run_or_checkpoints_dir)
    if not path.is_dir():
        return []
    if is_checkpoint_dir(path):
        return [path]
    directory = checkpoints_dir_of(path)
    # Names starting with a dot are a save in progress (.tmp-*) or one being replaced (.old-*).
    found = [child for child in directory.iterdir() if not child.name.startswith(".") and is_checkpoint_dir(child)]
    pointed = _read_latest(directory)

    def newest_first(child: Path) -> tuple[int, int, float]:
        if child.name == pointed:
            return (0, 0, 0.0)
        match = _STEP_DIR.match(child.name)
        if match:
            return (1, -int(match.group(1)), 0.0)
        return (2, 0, -child.stat().st_mtime)

    return sorted(found, key=newest_first)


def latest_checkpoint(run_or_checkpoints_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint (see :func:`checkpoint_candidates`) under a run or checkpoints directory,
    or None. It is not verified: a damaged newest checkpoint is returned, so that readers report it
    instead of silently taking an older one."""
    candidates = checkpoint_candidates(run_or_checkpoints_dir)
    return candidates[0] if candidates else None


def recover_checkpoints_dir(checkpoints_dir: str | os.PathLike) -> None:
    """Tidy what a process killed while saving left in a checkpoints directory.

    Only for a directory no process is saving into (e.g. before resuming a run). A checkpoint being
    replaced that was moved aside (``.old-<name>-*/<name>``) but not yet replaced is moved back;
    temporary ``.tmp-*`` and ``.old-*`` entries are removed; a ``latest`` pointer that names nothing is
    rewritten to the newest checkpoint (or removed if there is none). A damaged checkpoint is left as
    it is, for the reader to report.
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
    """A checkpoint directory itself, or the newest checkpoint of a run/checkpoints directory."""
    return checkpoints_to_read(path)[0]


def checkpoints_to_read(path: str | os.PathLike) -> list[Path]:
    """:func:`checkpoint_candidates` of ``path``, newest first; CheckpointError when there are none."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint directory")
    candidates = checkpoint_candidates(path)
    if not candidates:
        raise CheckpointError(f"{path}: contains no checkpoint ({STATE_FILE} + {TENSORS_FILE})")
    return candidates


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
