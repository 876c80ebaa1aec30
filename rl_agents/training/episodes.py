"""Episode statistics: the returns and lengths of finished episodes, and the per-env accumulators of
the episodes still running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl_agents.core.state import Apply, StateError, entry, numbers


@dataclass
class EpisodeStats:
    """Finished episodes, in the order they ended; ``end_steps`` is the global step each ended at."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    end_steps: list[int] = field(default_factory=list)

    def add(self, returns: list[float], lengths: list[int], end_step: int) -> None:
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        self.end_steps.extend([end_step] * len(returns))

    def recent_return(self, window: int = 20) -> float:
        recent = self.returns[-window:]
        return float(np.mean(recent)) if recent else float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {
            "returns": [float(x) for x in self.returns],
            "lengths": [int(x) for x in self.lengths],
            "end_steps": [int(x) for x in self.end_steps],
        }

    def prepare_load(self, state: Any, where: str = "episodes") -> Apply:
        returns = numbers(state, "returns", (int, float), None, where, "numbers")
        lengths = numbers(state, "lengths", int, None, where, "whole numbers")
        end_steps = numbers(state, "end_steps", int, None, where, "whole numbers")
        if not len(returns) == len(lengths) == len(end_steps):
            raise StateError(f"{where}: returns, lengths and end_steps have different lengths")

        def apply() -> None:
            self.returns[:] = [float(x) for x in returns]
            self.lengths[:] = lengths
            self.end_steps[:] = end_steps

        return apply


class EpisodeTracker:
    """Accumulates each env's running episode and records it in :attr:`finished` when it ends.

    Returns are summed from the rewards seen, or taken from ``info["episode"]`` when a
    RecordEpisodeStatistics wrapper reports them (its raw returns survive reward clipping).
    """

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.finished = EpisodeStats()
        self.running_return = np.zeros(num_envs, dtype=np.float64)
        self.running_length = np.zeros(num_envs, dtype=np.int64)

    def track(
        self, reward: np.ndarray, done: np.ndarray, valid: np.ndarray, info: dict[str, Any], end_step: int
    ) -> None:
        self.running_return += np.where(valid, reward, 0.0)
        self.running_length += valid
        recorded = info.get("episode") if "_episode" in info else None
        finished = self.finished
        for index in np.flatnonzero(done & valid):
            if recorded is not None and info["_episode"][index]:
                finished.returns.append(float(recorded["r"][index]))
                finished.lengths.append(int(recorded["l"][index]))
            else:
                finished.returns.append(float(self.running_return[index]))
                finished.lengths.append(int(self.running_length[index]))
            finished.end_steps.append(end_step)
        self.running_return[done] = 0.0
        self.running_length[done] = 0

    def restart_all(self) -> None:
        """Every env starts a new episode: the running ones are abandoned, not recorded."""
        self.running_return[:] = 0.0
        self.running_length[:] = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "finished": self.finished.state_dict(),
            "running_return": [float(x) for x in self.running_return],
            "running_length": [int(x) for x in self.running_length],
        }

    def prepare_load(self, state: Any, where: str) -> Apply:
        apply_finished = self.finished.prepare_load(entry(state, "finished", dict, where), f"{where}.finished")
        per_env = f"one number per env ({self.num_envs})"
        running_return = numbers(state, "running_return", (int, float), self.num_envs, where, per_env)
        running_length = numbers(state, "running_length", int, self.num_envs, where, per_env)

        def apply() -> None:
            apply_finished()
            self.running_return = np.asarray(running_return, dtype=np.float64)
            self.running_length = np.asarray(running_length, dtype=np.int64)

        return apply


__all__ = ["EpisodeStats", "EpisodeTracker"]
