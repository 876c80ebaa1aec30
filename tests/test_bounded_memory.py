"""Memory that does not grow with the length of a run: metrics.csv is streamed to disk, and the episode
statistics keep totals and a window of recent episodes (in memory and in checkpoints)."""

from __future__ import annotations

import gc
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import PPO, Trainer
from rl_agents.core.state import StateError
from rl_agents.logging import CSVLogger, read_rows
from rl_agents.training.episodes import RECENT_EPISODES, EpisodeStats
from rl_agents.training.metrics import MetricsLog

torch.set_num_threads(1)


def python_heap_growth(warmup: Callable[[], None], run: Callable[[], None]) -> int:
    """Bytes of Python heap that ``run`` leaves allocated, measured after ``warmup`` (which fills
    whatever is allowed to fill: caches, the episode window, the csv module's state)."""
    tracemalloc.start()
    try:
        warmup()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------- long runs
def test_logging_a_long_run_keeps_the_python_heap_flat(tmp_path: Path) -> None:
    """What the Trainer does once per update, many times over: episodes finish, the metrics log
    reports them and the CSV logger writes the row. 1500 updates (~7k episodes) after the warm-up
    leave less than 64 KB behind; keeping every row and episode (the old way) left ~1.4 MB."""
    episodes = EpisodeStats()
    metrics_log = MetricsLog([CSVLogger(tmp_path / "metrics.csv")], log_interval=0)
    rng = np.random.default_rng(0)
    step = 0

    def updates(count: int) -> None:
        nonlocal step
        for _ in range(count):
            step += 64
            finished = int(rng.integers(0, 10))
            episodes.add(
                [float(x) for x in rng.normal(size=finished)], [int(x) for x in rng.integers(1, 50, finished)], step
            )
            metrics_log.accumulate({"loss/policy": float(rng.normal()), "loss/value": float(rng.normal())})
            metrics_log.log(step, episodes, 3e-4, {"trainer/updates": float(step // 64)})

    growth = python_heap_growth(lambda: updates(RECENT_EPISODES * 3 // 10), lambda: updates(1500))
    assert growth < 64 * 1024, f"the Python heap grew by {growth / 1024:.0f} KB over 1500 updates"
    assert len(episodes.returns) == RECENT_EPISODES < episodes.num_episodes
    assert metrics_log.loggers[0].num_rows == step // 64


class OneStepEpisodes(gym.Env):
    """Every episode ends after one step: many finished episodes for few steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), float(action), True, False, {}


def test_a_trainer_on_a_long_run_keeps_the_python_heap_flat(tmp_path: Path) -> None:
    """A tiny PPO logging every update to metrics.csv, 150 updates after a warm-up that fills the
    episode window: less than 128 KB of Python heap stays behind (the old way: ~330 KB)."""
    envs = gym.vector.SyncVectorEnv([OneStepEpisodes for _ in range(4)])
    trainer = Trainer(
        envs,
        [PPO(hidden=(8,))],
        seed=0,
        loggers=[CSVLogger(tmp_path / "metrics.csv")],
        num_steps=2,
        num_epochs=1,
        num_minibatches=1,
    )
    trainer.episodes.window = 50  # the window fills within the warm-up (whatever RECENT_EPISODES is)
    per_update = 2 * 4

    def train(updates: int) -> None:
        trainer.train(trainer.global_step + updates * per_update, progress=False)

    growth = python_heap_growth(lambda: train(30), lambda: train(150))
    assert growth < 128 * 1024, f"the Python heap grew by {growth / 1024:.0f} KB over 150 updates"
    assert trainer.episodes.num_episodes > 300 and len(trainer.episodes.returns) == 50
    envs.close()


# ---------------------------------------------------------------------------------------------- CSVLogger
def test_a_new_column_rewrites_the_file_with_the_wider_header(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    logger = CSVLogger(path)
    logger.log(64, {"a": 1.0})
    logger.log(128, {"a": 2.5})
    assert path.read_bytes() == b"global_step,a\r\n64.0,1.0\r\n128.0,2.5\r\n"
    logger.log(192, {"b": 3, "a": float("nan")})
    assert path.read_bytes() == b"global_step,a,b\r\n64.0,1.0,\r\n128.0,2.5,\r\n192.0,,3\r\n"
    assert (logger.columns, logger.num_rows) == (["global_step", "a", "b"], 3)
    assert not path.with_suffix(".csv.tmp").exists()


def test_rows_of_an_earlier_process_are_rewritten_from_their_numbers(tmp_path: Path) -> None:
    """As when every row was held in memory: rows read back from the file are numbers ("5" is
    rewritten "5.0"), the rows logged since are rewritten as they were logged (7 stays "7")."""
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"global_step,a\r\n64,5\r\n")
    logger = CSVLogger(path)
    assert path.read_bytes() == b"global_step,a\r\n64,5\r\n"  # intact: left as it is
    logger.log(128, {"a": 7})
    logger.log(192, {"a": 8.0, "b": 1.0})
    assert path.read_bytes() == b"global_step,a,b\r\n64.0,5.0,\r\n128.0,7,\r\n192.0,8.0,1.0\r\n"


def test_truncate_drops_the_rows_after_the_step_and_leaves_an_untouched_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    logger = CSVLogger(path)
    for step in (64, 128, 192):
        logger.log(step, {"a": step / 64})
    inode = path.stat().st_ino
    logger.truncate(192)
    assert path.stat().st_ino == inode  # nothing to drop: not rewritten
    resumed = CSVLogger(path)
    resumed.truncate(100)
    assert path.read_bytes() == b"global_step,a\r\n64.0,1.0\r\n"
    assert resumed.num_rows == 1
    resumed.log(128, {"a": 9.0})
    resumed.truncate(128)
    assert path.read_bytes() == b"global_step,a\r\n64.0,1.0\r\n128.0,9.0\r\n"
    resumed.truncate(64)
    assert path.read_bytes() == b"global_step,a\r\n64.0,1.0\r\n"


def test_a_line_cut_short_and_rows_that_do_not_parse_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_bytes(
        b"global_step,a,b\r\n64.0,1.0,2.0\r\n96.0,x,1.0\r\n100.0,1,2,3\r\n,1.0,2.0\r\n128.0,3.0\r\n192.0,5."
    )
    logger = CSVLogger(path)
    assert path.read_bytes() == b"global_step,a,b\r\n64.0,1.0,2.0\r\n128.0,3.0,\r\n"
    assert [row["global_step"] for row in read_rows(path)] == [64.0, 128.0]
    assert logger.num_rows == 2
    logger.log(192, {"a": 5.0, "b": 6.0})
    assert path.read_bytes() == b"global_step,a,b\r\n64.0,1.0,2.0\r\n128.0,3.0,\r\n192.0,5.0,6.0\r\n"


def test_reading_a_large_metrics_csv_does_not_load_it_into_memory(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    columns = [f"metric_{index}" for index in range(10)]
    with path.open("w", newline="") as handle:
        handle.write(",".join(["global_step", *columns]) + "\r\n")
        for step in range(1, 5001):
            handle.write(",".join([repr(float(step)), *(repr(step / 7) for _ in columns)]) + "\r\n")
        handle.write("5001.0,0.5")  # cut short: the file is rewritten on opening
    size = path.stat().st_size
    tracemalloc.start()
    try:
        logger = CSVLogger(path)
        logger.log(5002, {"new_metric": 1.0})  # rewritten again, with the wider header
        logger.truncate(2500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size > 800_000 and peak < 512 * 1024, (
        f"peak {peak / 1024:.0f} KB while streaming a {size / 1024:.0f} KB file"
    )
    assert logger.num_rows == 2500 and logger.columns[-1] == "new_metric"
    assert path.read_text().splitlines()[-1] == "2500.0," + ",".join(repr(2500 / 7) for _ in columns) + ","


# ---------------------------------------------------------------------------------------------- EpisodeStats
def test_episode_stats_keep_totals_and_a_window_of_recent_episodes() -> None:
    stats = EpisodeStats(window=3)
    stats.add([1.0, 5.0], [10, 11], end_step=100)
    stats.add([2.0, -1.0, 4.0], [12, 13, 14], end_step=200)
    # nothing reported yet: every episode is kept for the next metrics log
    assert (stats.returns, stats.first_kept) == ([1.0, 5.0, 2.0, -1.0, 4.0], 0)
    assert stats.since(1) == ([5.0, 2.0, -1.0, 4.0], [11, 12, 13, 14])
    stats.release(4)
    assert (stats.returns, stats.lengths, stats.end_steps) == ([2.0, -1.0, 4.0], [12, 13, 14], [200, 200, 200])
    assert (stats.num_episodes, stats.best_return, stats.total_length, stats.first_kept) == (5, 5.0, 60, 2)
    stats.add([3.0], [15], end_step=300)
    assert stats.returns == [-1.0, 4.0, 3.0]  # episode 4 on is kept: the next log reports it
    assert stats.since(4) == ([4.0, 3.0], [14, 15])
    with pytest.raises(ValueError, match="first kept is 3"):
        stats.since(2)
    assert stats.recent_return(2) == 3.5


def test_best_return_is_what_max_over_every_return_gives() -> None:
    for returns in ([1.0, float("nan"), 2.0], [float("nan"), 3.0], [-2.0, -3.0]):
        stats = EpisodeStats(window=1)
        for value in returns:
            stats.add([value], [1], 0)
            stats.release(stats.num_episodes)
        expected = max(returns)
        assert stats.best_return == expected or (math.isnan(expected) and math.isnan(stats.best_return))
    assert EpisodeStats().best_return is None


def test_episode_stats_state_round_trip() -> None:
    stats = EpisodeStats(window=4)
    stats.add([float(x) for x in range(10)], [1] * 10, end_step=50)
    stats.release(8)
    stats.add([20.0, 21.0], [2, 2], end_step=60)
    state = stats.state_dict()
    assert state == {
        "num_episodes": 12,
        "best_return": 21.0,
        "total_length": 14,
        "keep_from": 8,
        "returns": [8.0, 9.0, 20.0, 21.0],
        "lengths": [1, 1, 2, 2],
        "end_steps": [50, 50, 60, 60],
    }
    restored = EpisodeStats(window=4)
    restored.prepare_load(state)()
    assert restored == stats and restored.state_dict() == state


def test_the_unbounded_episodes_state_of_older_checkpoints_still_loads() -> None:
    """Every episode, no totals: counted whole, kept until the metrics log reports them, then trimmed."""
    returns = [float(x % 7) for x in range(2500)]
    old = {"returns": returns, "lengths": [3] * 2500, "end_steps": list(range(2500))}
    stats = EpisodeStats()
    stats.prepare_load(old)()
    assert (stats.num_episodes, stats.best_return, stats.total_length, stats.first_kept) == (2500, 6.0, 7500, 0)
    assert stats.since(2000) == (returns[2000:], [3] * 500)
    stats.release(2500)
    assert stats.returns == returns[-RECENT_EPISODES:] and stats.end_steps == list(range(1500, 2500))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_episodes": 3}, "keeps 4 episodes, but num_episodes is 3"),
        ({"keep_from": 9}, "keep_from"),
        ({"keep_from": 1}, "keep_from"),
        ({"best_return": None}, "best_return must be a number"),
        ({"total_length": -1}, "negative"),
        ({"lengths": [1, 1, 1]}, "different lengths"),
    ],
)
def test_episode_states_that_do_not_add_up_are_refused(change: dict, message: str) -> None:
    state = {
        "num_episodes": 8,
        "best_return": 3.0,
        "total_length": 8,
        "keep_from": 8,
        "returns": [0.0, 1.0, 2.0, 3.0],
        "lengths": [1, 1, 1, 1],
        "end_steps": [1, 2, 3, 4],
    }
    stats = EpisodeStats()
    EpisodeStats().prepare_load(state)  # the unchanged state is accepted
    with pytest.raises(StateError, match=message):
        stats.prepare_load({**state, **change})
    assert stats == EpisodeStats()


def test_each_log_reports_exactly_the_episodes_since_the_last_however_many(tmp_path: Path) -> None:
    """The metrics log's episode figures are those of every episode since the last log, also when
    more than the window finished in between (they stay kept until it has reported them)."""
    episodes = EpisodeStats(window=10)
    metrics_log = MetricsLog([], log_interval=0)
    every: list[float] = []
    rng = np.random.default_rng(1)
    for step, finished in enumerate([0, 3, 25, 0, 1, 40, 9], start=1):
        returns = [float(x) for x in rng.normal(size=finished)]
        every += returns
        episodes.add(returns, [2] * finished, step)
        metrics_log.log(step, episodes, 1e-3, {})
        if finished:
            new = every[-finished:]
            assert metrics_log.metrics["episode/return_mean"] == float(np.mean(new))
            assert metrics_log.metrics["episode/return_std"] == float(np.std(new))
            assert metrics_log.metrics["episode/count"] == finished
        else:
            assert "episode/return_mean" not in metrics_log.metrics
        assert len(episodes.returns) == min(10, len(every))


def test_a_checkpoint_keeps_the_window_and_resumes_from_the_older_form_alike(tmp_path: Path) -> None:
    """A trainer saved after more episodes than its window writes only the window into state.json; one
    loaded from the unbounded form of older checkpoints logs what the uninterrupted run logs."""

    def build() -> Trainer:
        envs = gym.vector.SyncVectorEnv([OneStepEpisodes for _ in range(2)])
        return Trainer(envs, [PPO(hidden=(8,))], seed=0, num_steps=4, num_epochs=1, num_minibatches=1)

    full = build()
    full.episodes.window = None  # the whole history, to write the older form from
    full.train(8 * 30, progress=False)
    state = full.state_dict()
    finished = state["collector"]["episodes"]["finished"]
    assert len(finished["returns"]) == finished["num_episodes"] == 120
    bounded = build()
    bounded.episodes.window = 20
    bounded.load_state_dict(state)
    assert bounded.state_dict()["collector"]["episodes"]["finished"]["returns"] == finished["returns"][-20:]

    older = build()
    older.load_state_dict(
        {
            **state,
            "collector": {
                **state["collector"],
                "episodes": {
                    **state["collector"]["episodes"],
                    "finished": {key: finished[key] for key in ("returns", "lengths", "end_steps")},
                },
            },
        }
    )
    assert older.episodes.num_episodes == 120 and older.episodes.best_return == full.episodes.best_return
    for trainer in (full, older):
        trainer.train(8 * 32, progress=False)
    timing = ("charts/wall_time", "charts/steps_per_second")
    assert {k: v for k, v in older.metrics.items() if k not in timing} == {
        k: v for k, v in full.metrics.items() if k not in timing
    }
    assert "episode/return_mean" in older.metrics
    assert older.episodes.returns == full.episodes.returns[-RECENT_EPISODES:]
