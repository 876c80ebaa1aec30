"""Training-speed benchmark: rl_agents PPO against Stable-Baselines3 PPO on CartPole-v1.

Both libraries run CleanRL's ``ppo.py`` defaults (128 steps per env per rollout, 4 epochs,
4 minibatches, lr 2.5e-4 annealed linearly, gamma 0.99, GAE lambda 0.95, clip 0.2,
ent 0.01, vf 0.5, max grad norm 0.5, separate 64-64 tanh actor and critic) on the CPU,
with the same number of torch threads. Seeds are interleaved (ours 0, SB3 0, ours 1, ...)
so that drift in machine load hits both libraries alike. Only the training call is timed.
The raw environment throughput (random actions, no learning) is measured on each
library's vector-env type so the table shows how close each gets to the env's limit.

    python -m benchmarks.speed                      # 4 envs, 50k steps, 3 seeds
    python -m benchmarks.speed --workload cartpole64 --steps 100000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.common import timed

ENV_ID = "CartPole-v1"
NUM_STEPS = 128
NUM_EPOCHS = 4
NUM_MINIBATCHES = 4
LEARNING_RATE = 2.5e-4


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration: the environment and how many copies run in parallel."""

    env_id: str
    num_envs: int
    vectorization: str = "sync"  # ours only: "vector" steps gymnasium's batched CartPole (SB3 cannot)

    @property
    def batch_size(self) -> int:
        return self.num_envs * NUM_STEPS

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // NUM_MINIBATCHES


WORKLOADS: dict[str, Workload] = {
    "cartpole": Workload(ENV_ID, 4),
    "cartpole64": Workload(ENV_ID, 64),
    "cartpole64-batched": Workload(ENV_ID, 64, "vector"),
}


@dataclass(frozen=True)
class RunResult:
    """One timed training run."""

    library: str
    seed: int
    steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def round_to_rollouts(steps: int, workload: Workload) -> int:
    """Round up to whole rollouts so that both libraries do the same number of updates."""
    batch = workload.batch_size
    return max(1, -(-steps // batch)) * batch


def run_ours(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from rl_agents import PPO, Trainer

    envs = gym_envs(workload)
    trainer = Trainer(
        envs,
        [PPO()],
        seed=seed,
        num_steps=NUM_STEPS,
        num_epochs=NUM_EPOCHS,
        num_minibatches=NUM_MINIBATCHES,
    )
    seconds = timed(lambda: trainer.train(total_steps, progress=False))
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds)


def collection_only(workload: Workload, total_steps: int, seed: int) -> float:
    """Steps/s of rl_agents' data collection alone: policy inference, env step and rollout storage,
    through the Collector's public ``act``/``observe`` loop; the batch each full rollout returns is
    dropped instead of trained on."""
    from rl_agents import PPO
    from rl_agents.training import Collector, EnvSpaces, Learner

    envs = gym_envs(workload)
    learner = Learner(EnvSpaces.of(envs), [PPO()], seed=seed, device=torch.device("cpu"), num_steps=NUM_STEPS)
    collector = Collector.for_learner(envs, learner, seed=seed)
    obs, _ = envs.reset(seed=seed)
    iterations = max(total_steps // workload.num_envs, 1)
    start = time.perf_counter()
    for _ in range(iterations):
        action = collector.act(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        collector.observe(obs, reward, terminated, truncated, info)
    seconds = time.perf_counter() - start
    envs.close()
    return iterations * workload.num_envs / seconds


def run_sb3(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(workload.env_id, n_envs=workload.num_envs, seed=seed)
    model = SB3PPO(
        "MlpPolicy",
        envs,
        learning_rate=lambda progress_remaining: LEARNING_RATE * progress_remaining,
        n_steps=NUM_STEPS,
        batch_size=workload.minibatch_size,
        n_epochs=NUM_EPOCHS,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    seconds = timed(lambda: model.learn(total_timesteps=total_steps))
    envs.close()
    return RunResult("sb3", seed, model.num_timesteps, seconds)


def gym_envs(workload: Workload) -> gym.vector.VectorEnv:
    """The vector env rl_agents trains on for a workload: gymnasium's sync one, or make_envs' other kinds."""
    if getattr(workload, "vectorization", "sync") == "sync":  # mujoco.Workload has none
        return gym.make_vec(workload.env_id, num_envs=workload.num_envs, vectorization_mode="sync")
    from rl_agents.envs import make_envs

    return make_envs(workload.env_id, workload.num_envs, workload.vectorization)


def env_only_gym(workload: Workload, total_steps: int, seed: int) -> float:
    """Random-action steps/s of the gymnasium vector env rl_agents steps (sync, or the batched one)."""
    envs = gym_envs(workload)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    iterations = total_steps // workload.num_envs
    start = time.perf_counter()
    for _ in range(iterations):
        envs.step(envs.action_space.sample())
    seconds = time.perf_counter() - start
    envs.close()
    return iterations * workload.num_envs / seconds


def env_only_sb3(workload: Workload, total_steps: int, seed: int) -> float:
    """Random-action steps/s of SB3's DummyVecEnv (what SB3 steps)."""
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(workload.env_id, n_envs=workload.num_envs, seed=seed)
    envs.reset()
    envs.action_space.seed(seed)
    iterations = total_steps // workload.num_envs
    start = time.perf_counter()
    for _ in range(iterations):
        actions = np.array([envs.action_space.sample() for _ in range(workload.num_envs)])
        envs.step(actions)
    seconds = time.perf_counter() - start
    envs.close()
    return iterations * workload.num_envs / seconds


def machine_description(threads: int) -> str:
    processor = platform.processor() or platform.machine()
    return (
        f"torch {torch.__version__} | python {platform.python_version()} | {platform.system()} "
        f"{processor} | nproc {os.cpu_count()} | torch threads {threads}"
    )


def library_versions() -> str:
    import stable_baselines3

    import rl_agents

    return (
        f"rl_agents {rl_agents.__version__} | stable-baselines3 {stable_baselines3.__version__} | "
        f"gymnasium {gym.__version__}"
    )


def run_interleaved(workload: Workload, total_steps: int, seeds: int, console: Console) -> list[RunResult]:
    runners: list[tuple[str, Callable[[Workload, int, int], RunResult]]] = [("rl_agents", run_ours), ("sb3", run_sb3)]
    results: list[RunResult] = []
    for seed in range(seeds):
        for _, runner in runners:
            result = runner(workload, total_steps, seed)
            console.print(
                f"  {result.library:<9} seed {seed}: {result.steps} steps in {result.seconds:6.2f}s "
                f"= {result.steps_per_second:8.0f} steps/s"
            )
            results.append(result)
    return results


def median_sps(results: list[RunResult], library: str) -> float:
    return statistics.median(r.steps_per_second for r in results if r.library == library)


def summary_table(results: list[RunResult], env_gym: float, env_sb3: float, workload_name: str) -> Table:
    table = Table(title=f"PPO training speed, {workload_name} (steps/s, higher is better)")
    table.add_column("library")
    table.add_column("vector env")
    table.add_column("per seed", justify="right")
    table.add_column("median", justify="right")
    table.add_column("env-only", justify="right")
    table.add_column("% of env limit", justify="right")
    rows = [("rl_agents", "gym sync", env_gym), ("sb3", "DummyVecEnv", env_sb3)]
    for library, env_name, env_sps in rows:
        per_seed = ", ".join(f"{r.steps_per_second:.0f}" for r in results if r.library == library)
        median = median_sps(results, library)
        table.add_row(library, env_name, per_seed, f"{median:.0f}", f"{env_sps:.0f}", f"{100 * median / env_sps:.1f}%")
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="cartpole")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps per run (rounded up to whole rollouts)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for both libraries")
    parser.add_argument(
        "--env-steps", type=int, default=None, help="env steps for the env-only measurement (default: --steps)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    workload = WORKLOADS[args.workload]
    total_steps = round_to_rollouts(args.steps, workload)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(machine_description(args.threads))
    console.print(library_versions())
    console.print(
        f"workload {args.workload}: {workload.env_id}, {workload.num_envs} envs x {NUM_STEPS} steps, "
        f"{NUM_EPOCHS} epochs, {NUM_MINIBATCHES} minibatches of {workload.minibatch_size}; "
        f"{total_steps} steps per run, {args.seeds} seeds interleaved"
    )

    env_steps = args.env_steps or total_steps
    env_gym = env_only_gym(workload, env_steps, 0)
    env_sb3 = env_only_sb3(workload, env_steps, 0)
    console.print(f"  env-only  gym sync   : {env_gym:8.0f} steps/s")
    console.print(f"  env-only  DummyVecEnv: {env_sb3:8.0f} steps/s")

    results = run_interleaved(workload, total_steps, args.seeds, console)
    console.print(summary_table(results, env_gym, env_sb3, args.workload))
    ratio = median_sps(results, "rl_agents") / median_sps(results, "sb3")
    console.print(f"ratio rl_agents / sb3 (median steps/s): [bold]{ratio:.2f}x[/bold]")


if __name__ == "__main__":
    main()
