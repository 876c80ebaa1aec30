"""Off-policy training benchmark: rl_agents DQN and SAC against Stable-Baselines3 at the same settings.

Two workloads, each with rl-zoo3's tuned hyperparameters given to both libraries, on the CPU with the
same number of torch threads:

* ``dqn-cartpole``: CartPole-v1, 1 env, lr 2.3e-3, batch 64, buffer 100k, learning starts 1000,
  gamma 0.99, 128 gradient steps every 256 env steps, epsilon 1 -> 0.04 over the first 16% of the
  run, (256, 256) MLP, Huber loss, gradients clipped to norm 10, vanilla DQN target (max over the
  target network: ours runs with ``double=False``). SB3 refreshes the target every 10 env steps, which
  falls between training phases; ours refreshes it every 128 gradient steps, once per phase: the same.
* ``sac-pendulum``: Pendulum-v1, 1 env, lr 1e-3 for actor, critics and temperature, SB3's defaults
  otherwise (buffer 1M, batch 256, learning starts 100, one gradient step per env step, tau 0.005,
  gamma 0.99, automatic temperature from 1.0, (256, 256) MLPs), which are also rl_agents' defaults.

Both use Adam with eps 1e-8. The difference that remains: rl_agents' SAC sums the critic, actor and
temperature losses into one optimizer step (SB3 steps them one after another). Ours runs its vector
env in same-step autoreset mode, so every counted step is a real transition, as in SB3 (in the
default next-step mode the reset step after each episode is counted but not trained on).

Each workload runs ours, then SB3, in this process with the same seed. Only the training call is
timed (construction excluded). Steps are rounded up to whole training phases so that both libraries
do the same number of gradient steps. The final return is the mean of the last 20 training episodes
(ours: ``trainer.episodes.returns``; SB3: its ``Monitor``).

    python -m benchmarks.offpolicy                              # both workloads at their default steps
    python -m benchmarks.offpolicy --workload sac-pendulum --steps 5000 --seed 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.speed import library_versions, machine_description

RETURN_WINDOW = 20

# rl-zoo3's DQN on CartPole-v1
DQN_LR = 2.3e-3
DQN_BATCH_SIZE = 64
DQN_BUFFER_SIZE = 100_000
DQN_LEARNING_STARTS = 1000
DQN_TRAIN_FREQ = 256
DQN_GRADIENT_STEPS = 128
DQN_EXPLORATION_FRACTION = 0.16
DQN_FINAL_EPS = 0.04
DQN_MAX_GRAD_NORM = 10.0
SB3_DQN_TARGET_UPDATE = 10  # env steps: between training phases
OURS_DQN_TARGET_UPDATE = DQN_GRADIENT_STEPS  # gradient steps: once per training phase

# rl-zoo3's SAC on Pendulum-v1 (SB3's defaults but the learning rate)
SAC_LR = 1e-3
SAC_BATCH_SIZE = 256
SAC_BUFFER_SIZE = 1_000_000
SAC_LEARNING_STARTS = 100
SAC_TRAIN_FREQ = 1
SAC_GRADIENT_STEPS = 1
SAC_TAU = 0.005

GAMMA = 0.99
NET_ARCH = [256, 256]


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration: the environment, the algorithm and the default run length."""

    env_id: str
    algorithm: str
    default_steps: int
    train_frequency: int  # env steps per training phase (1 env)


WORKLOADS: dict[str, Workload] = {
    "dqn-cartpole": Workload("CartPole-v1", "dqn", 50_000, DQN_TRAIN_FREQ),
    "sac-pendulum": Workload("Pendulum-v1", "sac", 20_000, SAC_TRAIN_FREQ),
}


@dataclass(frozen=True)
class RunResult:
    """One timed training run."""

    library: str
    seed: int
    steps: int
    seconds: float
    returns: list[float]

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def final_return(self) -> float:
        recent = self.returns[-RETURN_WINDOW:]
        return float(np.mean(recent)) if recent else math.nan


def round_to_phases(steps: int, workload: Workload) -> int:
    """Round up to whole training phases so that both libraries do the same number of gradient steps."""
    phase = workload.train_frequency
    return max(1, -(-steps // phase)) * phase


def run_ours(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from rl_agents import DQN, SAC, Trainer

    envs = gym.make_vec(
        workload.env_id,
        num_envs=1,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    if workload.algorithm == "dqn":
        agent = DQN(
            lr=DQN_LR,
            gamma=GAMMA,
            double=False,
            huber=True,
            initial_epsilon=1.0,
            final_epsilon=DQN_FINAL_EPS,
            exploration_steps=int(DQN_EXPLORATION_FRACTION * total_steps),
            hidden=tuple(NET_ARCH),
        )
        schedule = {
            "buffer_size": DQN_BUFFER_SIZE,
            "batch_size": DQN_BATCH_SIZE,
            "learning_starts": DQN_LEARNING_STARTS,
            "train_frequency": DQN_TRAIN_FREQ,
            "gradient_steps": DQN_GRADIENT_STEPS,
            "target_update_interval": OURS_DQN_TARGET_UPDATE,
            "tau": 1.0,
            "max_grad_norm": DQN_MAX_GRAD_NORM,
        }
    else:
        agent = SAC(lr=SAC_LR, gamma=GAMMA, alpha=1.0, autotune=True, hidden=tuple(NET_ARCH))
        schedule = {  # SAC's suggested schedule, spelled out
            "buffer_size": SAC_BUFFER_SIZE,
            "batch_size": SAC_BATCH_SIZE,
            "learning_starts": SAC_LEARNING_STARTS,
            "train_frequency": SAC_TRAIN_FREQ,
            "gradient_steps": SAC_GRADIENT_STEPS,
            "target_update_interval": 1,
            "tau": SAC_TAU,
            "max_grad_norm": None,
        }
    trainer = Trainer(envs, [agent], seed=seed, **schedule)
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    start = time.perf_counter()
    trainer.train(total_steps, progress=False)
    seconds = time.perf_counter() - start
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds, list(trainer.episodes.returns))


def run_sb3(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(gym.make(workload.env_id))
    policy_kwargs = {"net_arch": list(NET_ARCH)}
    if workload.algorithm == "dqn":
        model = SB3DQN(
            "MlpPolicy",
            env,
            learning_rate=DQN_LR,
            buffer_size=DQN_BUFFER_SIZE,
            learning_starts=DQN_LEARNING_STARTS,
            batch_size=DQN_BATCH_SIZE,
            tau=1.0,
            gamma=GAMMA,
            train_freq=DQN_TRAIN_FREQ,
            gradient_steps=DQN_GRADIENT_STEPS,
            target_update_interval=SB3_DQN_TARGET_UPDATE,
            exploration_fraction=DQN_EXPLORATION_FRACTION,
            exploration_initial_eps=1.0,
            exploration_final_eps=DQN_FINAL_EPS,
            max_grad_norm=DQN_MAX_GRAD_NORM,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device="cpu",
            verbose=0,
        )
    else:
        model = SB3SAC(
            "MlpPolicy",
            env,
            learning_rate=SAC_LR,
            buffer_size=SAC_BUFFER_SIZE,
            learning_starts=SAC_LEARNING_STARTS,
            batch_size=SAC_BATCH_SIZE,
            tau=SAC_TAU,
            gamma=GAMMA,
            train_freq=SAC_TRAIN_FREQ,
            gradient_steps=SAC_GRADIENT_STEPS,
            ent_coef="auto",
            target_update_interval=1,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device="cpu",
            verbose=0,
        )
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    seconds = time.perf_counter() - start
    env.close()
    return RunResult("sb3", seed, model.num_timesteps, seconds, [float(r) for r in env.get_episode_rewards()])


def workload_description(name: str, workload: Workload, total_steps: int) -> str:
    if workload.algorithm == "dqn":
        settings = (
            f"lr {DQN_LR:g}, batch {DQN_BATCH_SIZE}, buffer {DQN_BUFFER_SIZE}, learning starts {DQN_LEARNING_STARTS}, "
            f"{DQN_GRADIENT_STEPS} gradient steps every {DQN_TRAIN_FREQ} env steps, "
            f"epsilon 1 -> {DQN_FINAL_EPS:g} over {int(DQN_EXPLORATION_FRACTION * total_steps)} steps, "
            f"max-Q target, net {NET_ARCH}"
        )
    else:
        settings = (
            f"lr {SAC_LR:g}, batch {SAC_BATCH_SIZE}, buffer {SAC_BUFFER_SIZE}, learning starts {SAC_LEARNING_STARTS}, "
            f"{SAC_GRADIENT_STEPS} gradient step every {SAC_TRAIN_FREQ} env step, tau {SAC_TAU:g}, auto temperature, "
            f"net {NET_ARCH}"
        )
    return f"workload {name}: {workload.env_id}, 1 env, {settings}; {total_steps} steps per run"


def run_workload(
    workload: Any,
    total_steps: int,
    seed: int,
    threads: int,
    console: Console,
    runners: Sequence[Callable[[Any, int, int], RunResult]] | None = None,
) -> list[RunResult]:
    """Each runner (default: ours, then SB3) on ``workload`` with the same seed and torch threads."""
    runners = [run_ours, run_sb3] if runners is None else runners
    results: list[RunResult] = []
    for runner in runners:
        torch.set_num_threads(threads)  # the same for both libraries, whatever a run left behind
        result = runner(workload, total_steps, seed)
        console.print(
            f"  {result.library:<9} seed {seed}: {result.steps} steps in {result.seconds:6.2f}s "
            f"= {result.steps_per_second:8.0f} steps/s, {len(result.returns)} episodes, "
            f"final return {result.final_return:8.1f}"
        )
        results.append(result)
    return results


def summary_table(
    rows: list[tuple[str, int, RunResult, RunResult]], kind: str = "Off-policy", times: bool = False
) -> Table:
    """Ours against SB3 per workload: steps/s and their ratio, (``times``: wall seconds,) final returns."""
    table = Table(
        title=f"{kind} training speed (steps/s, higher is better), final return (last {RETURN_WINDOW} episodes)"
    )
    columns = ["ours steps/s", "SB3 steps/s", "ratio"] + (["ours time (s)", "SB3 time (s)"] if times else [])
    table.add_column("workload")
    for column in ["steps", *columns, "ours return", "SB3 return"]:
        table.add_column(column, justify="right")
    for name, steps, ours, sb3 in rows:
        cells = [f"{ours.steps_per_second:.0f}", f"{sb3.steps_per_second:.0f}"]
        cells.append(f"{ours.steps_per_second / sb3.steps_per_second:.2f}x")
        if times:
            cells += [f"{ours.seconds:.1f}", f"{sb3.seconds:.1f}"]
        table.add_row(name, str(steps), *cells, f"{ours.final_return:.1f}", f"{sb3.final_return:.1f}")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per run, rounded up to whole training phases (default: the workload's: "
        + ", ".join(f"{name} {w.default_steps}" for name, w in WORKLOADS.items())
        + ")",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both libraries")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(WORKLOADS) if args.workload == "all" else [args.workload]
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(machine_description(args.threads))
    console.print(library_versions())

    rows: list[tuple[str, int, RunResult, RunResult]] = []
    for name in names:
        workload = WORKLOADS[name]
        total_steps = round_to_phases(args.steps or workload.default_steps, workload)
        console.print(workload_description(name, workload, total_steps))
        ours, sb3 = run_workload(workload, total_steps, args.seed, args.threads, console)
        rows.append((name, total_steps, ours, sb3))
    console.print(summary_table(rows))


if __name__ == "__main__":
    main()
