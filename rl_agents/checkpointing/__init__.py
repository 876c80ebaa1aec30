"""Checkpoints: a tree of state dicts as safetensors + JSON (:mod:`.format`), in directories written
atomically with a ``latest`` pointer (:mod:`.files`)."""

from rl_agents.checkpointing.files import (
    CHECKPOINTS_SUBDIR,
    LATEST_FILE,
    STATE_FILE,
    TENSORS_FILE,
    CheckpointError,
    checkpoint_candidates,
    checkpoints_dir_of,
    latest_checkpoint,
    recover_checkpoints_dir,
    resolve_checkpoint,
    step_dir_name,
)
from rl_agents.checkpointing.format import (
    VERSION,
    DamagedCheckpointError,
    read_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)

__all__ = [
    "CHECKPOINTS_SUBDIR",
    "LATEST_FILE",
    "STATE_FILE",
    "TENSORS_FILE",
    "VERSION",
    "CheckpointError",
    "DamagedCheckpointError",
    "checkpoint_candidates",
    "checkpoints_dir_of",
    "latest_checkpoint",
    "read_checkpoint",
    "read_checkpoint_config",
    "recover_checkpoints_dir",
    "resolve_checkpoint",
    "save_checkpoint",
    "step_dir_name",
]
