"""The command line's errors: a usage problem as one line, and the line that says why training stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_agents.envs import EnvError


class CommandError(ValueError):
    """A command-line usage problem reported as one line."""


def training_stopped(error: Exception, trainer: Any, run_dir: Path) -> str:
    """One line: why training stopped, where the last good state was saved, how to go on."""
    what = " ".join(str(error).split())
    saved = getattr(error, "checkpoint", None)
    if saved is not None:
        where = f"the last good state was saved to {saved} (continue with: rl-agents train --resume {run_dir})"
    else:
        notes = " ".join(" ".join(getattr(error, "__notes__", []) or []).split())
        where = f"no checkpoint was saved ({notes or 'nothing to save'})"
    hint = "; --set trainer.max_env_restarts=N restarts failed environments" if isinstance(error, EnvError) else ""
    return f"training stopped at step {trainer.global_step}: {what}; {where}{hint}"
