"""Episode statistics: totals over every finished episode, the returns and lengths of the most recent
ones, and the per-env accumulators of the episodes still running."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rl_agents.core.state import Apply, StateError, count, entry, numbers

# How many of the most recent finished episodes are kept, in memory and in checkpoints (besides those
# the next metrics log has yet to report, see EpisodeStats.keep_from). Readers of recent returns take
# at most the last 100 (the progress bar and the command line's summary 20, the benchmarks 100), so
# 1000 leaves room, while a run of any length keeps at most this many: keeping all, 100M steps of
# 20-step episodes (5M episodes, ~70 bytes each) took ~350 MB, and ~200 MB of JSON in every checkpoint.
RECENT_EPISODES = 1000


@dataclass
class EpisodeStats:
    """Finished episodes: totals over all of them, and the most recent ones in the order they ended
    (``end_steps``: the global step each ended at).

    ``returns``, ``lengths`` and ``end_steps`` keep the last ``window`` episodes plus every one from
    ``keep_from`` on (the metrics log moves ``keep_from`` on as it reports episodes; until it first
    does, all are kept). ``window=None`` keeps every episode, for code that wants a whole run's
    history (memory then grows with the run).
    """

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    end_steps: list[int] = field(default_factory=list)
    num_episodes: int = 0  # every episode that finished, kept or not
    best_return: float | None = None  # the highest return of them all (None before the first)
    total_length: int = 0  # env steps in all finished episodes
    keep_from: int = 0  # the index (in num_episodes) from which episodes are kept whatever the window
    window: int | None = RECENT_EPISODES

    @property
    def first_kept(self) -> int:
        """The index (counting every finished episode) of ``returns[0]``."""
        return self.num_episodes - len(self.returns)

    def add(self, returns: list[float], lengths: list[int], end_step: int) -> None:
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        self.end_steps.extend([end_step] * len(returns))
        best = self.best_return
        for value in returns:  # as max() over every return in the order they ended
            if best is None or value > best:
                best = value
        self.best_return = best
        self.num_episodes += len(returns)
        self.total_length += int(sum(lengths))
        self._trim()

    def since(self, index: int) -> tuple[list[float], list[int]]:
        """The returns and lengths of the episodes from ``index`` (counting every finished episode) on."""
        if index < self.first_kept:
            raise ValueError(f"episodes from {index} on were asked for, but the first kept is {self.first_kept}")
        start = index - self.first_kept
        return self.returns[start:], self.lengths[start:]

    def release(self, index: int) -> None:
        """The episodes before ``index`` need only be kept while they are among the last ``window``."""
        self.keep_from = index
        self._trim()

    def recent_return(self, window: int = 20) -> float:
        recent = self.returns[-window:]
        return float(np.mean(recent)) if recent else float("nan")

    def _trim(self) -> None:
        if self.window is None:
            return
        drop = min(self.keep_from, self.num_episodes - self.window) - self.first_kept
        if drop > 0:
            del self.returns[:drop], self.lengths[:drop], self.end_steps[:drop]

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_episodes": self.num_episodes,
            "best_return": None if self.best_return is None else float(self.best_return),
            "total_length": int(self.total_length),
            "keep_from": self.keep_from,
            "returns": [float(x) for x in self.returns],
            "lengths": [int(x) for x in self.lengths],
            "end_steps": [int(x) for x in self.end_steps],
        }

    def prepare_load(self, state: Any, where: str = "episodes") -> Apply:
        """Check a :meth:`state_dict`, or the form checkpoints had before :data:`RECENT_EPISODES`
        (every episode's return, length and end step, and no totals): its totals are taken from
        those lists, and all of them are kept until the metrics log has reported them."""
        returns = [float(x) for x in numbers(state, "returns", (int, float), None, where, "numbers")]
        lengths = numbers(state, "lengths", int, None, where, "whole numbers")
        end_steps = numbers(state, "end_steps", int, None, where, "whole numbers")
        if not len(returns) == len(lengths) == len(end_steps):
            raise StateError(f"{where}: returns, lengths and end_steps have different lengths")
        if "num_episodes" in state:
            num_episodes, total_length, keep_from = (
                count(state, key, where) for key in ("num_episodes", "total_length", "keep_from")
            )
            best = entry(state, "best_return", (int, float, type(None)), where)
            if len(returns) > num_episodes:
                raise StateError(f"{where}: keeps {len(returns)} episodes, but num_episodes is {num_episodes}")
            if not num_episodes - len(returns) <= keep_from <= num_episodes:
                raise StateError(f"{where}: keep_from ({keep_from}) names an episode that is not kept")
            if (best is None) != (num_episodes == 0):
                raise StateError(f"{where}: best_return must be a number once an episode finished, null before")
        else:  # the unbounded form
            num_episodes, total_length, keep_from = len(returns), sum(lengths), 0
            best = max(returns) if returns else None

        def apply() -> None:
            self.returns[:], self.lengths[:], self.end_steps[:] = returns, lengths, end_steps
            self.num_episodes, self.total_length, self.keep_from = num_episodes, total_length, keep_from
            self.best_return = None if best is None else float(best)
            self._trim()

        return apply


def episode_counts(state: dict[str, Any]) -> tuple[int, int]:
    """(the index of the first kept episode, the number of finished episodes) of an
    :meth:`EpisodeStats.state_dict` that :meth:`EpisodeStats.prepare_load` accepted."""
    num_episodes = state.get("num_episodes", len(state["returns"]))
    return num_episodes - len(state["returns"]), num_episodes


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
        ended = np.flatnonzero(done & valid)
        if ended.size:
            recorded = info.get("episode") if "_episode" in info else None
            returns, lengths = [], []
            for index in ended:
                if recorded is not None and info["_episode"][index]:
                    returns.append(float(recorded["r"][index]))
                    lengths.append(int(recorded["l"][index]))
                else:
                    returns.append(float(self.running_return[index]))
                    lengths.append(int(self.running_length[index]))
            self.finished.add(returns, lengths, end_step)
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


__all__ = ["RECENT_EPISODES", "EpisodeStats", "EpisodeTracker", "episode_counts"]
