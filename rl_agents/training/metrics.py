"""What the Trainer logs: the mean of every update metric since the last log, with episode, learning
rate and speed figures, every ``log_interval`` env steps (every update when it is 0)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from rl_agents.core.state import Apply, StateError, count, entry
from rl_agents.logging import Logger
from rl_agents.training.episodes import EpisodeStats


class MetricsLog:
    def __init__(self, loggers: list[Logger], log_interval: int):
        self.loggers = loggers
        self.log_interval = log_interval
        self.metrics: dict[str, float] = {}  # the last logged row
        self.num_logs = 0
        self.last_log_step = 0
        self.log_from_episode = 0  # the first finished episode the next log reports
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.start(0)

    def start(self, global_step: int) -> None:
        """Speed figures count from here (the start of ``train``)."""
        self._start_step, self._start_time = global_step, time.perf_counter()

    def accumulate(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, float) and math.isnan(value):
                continue
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def due(self, global_step: int) -> bool:
        return global_step - self.last_log_step >= self.log_interval

    def log(self, global_step: int, episodes: EpisodeStats, learning_rate: float, counters: dict[str, float]) -> None:
        """Log the mean of every metric since the last log, with episode and speed statistics, the
        learning rate and ``counters`` (totals so far)."""
        metrics = {key: total / self._counts[key] for key, total in self._sums.items()}
        self._sums, self._counts = {}, {}
        metrics.update(self._episode_metrics(episodes))
        metrics["charts/learning_rate"] = learning_rate
        metrics["charts/wall_time"] = time.perf_counter() - self._start_time
        metrics["charts/steps_per_second"] = (global_step - self._start_step) / max(
            time.perf_counter() - self._start_time, 1e-9
        )
        metrics.update(counters)
        self.metrics = metrics
        self.last_log_step = global_step
        self.num_logs += 1
        for logger in self.loggers:
            logger.log(global_step, metrics)

    def _episode_metrics(self, episodes: EpisodeStats) -> dict[str, float]:
        new_returns, new_lengths = episodes.since(self.log_from_episode)
        self.log_from_episode = episodes.num_episodes
        episodes.release(self.log_from_episode)  # reported: only the recent window need stay
        if not new_returns:
            return {}
        return {
            "episode/return_mean": float(np.mean(new_returns)),
            "episode/return_std": float(np.std(new_returns)),
            "episode/return_min": float(np.min(new_returns)),
            "episode/return_max": float(np.max(new_returns)),
            "episode/length_mean": float(np.mean(new_lengths)),
            "episode/count": float(len(new_returns)),
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "num_logs": self.num_logs,
            "last_log_step": self.last_log_step,
            "log_from_episode": self.log_from_episode,
            "pending_sums": dict(self._sums),
            "pending_counts": dict(self._counts),
            "metrics": {key: float(value) for key, value in self.metrics.items()},
        }

    def prepare_load(self, state: Any, episodes: int, first_kept: int = 0, where: str = "metrics") -> Apply:
        """Check a :meth:`state_dict` (``episodes``: how many episodes had finished in the loaded state,
        ``first_kept``: the first of them it keeps, see :class:`EpisodeStats`)."""
        num_logs, last_log_step, log_from = (
            count(state, key, where) for key in ("num_logs", "last_log_step", "log_from_episode")
        )
        if log_from > episodes:
            raise StateError(f"{where}: log_from_episode exceeds the number of episodes")
        if log_from < first_kept:
            raise StateError(f"{where}: log_from_episode names episodes ({log_from}) the state no longer keeps")
        sums, counts, metrics = (
            entry(state, key, dict, where) for key in ("pending_sums", "pending_counts", "metrics")
        )
        for name, values, kind in (
            ("pending_sums", sums, (int, float)),
            ("pending_counts", counts, int),
            ("metrics", metrics, (int, float)),
        ):
            if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values.values()):
                raise StateError(f"{where}: {name} must map names to numbers")

        def apply() -> None:
            self.num_logs, self.last_log_step, self.log_from_episode = num_logs, last_log_step, log_from
            self._sums = {k: float(v) for k, v in sums.items()}
            self._counts = {k: int(v) for k, v in counts.items()}
            self.metrics = {k: float(v) for k, v in metrics.items()}

        return apply
