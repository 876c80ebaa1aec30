"""The benchmark suite (`python -m benchmarks`): every workload, rl_agents side by side with Stable-Baselines3, one \
table
(and one more for the learning workloads: final returns, steps and seconds to a threshold).

    python -m benchmarks                                   # all workloads at full size (long)
    python -m benchmarks --quick                           # tiny runs: a smoke check of every workload
    python -m benchmarks --workloads ppo-cartpole,dqn-cartpole --steps 20000 --seeds 2

Workloads (settings in each module's docstring and in BENCHMARKS.md):

* ``ppo-cartpole``    PPO, CartPole-v1, CleanRL ``ppo.py`` defaults, 4 envs      (benchmarks/speed.py)
* ``ppo-cartpole64``  the same with 64 envs                                      (benchmarks/speed.py)
* ``ppo-cartpole64-batched`` the same, ours on gymnasium's batched CartPole (SB3 as above)
* ``ppo-halfcheetah`` PPO, HalfCheetah-v5, CleanRL ``ppo_continuous_action.py``  (benchmarks/mujoco.py)
* ``minigrid-doorkey`` PPO + CNN, MiniGrid-DoorKey-5x5-v0, CleanRL ``ppo.py``    (benchmarks/doorkey.py)
* ``dqn-cartpole``    DQN, CartPole-v1, rl-zoo3 settings                         (benchmarks/offpolicy.py)
* ``sac-pendulum``    SAC, Pendulum-v1, rl-zoo3 settings                         (benchmarks/offpolicy.py)
* ``cartpole-solve``  PPO, CartPole-v1 until solved: our preset vs rl-zoo3's     (benchmarks/solve.py)

Every training run happens in a fresh child process (``spawn``), so that each side's peak memory is
its own: the table's memory columns are the child's RSS high-water mark (``VmHWM``; ``ru_maxrss``
where there is no /proc), which
includes the interpreter, torch and gymnasium, and in parentheses how far it rose above that
baseline (taken before the library is imported: library import + construction + training). Seeds
are interleaved (ours 0, SB3 0, ours 1, ...); only the training call is timed; the steps/s columns
are medians over seeds. ``env-only`` is the random-action throughput of the gymnasium sync vector env
that rl_agents steps for the workload (same env count, autoreset mode and wrappers), with no library.
Learning workloads also show the final return (mean of the last 20 training episodes, median over
seeds), and ``cartpole-solve`` the env steps and seconds until the threshold (median over seeds, a
run that does not reach it within the step cap counting as never).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import torch
from rich.console import Console
from rich.table import Table

from benchmarks import doorkey, mujoco, offpolicy, solve, speed
from benchmarks.common import env_only_make_envs, random_steps_per_second


@dataclass(frozen=True)
class Suite:
    """How the suite runs one workload through the module that defines it."""

    name: str
    module: Any
    workload: Any
    default_steps: int
    quick_steps: int
    default_seeds: int
    round_steps: Callable[[int], int]
    env_only: Callable[[int, int], float]
    describe: Callable[[int], str]


def _offpolicy_env_only(workload: offpolicy.Workload) -> Callable[[int, int], float]:
    def measure(total_steps: int, seed: int) -> float:
        # the env rl_agents trains on: 1 env, same-step autoreset (see offpolicy.run_ours)
        envs = gym.make_vec(
            workload.env_id,
            num_envs=1,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
        return random_steps_per_second(envs, total_steps, seed)

    return measure


def _speed_suite(name: str, key: str, steps: int, seeds: int) -> Suite:
    workload = speed.WORKLOADS[key]
    return Suite(
        name,
        speed,
        workload,
        steps,
        workload.batch_size,
        seeds,
        lambda n: speed.round_to_rollouts(n, workload),
        lambda n, seed: speed.env_only_gym(workload, n, seed),
        lambda n: (
            f"{workload.env_id}, {workload.num_envs} envs x {speed.NUM_STEPS} steps, {speed.NUM_EPOCHS} epochs, "
            f"{speed.NUM_MINIBATCHES} minibatches of {workload.minibatch_size}; {n} steps per run"
        ),
    )


def _offpolicy_suite(name: str, quick_steps: int) -> Suite:
    workload = offpolicy.WORKLOADS[name]
    return Suite(
        name,
        offpolicy,
        workload,
        workload.default_steps,
        quick_steps,
        1,
        lambda n: offpolicy.round_to_phases(n, workload),
        _offpolicy_env_only(workload),
        lambda n: offpolicy.workload_description(name, workload, n).split(": ", 1)[1],
    )


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in [
        _speed_suite("ppo-cartpole", "cartpole", 50_000, 3),
        _speed_suite("ppo-cartpole64", "cartpole64", 50_000, 3),
        _speed_suite("ppo-cartpole64-batched", "cartpole64-batched", 50_000, 3),
        Suite(
            "ppo-halfcheetah",
            mujoco,
            mujoco.WORKLOAD,
            51_200,
            mujoco.NUM_STEPS,
            1,
            mujoco.round_to_rollouts,
            lambda n, seed: mujoco.env_only(mujoco.WORKLOAD, n, seed),
            mujoco.describe,
        ),
        Suite(
            "minigrid-doorkey",
            doorkey,
            doorkey.WORKLOAD,
            doorkey.DEFAULT_STEPS,
            doorkey.WORKLOAD.batch_size,
            doorkey.DEFAULT_SEEDS,
            lambda n: speed.round_to_rollouts(n, doorkey.WORKLOAD),
            lambda n, seed: env_only_make_envs(doorkey.WORKLOAD, n, seed),
            doorkey.describe,
        ),
        _offpolicy_suite("dqn-cartpole", offpolicy.DQN_LEARNING_STARTS + 2 * offpolicy.DQN_TRAIN_FREQ),
        _offpolicy_suite("sac-pendulum", 500),
        Suite(
            "cartpole-solve",
            solve,
            solve.WORKLOAD,
            solve.DEFAULT_STEPS,
            solve.QUICK_STEPS,
            3,
            solve.round_to_rollouts,
            lambda n, seed: env_only_make_envs(solve.WORKLOAD, n, seed),
            solve.describe,
        ),
    ]
}


def _peak_rss_mib() -> float:
    """This process's RSS high-water mark in MiB.

    On Linux from ``VmHWM`` in /proc/self/status: ``ru_maxrss`` would carry over the parent's RSS at the
    time of the spawn (Linux keeps the forked address space's high-water mark across ``execve``).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _run_in_child(module_name: str, runner: str, workload: Any, steps: int, seed: int, threads: int):
    """Runs in a fresh process: one timed training run, and that process's peak RSS."""
    import importlib

    torch.set_num_threads(threads)
    module = importlib.import_module(module_name)  # torch, numpy, gymnasium: the same for both sides
    baseline = _peak_rss_mib()
    result = getattr(module, runner)(workload, steps, seed)  # imports its library, builds, trains
    return result, baseline, _peak_rss_mib()


@dataclass
class Side:
    """One library's runs of a workload: its result for each seed and its peak memory."""

    results: list[Any] = field(default_factory=list)  # speed.RunResult, offpolicy.RunResult or solve.SolveResult
    peak_mib: float = 0.0
    extra_mib: float = 0.0

    def add(self, result: Any, baseline_mib: float, peak_mib: float) -> None:
        self.results.append(result)
        self.peak_mib = max(self.peak_mib, peak_mib)
        self.extra_mib = max(self.extra_mib, peak_mib - baseline_mib)

    @property
    def median_sps(self) -> float:
        return statistics.median(r.steps_per_second for r in self.results)

    @property
    def final_returns(self) -> list[float]:
        """Mean return of the last training episodes, per seed; empty where returns are not recorded."""
        return [r.final_return for r in self.results if isinstance(r, offpolicy.RunResult)]

    @property
    def solves(self) -> list[solve.SolveResult]:
        return [r for r in self.results if isinstance(r, solve.SolveResult)]


@dataclass
class Row:
    name: str
    steps: int
    seeds: int
    env_sps: float
    ours: Side = field(default_factory=Side)
    sb3: Side = field(default_factory=Side)
    collect_sps: float | None = None  # ours, data collection alone (PPO speed workloads)


def _learning_notes(result: Any) -> str:
    """The per-seed line's end for learning workloads: the final return, and where it stopped."""
    if isinstance(result, solve.SolveResult):
        return f", {solve.outcome(result)}"
    if isinstance(result, offpolicy.RunResult):
        return f", final return {_format_return(result.final_return)}"
    return ""


def run_suite(suite: Suite, steps: int, seeds: int, threads: int, console: Console) -> Row:
    console.print(f"[bold]{suite.name}[/bold]: {suite.describe(steps)}; {seeds} seed(s)")
    row = Row(suite.name, steps, seeds, suite.env_only(steps, 0))
    console.print(f"  env-only  : {row.env_sps:8.0f} steps/s")
    context = multiprocessing.get_context("spawn")
    if hasattr(suite.module, "collection_only"):
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            row.collect_sps, _, _ = pool.submit(
                _run_in_child, suite.module.__name__, "collection_only", suite.workload, steps, 0, threads
            ).result()
        console.print(f"  collection: {row.collect_sps:8.0f} steps/s (ours: act + env step + storage, no updates)")
    for seed in range(seeds):
        for runner, side in (("run_ours", row.ours), ("run_sb3", row.sb3)):
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                result, baseline, peak = pool.submit(
                    _run_in_child, suite.module.__name__, runner, suite.workload, steps, seed, threads
                ).result()
            side.add(result, baseline, peak)
            console.print(
                f"  {result.library:<9} seed {seed}: {result.steps} steps in {result.seconds:7.2f}s "
                f"= {result.steps_per_second:8.0f} steps/s, peak RSS {peak:5.0f} MiB (+{peak - baseline:.0f} over the "
                f"{baseline:.0f} MiB of python+torch+gymnasium){_learning_notes(result)}"
            )
    return row


def _format_return(value: float) -> str:
    if math.isnan(value):
        return "no episode"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _median_return(side: Side) -> str:
    finished = [value for value in side.final_returns if not math.isnan(value)]  # nan: no episode ended
    return _format_return(statistics.median(finished)) if finished else "-"


def _to_threshold(side: Side, measure: str) -> str:
    """Median steps or seconds to the threshold, with how many seeds reached it ("-": no threshold)."""
    solves = side.solves
    if not solves:
        return "-"
    median = solve.median_to_threshold(solves, measure)
    reached = f"{sum(r.solved for r in solves)}/{len(solves)}"
    if math.isinf(median):
        return f"not solved ({reached})"
    return f"{median:.0f} ({reached})" if measure == "steps" else f"{median:.2f} ({reached})"


def _steps_cell(row: Row) -> str:
    """Env steps per run; a cap where runs stop at a threshold."""
    return f"cap {row.steps}" if row.ours.solves else str(row.steps)


def summary_table(rows: list[Row]) -> Table:
    table = Table(
        title="rl_agents vs Stable-Baselines3: training steps/s (median over seeds), "
        "peak RSS (+ rise above the python+torch+gymnasium baseline)"
    )
    for column in ("workload", "steps", "seeds"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for column in (
        "ours steps/s",
        "SB3 steps/s",
        "ratio",
        "ours peak MiB",
        "SB3 peak MiB",
        "env-only steps/s",
        "ours % env",
        "SB3 % env",
        "ours collect % env",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        ours, sb3 = row.ours.median_sps, row.sb3.median_sps
        table.add_row(
            row.name,
            _steps_cell(row),
            str(row.seeds),
            f"{ours:.0f}",
            f"{sb3:.0f}",
            f"{ours / sb3:.2f}x",
            f"{row.ours.peak_mib:.0f} (+{row.ours.extra_mib:.0f})",
            f"{row.sb3.peak_mib:.0f} (+{row.sb3.extra_mib:.0f})",
            f"{row.env_sps:.0f}",
            f"{100 * ours / row.env_sps:.1f}%",
            f"{100 * sb3 / row.env_sps:.1f}%",
            "" if row.collect_sps is None else f"{100 * row.collect_sps / row.env_sps:.1f}%",
        )
    return table


def learning_table(rows: list[Row]) -> Table | None:
    """Final returns and, where a workload has a threshold, steps and seconds to it; None when no chosen
    workload measures learning."""
    learning = [row for row in rows if row.ours.final_returns or row.sb3.final_returns]
    if not learning:
        return None
    table = Table(
        title="Learning: final return (mean of the last 20 training episodes, median over seeds); steps and seconds "
        "of training to the threshold (median over seeds, a run that never reaches it counting as never; solved/seeds)"
    )
    table.add_column("workload")
    for column in (
        "steps",
        "seeds",
        "ours return",
        "SB3 return",
        "ours steps to threshold",
        "SB3 steps to threshold",
        "ours s to threshold",
        "SB3 s to threshold",
    ):
        table.add_column(column, justify="right")
    for row in learning:
        table.add_row(
            row.name,
            _steps_cell(row),
            str(row.seeds),
            _median_return(row.ours),
            _median_return(row.sb3),
            *[_to_threshold(side, measure) for measure in ("steps", "seconds") for side in (row.ours, row.sb3)],
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workloads",
        default="all",
        help="comma-separated, from: " + ", ".join(SUITES) + " (default: all)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per run for every workload, rounded up to whole rollouts / training phases "
        "(default: each workload's: " + ", ".join(f"{s.name} {s.default_steps}" for s in SUITES.values()) + ")",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per library (default: 3 for the CartPole PPO workloads, cartpole-solve and minigrid-doorkey, "
        "1 for the others; 1 with --quick)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both libraries")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny runs (one rollout / a few training phases / 8 rollouts for cartpole-solve): a smoke check",
    )
    args = parser.parse_args(argv)
    names = list(SUITES) if args.workloads == "all" else [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be positive")
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be positive")
    args.names = names
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(speed.machine_description(args.threads))
    console.print(speed.library_versions())
    rows: list[Row] = []
    for name in args.names:
        suite = SUITES[name]
        steps = args.steps or (suite.quick_steps if args.quick else suite.default_steps)
        seeds = args.seeds or (1 if args.quick else suite.default_seeds)
        rows.append(run_suite(suite, suite.round_steps(steps), seeds, args.threads, console))
    console.print(summary_table(rows))
    learning = learning_table(rows)
    if learning is not None:
        console.print(learning)


if __name__ == "__main__":
    main()
