"""Learning quality at scale: PPO on MuJoCo for 1M steps, against CleanRL's published returns.

Trains rl_agents' PPO at CleanRL's ``ppo_continuous_action.py`` defaults (``PPO()`` picks them for
Box actions: 1 env, 2048 x 10 epochs x 32 minibatches, lr 3e-4 annealed, observation and reward
normalization) on each environment and seed, one process per run, ``--jobs`` at a time. Each run
writes ``<out>/<env>_s<seed>/metrics.csv`` (the library's usual log) and ``returns.csv`` (every
training episode: step, return). The final return of a run is the mean return of its last 10
training episodes, as CleanRL's tables average the episodic return at the end of training.

CleanRL's numbers (``docs/rl-algorithms/ppo.md``, MuJoCo **v4**, 3 seeds, mean +- std) are the
reference; v5 differs from v4 in minor model details, so compare the order of magnitude and spread,
not the decimals.

This is long (about 10 minutes per run per core here): run it in the background, never in CI.

    python -m benchmarks.mujoco_learning --jobs 2 --out runs/mujoco_learning
    python -m benchmarks.mujoco_learning --envs Hopper-v5 --seeds 1 --steps 200000
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

# ppo_continuous_action.py on MuJoCo v4, from CleanRL's documentation: (mean, std) over seeds.
CLEANRL_PPO_V4 = {"HalfCheetah": (1442.64, 46.03), "Hopper": (2382.86, 271.74), "Walker2d": (2287.95, 571.78)}
FINAL_EPISODES = 10


@dataclass(frozen=True)
class LearningRun:
    env_id: str
    seed: int
    steps: int
    seconds: float
    final_return: float
    episodes: int


def train_one(env_id: str, seed: int, total_steps: int, out: str, time_limit: float | None) -> LearningRun:
    import torch

    from rl_agents import PPO, Trainer
    from rl_agents.envs import make_envs
    from rl_agents.logging import CSVLogger

    torch.set_num_threads(1)
    run_dir = Path(out) / f"{env_id}_s{seed}"
    trainer = Trainer(make_envs(env_id, 1), [PPO()], seed=seed, loggers=[CSVLogger(run_dir / "metrics.csv")])
    trainer.episodes.window = None  # every episode: returns.csv holds the whole run
    start = time.perf_counter()
    out_of_time = (lambda _: time.perf_counter() - start > time_limit) if time_limit else None
    trainer.train(total_steps, progress=False, stop_when=out_of_time)
    seconds = time.perf_counter() - start
    write_returns(run_dir / "returns.csv", trainer.episodes.returns, trainer.episodes.lengths)
    final = trainer.episodes.returns[-FINAL_EPISODES:]
    return LearningRun(
        env_id,
        seed,
        trainer.global_step,
        seconds,
        statistics.fmean(final) if final else math.nan,
        len(trainer.episodes.returns),
    )


def write_returns(path: Path, returns: list[float], lengths: list[int]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["step", "return"])
        step = 0
        for episode_return, length in zip(returns, lengths):
            step += length
            writer.writerow([step, f"{episode_return:.3f}"])


def _train_star(args: tuple) -> LearningRun:
    return train_one(*args)


def summary(runs: list[LearningRun]) -> str:
    lines = [
        "| env | seeds | steps (min) | final return per seed | mean +- std | CleanRL PPO (v4) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for env_id in sorted({run.env_id for run in runs}):
        mine = sorted((run for run in runs if run.env_id == env_id), key=lambda run: run.seed)
        finals = [run.final_return for run in mine]
        spread = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        reference = CLEANRL_PPO_V4.get(env_id.split("-")[0])
        ref_text = f"{reference[0]:.0f} +- {reference[1]:.0f}" if reference else "n/a"
        lines.append(
            f"| {env_id} | {len(mine)} | {min(run.steps for run in mine):,} | "
            f"{' / '.join(f'{value:.0f}' for value in finals)} "
            f"| {statistics.fmean(finals):.0f} +- {spread:.0f} | {ref_text} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    parser.add_argument("--out", default="runs/mujoco_learning")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="stop each run after this many seconds (reported as fewer steps)"
    )
    args = parser.parse_args(argv)
    jobs = [
        (env_id, seed, args.steps, args.out, args.time_limit)
        for env_id in args.envs.split(",")
        for seed in range(args.seeds)
    ]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(_train_star, jobs, chunksize=1)
    for run in runs:
        print(
            f"{run.env_id} seed {run.seed}: {run.steps:,} steps in {run.seconds:.0f}s "
            f"({run.steps / run.seconds:.0f} steps/s), "
            f"{run.episodes} episodes, final return {run.final_return:.1f}"
        )
    report = summary(runs)
    print(report)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
