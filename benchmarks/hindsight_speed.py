"""Hindsight speed benchmark: rl_agents' SAC + HER against Stable-Baselines3's SAC + ``HerReplayBuffer``.

Training speed (env steps per second) of four runs, one after another in this process, on the CPU
with the same number of torch threads (``--threads``, default 1): SB3's SAC, SB3's SAC with its
``HerReplayBuffer``, rl_agents' SAC and rl_agents' SAC + HER. The plain SAC rows show what HER itself
costs in each library; the ratio column gives ours / SB3 per pair (SAC against SAC, SAC+HER against
SAC+HER).

Workload: continuous bit flipping, ``rl_agents/BitFlip-v0`` with ``n_bits=15`` and ``continuous=True``
(``Box(-1, 1, (15,))`` actions, every bit whose component is > 0 flips; a Dict observation of float32
``observation``, ``achieved_goal`` and ``desired_goal``; reward -1 per step until the bits equal the
goal, 0 then, which terminates the episode; truncated after 15 steps). Both libraries step the same
env class made by ``gym.make`` (the same wrappers), 1 env: SB3 wraps it in its ``Monitor`` and
``DummyVecEnv`` (the ``HerReplayBuffer`` calls ``compute_reward`` through ``env_method``), ours runs a
gymnasium ``SyncVectorEnv`` in same-step autoreset mode, so that every counted step is a transition,
as in SB3 (``make_envs``'s default next-step mode would count, and not train on, a reset step after
every 15-step episode).

Settings both libraries are given:

* SAC: Adam (eps 1e-8) with lr 1e-3 for actor, critics and temperature (SB3 takes one learning rate),
  actor and twin critics of (256, 256) ReLU MLPs on the three observation keys flattened side by side
  (SB3: ``MultiInputPolicy``, whose ``CombinedExtractor`` flattens them; observations not normalized),
  log-std clamped to [-20, 2], gamma 0.98, automatic temperature from 1.0 toward the target entropy
  -dim(action) = -15, no gradient clipping, no gSDE.
* Schedule: batch 256, buffer 1,000,000 transitions, learning starts 1000 (uniformly random actions in
  [-1, 1] before: SB3's ``action_space.sample()``, ours ``SAC.random_act``; no training), then one
  gradient step per env step (``train_freq`` 1, ``gradient_steps`` 1), target critics moved by Polyak
  averaging with tau 0.05 after every gradient step. Truncated episodes bootstrap, terminated ones do
  not (SB3's ``handle_timeout_termination``).
* HER: ``n_sampled_goal`` 4 (4/5 of each minibatch relabeled), goal selection ``"future"`` (inclusive:
  the transition's own achieved goal may be drawn), the relabeled rewards from the env's
  ``compute_reward``, the stored ``terminated`` flag kept. SB3: ``replay_buffer_class=HerReplayBuffer``
  with ``replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future")``; ours:
  ``HER(n_sampled_goal=4, goal_selection_strategy="future")`` composed with the SAC.

What cannot be made identical (the implementations differ, not the settings):

* rl_agents' Trainer sums the critic, actor and temperature losses into one optimizer step (one
  backward pass), so the actor's loss sees the critics of before this step's update; SB3 steps three
  optimizers one after another, critics first.
* HER's minibatch: SB3 relabels exactly ``int(0.8 * 256)`` = 204 rows of every minibatch and samples
  finished episodes only (it scans ``ep_length > 0`` over every slot of the 1M buffer at each draw);
  ours relabels each row with probability 0.8 (204.8 rows on average) and also samples the running
  episode (its future goals are the ones achieved so far).
* Plain SAC on SB3 uses its ``DictReplayBuffer`` (what SB3 picks for a Dict observation).

Every run takes ``--steps`` env steps (default 5000) from the same seed; ``--repeats`` (default 1)
repeats the whole interleaved set (seeds ``--seed`` + repeat; the order within each pair alternates
between SB3 first and ours first) and the table gives the median steps/s and time. Only the training
call is timed (``model.learn`` / ``trainer.train``; construction excluded). The success rate is
informational: the fraction of the last 100 training episodes (exploring, not an evaluation) that
ended solved (reward 0, i.e. terminated), read from the episode returns (ours:
``trainer.episodes.returns``; SB3: its ``Monitor``): a solved episode returns more than -15.

    python -m benchmarks.hindsight_speed                               # 5000 steps per run
    python -m benchmarks.hindsight_speed --steps 20000 --repeats 3 --seed 2 --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.speed import library_versions, machine_description

ENV_ID = "rl_agents/BitFlip-v0"
N_BITS = 15  # episodes of 15 steps

# The settings given to both libraries
LR = 1e-3  # actor, critics and temperature
NET_ARCH = (256, 256)
GAMMA = 0.98
TAU = 0.05
BATCH_SIZE = 256
BUFFER_SIZE = 1_000_000
LEARNING_STARTS = 1000
TRAIN_FREQ = 1
GRADIENT_STEPS = 1
TARGET_UPDATE_INTERVAL = 1  # gradient steps (SB3: the same at one gradient step per env step)
INITIAL_ALPHA = 1.0
N_SAMPLED_GOAL = 4
GOAL_SELECTION_STRATEGY = "future"

SUCCESS_WINDOW = 100  # episodes
DEFAULT_STEPS = 5000


@dataclass(frozen=True)
class Workload:
    """The environment and the settings a quick check may lower."""

    env_id: str = ENV_ID
    n_bits: int = N_BITS
    learning_starts: int = LEARNING_STARTS
    buffer_size: int = BUFFER_SIZE

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return {"n_bits": self.n_bits, "continuous": True}


@dataclass(frozen=True)
class Variant:
    """One of the four runs: which library, with or without HER."""

    library: str  # "sb3" or "ours"
    her: bool

    @property
    def name(self) -> str:
        return f"{'SB3' if self.library == 'sb3' else 'rl_agents'} SAC{'+HER' if self.her else ''}"


VARIANTS = [Variant("sb3", False), Variant("sb3", True), Variant("ours", False), Variant("ours", True)]


@dataclass(frozen=True)
class TrainedRun:
    """One timed training run."""

    variant: Variant
    seed: int
    steps: int
    seconds: float
    gradient_steps: int
    returns: list[float] = field(repr=False)
    n_bits: int = N_BITS

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds

    @property
    def success_rate(self) -> float:
        """Solved fraction of the last 100 episodes: a solved episode has at most n_bits - 1 rewards of -1."""
        recent = self.returns[-SUCCESS_WINDOW:]
        return float(np.mean([r > -self.n_bits for r in recent])) if recent else math.nan


@dataclass(frozen=True)
class Summary:
    """A variant's runs over the repeats: median steps/s, time and success rate."""

    variant: Variant
    runs: list[TrainedRun]

    @property
    def steps_per_second(self) -> float:
        return statistics.median(run.steps_per_second for run in self.runs)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def success_rate(self) -> float:
        return statistics.median(run.success_rate for run in self.runs)

    @property
    def episodes(self) -> float:
        return statistics.median(len(run.returns) for run in self.runs)


# ---------------------------------------------------------------------------------------------- runs
def make_env(workload: Workload) -> gym.Env:
    """One bit-flipping env, as ``gym.make`` builds it (the same wrappers for both libraries)."""
    from rl_agents.envs import register_bit_flip

    register_bit_flip()
    return gym.make(workload.env_id, **workload.env_kwargs)


def run_ours(workload: Workload, total_steps: int, seed: int, her: bool) -> TrainedRun:
    """rl_agents' SAC (+ HER) at the shared settings; only ``train`` is timed."""
    from rl_agents import Trainer
    from rl_agents.agents import HER, SAC
    from rl_agents.envs import register_bit_flip

    register_bit_flip()
    envs = gym.make_vec(
        workload.env_id,
        num_envs=1,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        **workload.env_kwargs,
    )
    agents: list[Any] = [SAC(lr=LR, gamma=GAMMA, alpha=INITIAL_ALPHA, autotune=True, hidden=NET_ARCH)]
    if her:
        agents.append(HER(n_sampled_goal=N_SAMPLED_GOAL, goal_selection_strategy=GOAL_SELECTION_STRATEGY))
    trainer = Trainer(
        envs,
        agents,
        seed=seed,
        buffer_size=workload.buffer_size,
        batch_size=BATCH_SIZE,
        learning_starts=workload.learning_starts,
        train_frequency=TRAIN_FREQ,
        gradient_steps=GRADIENT_STEPS,
        target_update_interval=TARGET_UPDATE_INTERVAL,
        tau=TAU,
        n_step=1,
        max_grad_norm=None,
    )
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    start = time.perf_counter()
    trainer.train(total_steps, progress=False)
    seconds = time.perf_counter() - start
    envs.close()
    return TrainedRun(
        Variant("ours", her),
        seed,
        trainer.global_step,
        seconds,
        trainer.learner.total_gradient_steps,
        list(trainer.episodes.returns),
        workload.n_bits,
    )


def run_sb3(workload: Workload, total_steps: int, seed: int, her: bool) -> TrainedRun:
    """SB3's SAC (with ``HerReplayBuffer`` if ``her``) at the shared settings; only ``learn`` is timed."""
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(make_env(workload))
    replay: dict[str, Any] = {}
    if her:
        replay = {
            "replay_buffer_class": HerReplayBuffer,
            "replay_buffer_kwargs": {
                "n_sampled_goal": N_SAMPLED_GOAL,
                "goal_selection_strategy": GOAL_SELECTION_STRATEGY,
            },
        }
    model = SB3SAC(
        "MultiInputPolicy",
        env,
        learning_rate=LR,
        buffer_size=workload.buffer_size,
        learning_starts=workload.learning_starts,
        batch_size=BATCH_SIZE,
        tau=TAU,
        gamma=GAMMA,
        train_freq=TRAIN_FREQ,
        gradient_steps=GRADIENT_STEPS,
        ent_coef=f"auto_{INITIAL_ALPHA}",
        target_update_interval=TARGET_UPDATE_INTERVAL,
        target_entropy="auto",
        use_sde=False,
        policy_kwargs={"net_arch": list(NET_ARCH), "normalize_images": False},
        seed=seed,
        device="cpu",
        verbose=0,
        **replay,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    seconds = time.perf_counter() - start
    env.close()
    returns = [float(r) for r in env.get_episode_rewards()]
    return TrainedRun(
        Variant("sb3", her), seed, model.num_timesteps, seconds, int(model._n_updates), returns, workload.n_bits
    )


Runner = Callable[[Workload, int, int, bool], TrainedRun]
RUNNERS: dict[str, Runner] = {"sb3": run_sb3, "ours": run_ours}


def run_order(repeat: int) -> list[Variant]:
    """SAC then SAC+HER, each pair interleaved SB3/ours; who goes first alternates between repeats."""
    libraries = ["sb3", "ours"] if repeat % 2 == 0 else ["ours", "sb3"]
    return [Variant(library, her) for her in (False, True) for library in libraries]


def run_all(
    workload: Workload, total_steps: int, seed: int, repeats: int, threads: int, console: Console
) -> list[Summary]:
    """Every variant ``repeats`` times, interleaved; the summaries in :data:`VARIANTS`' order."""
    runs: dict[Variant, list[TrainedRun]] = {variant: [] for variant in VARIANTS}
    for repeat in range(repeats):
        for variant in run_order(repeat):
            torch.set_num_threads(threads)  # the same for every run, whatever a run left behind
            result = RUNNERS[variant.library](workload, total_steps, seed + repeat, variant.her)
            console.print(
                f"  repeat {repeat + 1}/{repeats} {variant.name:<17} seed {result.seed}: {result.steps} steps in "
                f"{result.seconds:6.1f}s = {result.steps_per_second:6.1f} steps/s, {result.gradient_steps} "
                f"gradient steps, {len(result.returns)} episodes, success {result.success_rate:.2f}"
            )
            runs[variant].append(result)
    return [Summary(variant, runs[variant]) for variant in VARIANTS]


# ---------------------------------------------------------------------------------------------- output
def description(workload: Workload, total_steps: int, repeats: int) -> str:
    return (
        f"{workload.env_id} (n_bits {workload.n_bits}, continuous), 1 env; SAC lr {LR:g} (actor, critics, alpha), "
        f"net {list(NET_ARCH)}, gamma {GAMMA}, tau {TAU}, batch {BATCH_SIZE}, buffer {workload.buffer_size}, "
        f"learning starts {workload.learning_starts} (random actions), {GRADIENT_STEPS} gradient step every "
        f"{TRAIN_FREQ} env step, target update every gradient step, auto entropy from {INITIAL_ALPHA:g} toward "
        f"-{workload.n_bits}; HER n_sampled_goal {N_SAMPLED_GOAL}, strategy {GOAL_SELECTION_STRATEGY!r}; "
        f"{total_steps} steps per run, {repeats} repeat(s)"
    )


def counterpart(summaries: list[Summary], variant: Variant, library: str) -> Summary:
    return next(s for s in summaries if s.variant == Variant(library, variant.her))


def speed_table(summaries: list[Summary]) -> Table:
    """Median steps/s per run, ours / SB3 per pair, and what HER costs against the library's own SAC."""
    repeats = len(summaries[0].runs)
    table = Table(
        title=f"SAC + HER training speed on {ENV_ID} (steps/s, higher is better; median of {repeats} repeat(s))",
        caption=f"ours/SB3: steps/s ratio to SB3's same run; HER speed: steps/s ratio to the library's own SAC; "
        f"success: solved fraction of the last {SUCCESS_WINDOW} training episodes (exploring)",
    )
    table.add_column("run", no_wrap=True)
    for column in ["steps", "gradient steps", "time (s)", "steps/s", "ours/SB3", "HER speed", "episodes", "success"]:
        table.add_column(column, justify="right")
    for summary in summaries:
        variant, first = summary.variant, summary.runs[0]
        sb3 = counterpart(summaries, variant, "sb3")
        plain = next(s for s in summaries if s.variant == Variant(variant.library, False))
        table.add_row(
            variant.name,
            str(first.steps),
            str(first.gradient_steps),
            f"{summary.seconds:.1f}",
            f"{summary.steps_per_second:.1f}",
            "-" if variant.library == "sb3" else f"{summary.steps_per_second / sb3.steps_per_second:.2f}x",
            f"{summary.steps_per_second / plain.steps_per_second:.2f}x" if variant.her else "-",
            f"{summary.episodes:g}",
            f"{summary.success_rate:.2f}",
        )
    return table


def ratio_line(summaries: list[Summary]) -> str:
    parts = []
    for her in (False, True):
        ours = next(s for s in summaries if s.variant == Variant("ours", her))
        sb3 = counterpart(summaries, ours.variant, "sb3")
        parts.append(f"{ours.variant.name} / {sb3.variant.name} = {ours.steps_per_second / sb3.steps_per_second:.2f}x")
    return "steps/s ratios, ours / SB3: " + "; ".join(parts)


# ---------------------------------------------------------------------------------------------- CLI
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="env steps per training run")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first repeat (repeat i: seed + i)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads for every run")
    parser.add_argument(
        "--repeats", type=positive_int, default=1, help="repeats of the interleaved set; the table gives medians"
    )
    parser.add_argument(
        "--learning-starts",
        type=non_negative_int,
        default=LEARNING_STARTS,
        help="random-action steps before training (lower it only for quick checks)",
    )
    parser.add_argument(
        "--buffer-size",
        type=positive_int,
        default=BUFFER_SIZE,
        help="replay buffer size in transitions (lower it only for quick checks)",
    )
    args = parser.parse_args(argv)
    if args.steps <= args.learning_starts:
        parser.error(f"--steps must exceed the learning starts ({args.learning_starts}) so that the runs train")
    if args.learning_starts < N_BITS:
        parser.error(
            f"--learning-starts must be at least one episode ({N_BITS} steps): SB3's HER samples finished ones"
        )
    return args


def main(argv: list[str] | None = None) -> list[Summary]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(machine_description(args.threads))
    console.print(library_versions())
    workload = Workload(learning_starts=args.learning_starts, buffer_size=args.buffer_size)
    console.print(description(workload, args.steps, args.repeats))
    summaries = run_all(workload, args.steps, args.seed, args.repeats, args.threads, console)
    console.print(speed_table(summaries))
    console.print(ratio_line(summaries))
    return summaries


if __name__ == "__main__":
    main()
