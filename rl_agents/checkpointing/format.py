"""The checkpoint file format: a tree of state dicts as safetensors + JSON, never pickled.

A checkpoint directory holds two files:

``tensors.safetensors``
    Every tensor of the tree, named by its path in the tree (``agents/ppo/actor.0.weight``).
``state.json``
    The rest of the tree as it is, each tensor replaced by ``{"$tensor": "<its name>"}``, under
    ``state``; beside it the format, its version, the torch version, the SHA-256 and size of the
    tensors file, and ``state_sha256``: the SHA-256 of the document itself (without that key) in
    canonical JSON, so that an edit or a flipped bit in state.json is caught like one in the tensors.

The tree is whatever the caller's ``state_dict()`` returns (dicts with string keys; lists; numbers,
strings, booleans, None; tensors): this module knows nothing of trainers. Anything else (an object that
only pickle could store) is refused by its path. Reading never unpickles: JSON goes through
:mod:`json`, tensors through :func:`safetensors.torch.load_file`, and a missing, truncated or corrupt
file, a link or special file in place of one, a checksum that does not match, or a tensor named but
absent (or present but not named) raises :class:`CheckpointError` naming the file; so does a failed
write (a full disk, no permission), which leaves no partial checkpoint behind.

A run's newest checkpoint that is damaged is reported, never passed over for an older one in
silence: :func:`read_checkpoint` reads an older one only when asked to (``skip_damaged``), and
says which it skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rl_agents.checkpointing.files import (
    FORMAT,
    MAX_STATE_BYTES,
    STATE_FILE,
    TENSORS_FILE,
    CheckpointError,
    checkpoints_to_read,
    fsync_file,
    is_checkpoint_dir,
    regular_file_problem,
    sha256_of,
    write_checkpoint_dir,
    write_synced,
)

VERSION = 2
TENSOR_MARKER = "$tensor"
MAX_DEPTH = 64  # state trees are a few levels deep; deeper JSON is refused before it is walked
STATE_CHECKSUM = "state_sha256"


class DamagedCheckpointError(CheckpointError):
    """The newest checkpoint of a run cannot be read; ``older`` checkpoints exist beside it."""

    def __init__(self, message: str, older: int):
        super().__init__(message)
        self.older = older


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------------------------------------- tree <-> files
def split_tree(tree: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(JSON tree with tensor markers, {name: CPU tensor})``; TypeError names what cannot be saved."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            name = path or "tensor"
            if name in tensors:
                raise TypeError(f"{path}: two tensors would be saved under one name")
            # A fresh contiguous copy: safetensors refuses tensors that share memory (tied weights, views).
            tensors[name] = node.detach().to("cpu", copy=True).contiguous()
            return {TENSOR_MARKER: name}
        if isinstance(node, dict):
            for key in node:
                if not isinstance(key, str):
                    raise TypeError(f"{path or 'state'}: cannot be saved: dict key {key!r} is not a string")
                if key == TENSOR_MARKER:
                    raise TypeError(
                        f"{path or 'state'}: the key {TENSOR_MARKER!r} is reserved by the checkpoint format"
                    )
            return {key: walk(value, f"{path}/{key}" if path else key) for key, value in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(value, f"{path}/{index}") for index, value in enumerate(node)]
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"{path}: cannot be saved as JSON ({type(node).__name__}); checkpoints never pickle")

    return walk(tree, ""), tensors


def join_tree(skeleton: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    """The inverse of :func:`split_tree`: every marker replaced by its tensor, each tensor used once."""
    used: set[str] = set()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if TENSOR_MARKER in node:
                name = node[TENSOR_MARKER]
                if len(node) != 1 or not isinstance(name, str):
                    raise CheckpointError(
                        f"{where / STATE_FILE}: a {TENSOR_MARKER!r} entry must hold only a tensor name"
                    )
                if name not in tensors:
                    raise CheckpointError(f"{where / TENSORS_FILE}: missing tensor {name!r}")
                used.add(name)
                return tensors[name]
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        return node

    tree = walk(skeleton)
    unused = sorted(set(tensors) - used)
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise CheckpointError(
            f"{where / TENSORS_FILE}: holds tensor {unused[0]!r} that {STATE_FILE} does not name{more}"
        )
    return tree


# ---------------------------------------------------------------------------------------------- saving
def save_checkpoint(tree: dict[str, Any], checkpoints_dir: str | os.PathLike, *, name: str) -> Path:
    """Write ``tree`` to ``<checkpoints_dir>/<name>`` atomically (replacing a checkpoint of that name)
    and point ``latest`` at it; returns its path. TypeError, before anything is written, when a part
    of the tree cannot be saved."""
    skeleton, tensors = split_tree(tree)

    def write_files(directory: Path) -> None:
        tensors_path = directory / TENSORS_FILE
        save_file(tensors, str(tensors_path), metadata={"format": FORMAT, "version": str(VERSION)})
        fsync_file(tensors_path)
        document = {
            "format": FORMAT,
            "version": VERSION,
            "torch_version": torch.__version__,
            "tensors_sha256": sha256_of(tensors_path),
            "tensors_bytes": tensors_path.stat().st_size,
            "state": skeleton,
        }
        document[STATE_CHECKSUM] = document_sha256(document)
        write_synced(directory / STATE_FILE, json.dumps(document, indent=1, allow_nan=True).encode("utf-8"))

    try:
        return write_checkpoint_dir(Path(checkpoints_dir), name, write_files)
    except (OSError, SafetensorError) as error:
        filename = getattr(error, "filename", None)
        where = f" ({filename})" if filename else ""
        reason = getattr(error, "strerror", None) or _one_line(error)
        raise CheckpointError(f"{Path(checkpoints_dir) / name}: cannot be written: {reason}{where}") from error


def document_sha256(document: dict[str, Any]) -> str:
    """SHA-256 of ``document`` as canonical JSON (sorted keys, no spaces): the same for the document
    written and the document read back, whatever its indentation."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- reading
def read_checkpoint(
    path: str | os.PathLike,
    *,
    skip_damaged: bool = False,
    on_skip: Callable[[Path, str], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """``(checkpoint directory, state tree)`` of a checkpoint, or of a run's newest one, after
    verifying both files; never unpickles.

    When a run's newest checkpoint is damaged, :class:`DamagedCheckpointError` names the file and what
    is wrong with it; with ``skip_damaged`` the newest intact one is read instead and ``on_skip``
    hears of every damaged one passed over (path, reason).
    """
    path = Path(path)
    if is_checkpoint_dir(path):
        return path, read_checkpoint_files(path)
    candidates = checkpoints_to_read(path)
    for index, candidate in enumerate(candidates):
        try:
            return candidate, read_checkpoint_files(candidate)
        except CheckpointError as error:
            if not skip_damaged:
                raise DamagedCheckpointError(str(error), older=len(candidates) - index - 1) from None
            if on_skip is not None:
                on_skip(candidate, str(error))
    raise CheckpointError(f"{path}: every checkpoint is damaged ({len(candidates)} checked)")


def read_checkpoint_files(directory: Path) -> dict[str, Any]:
    """The state tree of one checkpoint directory, after verifying both files."""
    document = read_state_file(directory / STATE_FILE)
    tensors_path = directory / TENSORS_FILE
    problem = regular_file_problem(tensors_path)
    if problem:
        raise CheckpointError(f"{tensors_path}: {problem}")
    size = tensors_path.stat().st_size
    if size != document["tensors_bytes"]:
        raise CheckpointError(
            f"{tensors_path}: {size} bytes, "
            f"but {STATE_FILE} recorded {document['tensors_bytes']} (truncated or replaced)"
        )
    if sha256_of(tensors_path) != document["tensors_sha256"]:
        raise CheckpointError(
            f"{tensors_path}: SHA-256 does not match the one recorded in {STATE_FILE} (corrupt or replaced)"
        )
    try:
        tensors = load_file(str(tensors_path), device="cpu")
    except Exception as error:
        raise CheckpointError(f"{tensors_path}: not a readable safetensors file ({_one_line(error)})") from None
    return join_tree(document["state"], tensors, directory)


def read_state_file(path: Path) -> dict[str, Any]:
    """``state.json``, checked for what the format itself promises (its contents are the caller's to check)."""
    problem = regular_file_problem(path, MAX_STATE_BYTES)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        text = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({_one_line(error)})") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(document).__name__}")
    if document.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rl_agents checkpoint (format {document.get('format')!r})")
    version = document.get("version")
    if version == 1:
        raise CheckpointError(
            f"{path}: a checkpoint of the earlier format (version 1, before the trainer's state became a tree of "
            f"state dicts); this version of rl-agents reads format version {VERSION} only"
        )
    if version != VERSION:
        raise CheckpointError(f"{path}: format version {version!r} is not supported (this library reads {VERSION})")
    for key, kind in (("tensors_sha256", str), ("tensors_bytes", int), ("state", dict)):
        if not isinstance(document.get(key), kind) or isinstance(document.get(key), bool):
            raise CheckpointError(f"{path}: key {key!r} is missing or has the wrong type")
    if not re.fullmatch(r"[0-9a-f]{64}", document["tensors_sha256"]):
        raise CheckpointError(f"{path}: tensors_sha256 is not a SHA-256 hex digest")
    if _depth(document["state"]) > MAX_DEPTH:
        raise CheckpointError(f"{path}: state is nested more than {MAX_DEPTH} levels deep")
    recorded = document.pop(STATE_CHECKSUM, None)
    if recorded is not None and recorded != document_sha256(document):
        raise CheckpointError(f"{path}: SHA-256 of its contents does not match the one it records (edited or corrupt)")
    return document


def _depth(node: Any) -> int:
    """Nesting depth, without recursion (a hostile file may nest far deeper than the stack)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, level + 1) for child in children)
    return deepest


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The run config stored in a checkpoint (None when it had none)."""
    _, tree = read_checkpoint(path)
    run = tree.get("run")
    return run.get("config") if isinstance(run, dict) else None
