"""Scaling of distributed rollouts on Ray (``rl_agents.training.distributed``) on this machine.

1. PPO CartPole-v1, 128 steps per rollout, 4 epochs x 4 minibatches (CleanRL's ``ppo.py``
   settings): steps/s of the single-process Trainer (8 and 16 envs) and of a DistributedTrainer with
   1 worker x 8 envs, 2 workers x 4 envs (the same 8 envs in all) and 2 workers x 8 envs, each round
   split into collection (broadcast, the workers' rollouts, transfer back) and the learner's update.
   Worker start-up is not timed.
2. ``--atari``: the pieces of an estimate for PPO on Atari-sized observations (BreakoutNoFrameskip-v4,
   84x84x4 uint8, Nature CNN, CleanRL's ``ppo_atari.py`` settings: 8 envs x 128 steps per worker,
   4 epochs x 4 minibatches): one worker's collection throughput (in its own process, and through
   Ray), Ray's transfer cost per transition, and the learner's update time per sample; from them, the
   number of workers at which a synchronous round stops getting faster.

    python -m benchmarks.ray_scaling [--steps 50000] [--repeats 2] [--atari]
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rl_agents import PPO, Trainer
from rl_agents.envs import make_envs
from rl_agents.training import EnvSpaces, Learner
from rl_agents.training.distributed import DistributedTrainer
from rl_agents.training.learner import resolve_device
from rl_agents.training.workers import RolloutWorker, concatenate_columns

CARTPOLE = "CartPole-v1"
ATARI = "BreakoutNoFrameskip-v4"
NUM_STEPS, NUM_EPOCHS, NUM_MINIBATCHES = 128, 4, 4
ATARI_ENVS_PER_WORKER = 8


@dataclass
class Timing:
    """Steps/s of one run, and the mean seconds per round spent collecting and updating."""

    name: str
    steps: int
    seconds: float
    collect_per_round: float
    update_per_round: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def timed(function: Callable, totals: dict[str, float], key: str) -> Callable:
    """``function``, adding the seconds each call takes to ``totals[key]``."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


def cartpole_ppo() -> list:
    return [PPO()]  # CleanRL's discrete defaults


def atari_ppo() -> list:
    return [PPO(lr=2.5e-4, clip_coef=0.1, ent_coef=0.01)]


def schedule() -> dict[str, int]:
    return {"num_steps": NUM_STEPS, "num_epochs": NUM_EPOCHS, "num_minibatches": NUM_MINIBATCHES}


# (workers, envs per worker): 0 workers is the single-process Trainer with that many envs.
VARIANTS = ((0, 8), (1, 8), (2, 4), (0, 16), (2, 8))


def build(workers: int, envs: int) -> Trainer:
    """The single-process Trainer (workers 0) or a DistributedTrainer with ``envs`` envs per worker."""
    if workers == 0:
        return Trainer(make_envs(CARTPOLE, envs), cartpole_ppo(), seed=1, **schedule())
    return DistributedTrainer(
        functools.partial(make_envs, CARTPOLE, envs), cartpole_ppo, workers=workers, seed=1, **schedule()
    )


def time_run(workers: int, envs: int, steps: int) -> Timing:
    trainer = build(workers, envs)
    round_steps = NUM_STEPS * trainer.num_envs
    trainer.train(2 * round_steps, progress=False)  # start-up (Ray workers, first allocations): not timed
    totals = {"update": 0.0}
    trainer.learn = timed(trainer.learn, totals, "update")  # type: ignore[method-assign]
    start_step, start = trainer.global_step, time.perf_counter()
    trainer.train(start_step + steps, progress=False)
    seconds = time.perf_counter() - start
    rounds = (trainer.global_step - start_step) / round_steps
    if isinstance(trainer, DistributedTrainer):
        trainer.close()
    else:
        trainer.envs.close()
    name = f"single process, {envs} envs" if workers == 0 else f"{workers} worker{'s' * (workers > 1)} x {envs} envs"
    collect = (seconds - totals["update"]) / rounds
    return Timing(name, trainer.global_step - start_step, seconds, collect, totals["update"] / rounds)


def cartpole_table(steps: int, repeats: int, console: Console) -> None:
    runs: dict[tuple[int, int], list[Timing]] = {variant: [] for variant in VARIANTS}
    for _ in range(repeats):  # interleaved, so drift in machine load hits every variant alike
        for (workers, envs), timings in runs.items():
            timings.append(time_run(workers, envs, steps))
    table = Table(
        title=f"PPO {CARTPOLE}: {NUM_STEPS} steps per rollout, {NUM_EPOCHS} epochs x {NUM_MINIBATCHES} minibatches, "
        f"{steps:,} steps x {repeats}"
    )
    for column in ("variant", "steps/s (mean)", "each run", "collect ms/round", "update ms/round"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for timings in runs.values():
        rates = [timing.steps_per_second for timing in timings]
        table.add_row(
            timings[0].name,
            f"{statistics.mean(rates):,.0f}",
            " / ".join(f"{rate:,.0f}" for rate in rates),
            f"{statistics.mean(t.collect_per_round for t in timings) * 1e3:.1f}",
            f"{statistics.mean(t.update_per_round for t in timings) * 1e3:.1f}",
        )
    console.print(table)


# ---------------------------------------------------------------------------- Atari estimate
def mean_seconds(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    result = function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        result = function()
    return (time.perf_counter() - start) / repeats, result


def atari_pieces(console: Console) -> dict[str, float]:
    """Seconds per env step of one worker collecting (in process and through Ray), per transition
    of moving the rollout to the learner, and per sample of the learner's update."""
    import ray

    envs = functools.partial(make_envs, ATARI, ATARI_ENVS_PER_WORKER)
    learner = DistributedTrainer(envs, atari_ppo, workers=1, seed=1, **schedule())
    steps_per_round = NUM_STEPS * ATARI_ENVS_PER_WORKER
    states = learner._broadcast_state()
    worker = RolloutWorker(
        envs, atari_ppo, index=0, seed=1, schedule=dict(vars(learner.schedule)), learner_num_envs=learner.num_envs
    )
    in_process, rollout = mean_seconds(lambda: worker.collect(states, 0, 0, None), 2)
    worker.trainer.envs.close()
    handle = learner.start_workers()[0]
    through_ray, _ = mean_seconds(lambda: ray.get(handle.collect.remote(states, 0, 0, None)), 2)
    batch_bytes = sum(value.nbytes for value in rollout.batch.values())
    put, transfer = measure_transfer(rollout.batch)
    learner.close()
    columns = concatenate_columns([rollout.batch])
    batch = {key: torch.from_numpy(value) for key, value in columns.items()}
    update, _ = mean_seconds(lambda: learner.learn({key: value.clone() for key, value in batch.items()}), 1)
    console.print(
        f"[Atari] one worker, {ATARI_ENVS_PER_WORKER} envs x {NUM_STEPS} steps: {in_process:.2f} s in its process "
        f"({steps_per_round / in_process:,.0f} steps/s), {through_ray:.2f} s through Ray; "
        f"rollout {batch_bytes / 2**20:.1f} MiB "
        f"({batch_bytes / steps_per_round / 1024:.1f} KiB per transition: obs and next_obs); "
        f"put into Ray's object store {put * 1e3:.1f} ms (worker side), "
        f"got and concatenated by the learner {transfer * 1e3:.1f} ms; "
        f"learner update (CPU, {torch.get_num_threads()} thread) {update:.2f} s"
    )
    return {
        "collect": in_process / steps_per_round,
        "collect_ray": through_ray / steps_per_round,
        "transfer": transfer / steps_per_round,
        "update_cpu": update / steps_per_round,
        "bytes": batch_bytes / steps_per_round,
    }


def measure_transfer(batch: dict[str, np.ndarray]) -> tuple[float, float]:
    """Seconds (worker side, learner side) to hand a worker's rollout to the learner. The worker puts
    its result into Ray's object store (in parallel with the other workers); the learner gets it
    (NumPy arrays come out of the local object store without a copy) and concatenates the workers'
    columns into torch tensors, one worker after another."""
    import ray

    put, _ = mean_seconds(lambda: ray.put(batch), 3)
    ready = [ray.put(batch) for _ in range(4)]

    def learner_side() -> None:
        arrived = ray.get(ready.pop())
        {key: torch.from_numpy(value) for key, value in concatenate_columns([arrived]).items()}

    learner, _ = mean_seconds(learner_side, 3)
    return put, learner


def synthetic_atari_batch(num_envs: int, device: torch.device) -> dict[str, torch.Tensor]:
    """What PPO collects for ``num_envs`` Atari envs over one rollout (random frames)."""
    generator = torch.Generator().manual_seed(0)
    frames = (NUM_STEPS, num_envs, 4, 84, 84)
    flags = torch.zeros((NUM_STEPS, num_envs), dtype=torch.bool)
    batch = {
        "obs": torch.randint(0, 256, frames, dtype=torch.uint8, generator=generator),
        "next_obs": torch.randint(0, 256, frames, dtype=torch.uint8, generator=generator),
        "action": torch.randint(0, 4, (NUM_STEPS, num_envs), generator=generator),
        "logprob": torch.full((NUM_STEPS, num_envs), -math.log(4)),
        "values": torch.zeros((NUM_STEPS, num_envs, 1)),
        "reward/extrinsic": torch.randint(0, 2, (NUM_STEPS, num_envs), generator=generator).float(),
        "terminated": flags,
        "truncated": flags,
        "valid": ~flags,
    }
    return {key: value.to(device) for key, value in batch.items()}


def learner_update_per_sample(device: str, workers: int) -> float:
    """Seconds per sample of the learner's PPO update (Nature CNN, 4 epochs x 4 minibatches) on a
    round of ``workers`` x 8 Atari envs, on ``device``; no envs or Ray needed."""
    import gymnasium as gym

    num_envs = workers * ATARI_ENVS_PER_WORKER
    spaces = EnvSpaces(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4), num_envs)
    learner = Learner(spaces, atari_ppo(), seed=1, device=resolve_device(device), **schedule())
    batch = synthetic_atari_batch(num_envs, learner.device)

    def update() -> None:
        learner.update(dict(batch), global_step=0, total_steps=None)
        if learner.device.type == "cuda":
            torch.cuda.synchronize()

    seconds, _ = mean_seconds(update, 2)
    return seconds / (NUM_STEPS * num_envs)


def scaling_estimate(pieces: dict[str, float], update_per_sample: float, label: str) -> str:
    """Round time for W workers: collect through Ray (in parallel) + the learner's share of the
    transfer and its update (both W times the samples, one after another); the steps/s bound is
    1 / (transfer + update) per step, half of it is reached at W* = collect / (transfer + update)."""
    serial = pieces["transfer"] + update_per_sample
    limit = 1.0 / serial
    knee = pieces["collect_ray"] / serial
    rates = ", ".join(
        f"{workers}: {workers / (pieces['collect_ray'] + workers * serial):,.0f}"
        for workers in (1, 2, 4, 8, 16, 32, 64)
        if workers <= 4 * max(knee, 1)
    )
    return (
        f"{label}: learner-bound limit {limit:,.0f} steps/s; half of it at W* = {knee:.1f} workers; "
        f"steps/s by workers: {rates}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--atari", action="store_true", help="also measure the pieces of the Atari scaling estimate")
    parser.add_argument(
        "--gpu-update-us", type=float, help="a measured GPU update time per sample (us) to estimate with too"
    )
    parser.add_argument(
        "--update-only",
        metavar="DEVICE",
        help="only time the learner's Atari update per sample on DEVICE (no Ray, no envs)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.update_only:
        for workers in (1, 4, 16):
            seconds = learner_update_per_sample(args.update_only, workers)
            print(
                f"learner update on {args.update_only}, {workers} x {ATARI_ENVS_PER_WORKER} envs x {NUM_STEPS} steps: "
                f"{seconds * 1e6:.1f} us/sample"
            )
        return
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    console = Console()
    console.print(f"{os.cpu_count()} CPU cores, torch {torch.__version__}, ray {ray.__version__}")
    cartpole_table(args.steps, args.repeats, console)
    if args.atari:
        pieces = atari_pieces(console)
        console.print(scaling_estimate(pieces, pieces["update_cpu"], "learner on this CPU"))
        if args.gpu_update_us:
            console.print(
                scaling_estimate(
                    pieces, args.gpu_update_us * 1e-6, f"learner on a GPU at {args.gpu_update_us:g} us/sample"
                )
            )
    ray.shutdown()


if __name__ == "__main__":
    main()
