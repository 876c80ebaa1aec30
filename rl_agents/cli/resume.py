"""What ``rl-agents train --resume`` may change, checked before anything is written.

A resumed run continues the checkpoint's run: the same environment, agents, networks, seed and
schedule. Only the settings in :data:`RESUMABLE`, agents' learning rates and the options an agent
declares in ``resumable_settings`` (loss weights such as PPO's ``ent_coef``) may differ from the
config the checkpoint was saved with, and each is applied for real: the step budget, checkpoint
count and video cadence by the command; the logging cadence, failure options and agent options by
the trainer rebuilt from the new config (a checkpoint holds state, not settings); learning rates by
:func:`apply_learning_rates` after the optimizer state (which holds the old rates) is loaded. Any other
difference, whether from ``--set`` or from a hand-edited config.yaml, is refused by name.

config.yaml then records the config the resumed run uses, with one entry per resume under
``resumes`` (when, from which checkpoint, what changed, which damaged checkpoints were skipped).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from rl_agents.config.schema import RESUME_HISTORY_KEY
from rl_agents.core.agent import Agent

AgentClasses = Mapping[str, type[Agent]]  # the run's agents by name

# Settings a resumed run may change, and how the change takes effect.
RESUMABLE: dict[str, str] = {
    "steps": "the run's step budget (learning-rate annealing and exploration schedules follow it)",
    "checkpoints": "how many periodic checkpoints the whole run gets",
    "video_every": "how often a video is recorded (videos never touch the training state)",
    "stop_at_return": "the last-20 mean return at which training stops early",
    "device": "where the networks live (bit-exact continuation needs the same device type)",
    "trainer.log_interval": "how often metrics are logged",
    "trainer.max_env_restarts": "how many env failures are survived from the resume on",
    "trainer.skip_non_finite_updates": "whether NaN/inf minibatches are skipped instead of stopping",
    "distributed.ray_address": "which Ray cluster the workers join",
    "distributed.max_worker_restarts": "how many worker failures are survived from the resume on",
}
AGENT_RULE = "an agent's learning rates (<agent>.lr, <agent>.<name>_lr) and the options it declares resumable"
_ABSENT = "(not set)"


class ResumeRefused(ValueError):
    """A resumed run's config differs from its checkpoint's in a setting that cannot change."""


def is_resumable(key: str, agents: AgentClasses) -> bool:
    section, _, name = key.partition(".")
    if key in RESUMABLE:
        return True
    if section not in agents or "." in name:
        return False
    return name == "lr" or name.endswith("_lr") or name in agents[section].resumable_settings


def changes_learning_rates(changes: dict[str, tuple[Any, Any]], agents: AgentClasses) -> bool:
    """Whether any change is an agent's learning rate."""
    return any(key.split(".", 1)[0] in agents and key.endswith("lr") for key in changes)


def _flatten(config: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in config.items():
        if not prefix and key == RESUME_HISTORY_KEY:
            continue
        if isinstance(value, dict) and value:
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted.key: (saved value, new value)}`` for every setting that differs (absent on one side
    counts as a difference: an agent option given now that the saved run left to its default)."""
    before, after = dict(_flatten(saved)), dict(_flatten(new))
    keys = list(before) + [key for key in after if key not in before]
    return {
        key: (before.get(key, _ABSENT), after.get(key, _ABSENT))
        for key in keys
        if before.get(key, _ABSENT) != after.get(key, _ABSENT)
    }


def check_changes(changes: dict[str, tuple[Any, Any]], checkpoint_name: str, agents: AgentClasses) -> None:
    """Refuse the first change a resumed run cannot make, naming it and its two values."""
    for key, (old, new) in changes.items():
        if not is_resumable(key, agents):
            allowed = ", ".join([*RESUMABLE, *_declared(agents), AGENT_RULE])
            raise ResumeRefused(
                f"--resume cannot change {key} ({checkpoint_name} was saved with {old!r}, the config now says "
                f"{new!r}): it would not continue the same run; a resumed run may change only {allowed} "
                "(to change anything else, start a new run)"
            )


def _declared(agents: AgentClasses) -> list[str]:
    return [f"{name}.{option}" for name, cls in agents.items() for option in sorted(cls.resumable_settings)]


def apply_learning_rates(learner: Any, configured: list[float]) -> None:
    """Make ``configured`` (the base learning rates the rebuilt trainer's config gives, one per param
    group) the learner's, in place of the loaded ones, keeping how far annealing has got."""
    for index, (group, loaded_base, new_base) in enumerate(
        zip(learner.optimizer.param_groups, learner.base_lrs, configured)
    ):
        fraction = group["lr"] / loaded_base if loaded_base else 1.0
        group["lr"] = fraction * new_base
        learner.base_lrs[index] = new_base


def resume_record(
    step: int, checkpoint: str, changes: dict[str, tuple[Any, Any]], skipped: dict[str, str]
) -> dict[str, Any]:
    """One entry of config.yaml's ``resumes`` history."""
    record: dict[str, Any] = {
        "at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "step": step,
        "checkpoint": checkpoint,
    }
    if changes:
        record["changed"] = {key: {"from": old, "to": new} for key, (old, new) in changes.items()}
    if skipped:
        record["skipped_damaged"] = dict(skipped)
    return record
