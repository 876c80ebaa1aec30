"""The benchmark suite (`python -m benchmarks`): every workload, rl_agents side by side with Stable-Baselines3, one table.

    python -m benchmarks                                   # all workloads at full size (long)
    python -m benchmarks --quick                           # tiny runs: a smoke check of every workload
    python -m benchmarks --workloads ppo-cartpole,dqn-cartpole --steps 20000 --seeds 2

Workloads (settings in each module's docstring and in BENCHMARKS.md):

* ``ppo-cartpole``    PPO, CartPole-v1, CleanRL ``ppo.py`` defaults, 4 envs      (benchmarks/speed.py)
* ``ppo-cartpole64``  the same with 64 envs                                      (benchmarks/speed.py)
* ``ppo-halfcheetah`` PPO, HalfCheetah-v5, CleanRL ``ppo_continuous_action.py``  (benchmarks/mujoco.py)
* ``dqn-cartpole``    DQN, CartPole-v1, rl-zoo3 settings                         (benchmarks/offpolicy.py)
* ``sac-pendulum``    SAC, Pendulum-v1, rl-zoo3 settings                         (benchmarks/offpolicy.py)

Every training run happens in a fresh child process (``spawn``), so that each side's peak memory is
its own: the table's memory columns are the child's RSS high-water mark (``VmHWM``; ``ru_maxrss``
where there is no /proc), which
includes the interpreter, torch and gymnasium, and in parentheses how far it rose above that
baseline (taken before the library is imported: library import + construction + training). Seeds
are interleaved (ours 0, SB3 0, ours 1, ...); only the training call is timed; the steps/s columns
are medians over seeds. ``env-only`` is the random-action throughput of the gymnasium sync vector env
that rl_agents steps for the workload (same env count and autoreset mode), with no library.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch
from rich.console import Console
from rich.table import Table

from benchmarks import mujoco, offpolicy, speed


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
            workload.env_id, num_envs=1, vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )
        envs.reset(seed=seed)
        envs.action_space.seed(seed)
        start = time.perf_counter()
        for _ in range(total_steps):
            envs.step(envs.action_space.sample())
        seconds = time.perf_counter() - start
        envs.close()
        return total_steps / seconds

    return measure


def _speed_suite(name: str, key: str, steps: int, seeds: int) -> Suite:
    workload = speed.WORKLOADS[key]
    return Suite(
        name, speed, workload, steps, workload.batch_size, seeds,
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
        name, offpolicy, workload, workload.default_steps, quick_steps, 1,
        lambda n: offpolicy.round_to_phases(n, workload),
        _offpolicy_env_only(workload),
        lambda n: offpolicy.workload_description(name, workload, n).split(": ", 1)[1],
    )


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in [
        _speed_suite("ppo-cartpole", "cartpole", 50_000, 3),
        _speed_suite("ppo-cartpole64", "cartpole64", 50_000, 3),
        Suite(
            "ppo-halfcheetah", mujoco, mujoco.WORKLOAD, 51_200, mujoco.NUM_STEPS, 1,
            mujoco.round_to_rollouts,
            lambda n, seed: mujoco.env_only(mujoco.WORKLOAD, n, seed),
            mujoco.describe,
        ),
        _offpolicy_suite("dqn-cartpole", offpolicy.DQN_LEARNING_STARTS + 2 * offpolicy.DQN_TRAIN_FREQ),
        _offpolicy_suite("sac-pendulum", 500),
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
class Row:
    name: str
    steps: int
    seeds: int
    ours: list[float]
    sb3: list[float]
    ours_mib: float
    sb3_mib: float
    ours_extra_mib: float
    sb3_extra_mib: float
    env_sps: float


def run_suite(suite: Suite, steps: int, seeds: int, threads: int, console: Console) -> Row:
    console.print(f"[bold]{suite.name}[/bold]: {suite.describe(steps)}; {seeds} seed(s)")
    env_sps = suite.env_only(steps, 0)
    console.print(f"  env-only  : {env_sps:8.0f} steps/s")
    sps: dict[str, list[float]] = {"rl_agents": [], "sb3": []}
    mib: dict[str, float] = {"rl_agents": 0.0, "sb3": 0.0}
    extra: dict[str, float] = {"rl_agents": 0.0, "sb3": 0.0}
    context = multiprocessing.get_context("spawn")
    for seed in range(seeds):
        for runner in ("run_ours", "run_sb3"):
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                result, baseline, peak = pool.submit(
                    _run_in_child, suite.module.__name__, runner, suite.workload, steps, seed, threads
                ).result()
            sps[result.library].append(result.steps_per_second)
            mib[result.library] = max(mib[result.library], peak)
            extra[result.library] = max(extra[result.library], peak - baseline)
            console.print(
                f"  {result.library:<9} seed {seed}: {result.steps} steps in {result.seconds:7.2f}s "
                f"= {result.steps_per_second:8.0f} steps/s, peak RSS {peak:5.0f} MiB (+{peak - baseline:.0f} over the {baseline:.0f} MiB of python+torch+gymnasium)"
            )
    return Row(
        suite.name, steps, seeds, sps["rl_agents"], sps["sb3"], mib["rl_agents"], mib["sb3"],
        extra["rl_agents"], extra["sb3"], env_sps,
    )


def summary_table(rows: list[Row]) -> Table:
    table = Table(title="rl_agents vs Stable-Baselines3: training steps/s (median over seeds), peak RSS (+ rise above the python+torch+gymnasium baseline)")
    for column in ("workload", "steps", "seeds"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for column in ("ours steps/s", "SB3 steps/s", "ratio", "ours peak MiB", "SB3 peak MiB", "env-only steps/s", "ours % env", "SB3 % env"):
        table.add_column(column, justify="right")
    for row in rows:
        ours, sb3 = statistics.median(row.ours), statistics.median(row.sb3)
        table.add_row(
            row.name, str(row.steps), str(row.seeds), f"{ours:.0f}", f"{sb3:.0f}", f"{ours / sb3:.2f}x",
            f"{row.ours_mib:.0f} (+{row.ours_extra_mib:.0f})", f"{row.sb3_mib:.0f} (+{row.sb3_extra_mib:.0f})",
            f"{row.env_sps:.0f}",
            f"{100 * ours / row.env_sps:.1f}%", f"{100 * sb3 / row.env_sps:.1f}%",
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workloads", default="all",
        help="comma-separated, from: " + ", ".join(SUITES) + " (default: all)",
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help="env steps per run for every workload, rounded up to whole rollouts / training phases "
        "(default: each workload's: " + ", ".join(f"{s.name} {s.default_steps}" for s in SUITES.values()) + ")",
    )
    parser.add_argument(
        "--seeds", type=int, default=None,
        help="seeds per library (default: 3 for the CartPole PPO workloads, 1 for the others; 1 with --quick)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both libraries")
    parser.add_argument("--quick", action="store_true", help="tiny runs (one rollout / a few training phases): a smoke check")
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
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(speed.machine_description(args.threads))
    console.print(speed.library_versions())
    rows: list[Row] = []
    for name in args.names:
        suite = SUITES[name]
        steps = args.steps or (suite.quick_steps if args.quick else suite.default_steps)
        seeds = args.seeds or (1 if args.quick else suite.default_seeds)
        rows.append(run_suite(suite, suite.round_steps(steps), seeds, args.threads, console))
    console.print(summary_table(rows))


if __name__ == "__main__":
    main()
