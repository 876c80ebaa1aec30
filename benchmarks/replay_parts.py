"""Replay-parts benchmark: what prioritized replay costs, and how fast DQN, DQN+PER and Rainbow train.

Two sections, both on the CPU with the same number of torch threads (``--threads``, default 1):

* ``sampling`` (no training, no env): a :class:`~rl_agents.training.replay.ReplayBuffer` of 100k
  transitions of 1 env holding MinAtar-shaped data (``obs`` and ``next_obs`` uint8 [4, 10, 10] of 0s and
  1s, ``action`` int64, ``reward/extrinsic`` float32, ``terminated``/``truncated``/``valid`` bool), filled
  once by one ``add``, uniform (no sampler) and prioritized (``PER()``'s default sampler, its priorities
  set to random values first so that the tree is not flat). Timed with ``time.perf_counter`` around
  ``--sampling-repeats`` calls, 5 rounds after one untimed warm-up round; the table gives the median
  round's microseconds per call and per transition: ``sample(32)`` (uniform; PER draws at progress 0.5,
  importance weights included), PER's ``feedback`` of 32 priorities (tensors in, as the Learner passes
  them; uniform replay makes no such call), ``add`` of a 4-step chunk (one training phase at
  ``train_frequency`` 4), and a gradient step's replay work (uniform: one sample; PER: one sample and
  one feedback). PER's overhead is its time minus uniform's. The raw
  :class:`~rl_agents.core.sum_tree.SumTree` at 1M leaves (random priorities): ``set`` of 32 random
  leaves and ``find`` of 32 random targets.
* ``speed``: training on MinAtar/Breakout-v1 (1 env, MinAtar's sticky actions and difficulty ramping)
  of rl_agents' DQN, Stable-Baselines3's DQN, rl_agents' DQN+PER and rl_agents' Rainbow, one after
  another in this process with the same seed. Settings both libraries express identically: lr 2.5e-4,
  Adam eps 1e-8, batch 32, buffer 100k, learning starts 1000 (random actions before), one gradient step
  every 4 env steps, target network hard-copied every 1000 env steps (ours: every 250 gradient steps,
  which falls on the same env steps), epsilon 1 -> 0.01 linearly over the first 10% of the run, gamma
  0.99, Huber loss, max-Q target (ours ``double=False``), gradients clipped to norm 10. Network: the
  MinAtar one, Conv2d(C, 16, 3) + ReLU + Linear(1024, 128) + ReLU + Linear(128, actions), for SB3 a
  features extractor of exactly those layers up to the 128 units and ``net_arch=[]``, observations
  not rescaled. Ours runs its vector env in same-step autoreset mode, so every counted step is a
  transition, as in SB3. DQN+PER is the same DQN with ``PER()`` (alpha 0.6, beta 0.4 -> 1). Rainbow is
  the same settings plus dueling, C51 (51 atoms on [-100, 100]), noisy nets, double Q,
  ``PER(alpha=0.5, beta=0.5, final_beta=0.5)`` and 3-step returns; it keeps the same epsilon schedule
  for comparability. SB3 has no prioritized replay and no Rainbow: those two rows have no SB3
  counterpart, and their ratio is against SB3's plain DQN. Steps are rounded up to whole training
  phases (4 steps), so every run does the same number of gradient steps. Only the training call is
  timed (construction excluded). The final return is the mean of the last 20 training episodes
  (exploring, not an evaluation; ours: ``trainer.episodes.returns``; SB3: its ``Monitor``).

    python -m benchmarks.replay_parts                                   # both sections, 30k steps per run
    python -m benchmarks.replay_parts --only sampling --sampling-repeats 500
    python -m benchmarks.replay_parts --only speed --steps 5000 --seed 2 --threads 1
"""

from __future__ import annotations

import argparse
import functools
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from benchmarks.offpolicy import RETURN_WINDOW, RunResult, run_workload
from benchmarks.speed import library_versions, machine_description

ENV_ID = "MinAtar/Breakout-v1"

# The speed comparison's settings, given to both libraries
LR = 2.5e-4
ADAM_EPS = 1e-8  # SB3's DQN: torch's Adam default
BATCH_SIZE = 32
BUFFER_SIZE = 100_000
LEARNING_STARTS = 1000
TRAIN_FREQ = 4
GRADIENT_STEPS = 1
TARGET_UPDATE_ENV_STEPS = 1000  # SB3 counts env steps
OURS_TARGET_UPDATE = TARGET_UPDATE_ENV_STEPS // TRAIN_FREQ * GRADIENT_STEPS  # ours counts gradient steps: 250
EXPLORATION_FRACTION = 0.1
INITIAL_EPS = 1.0
FINAL_EPS = 0.01
GAMMA = 0.99
MAX_GRAD_NORM = 10.0
MINATAR_HIDDEN = 128

# Rainbow's additions (rl_agents only)
RAINBOW_ATOMS = 51
RAINBOW_V_MIN, RAINBOW_V_MAX = -100.0, 100.0
RAINBOW_N_STEP = 3
RAINBOW_PER = {"alpha": 0.5, "beta": 0.5, "final_beta": 0.5}

# The sampling section
SAMPLING_CAPACITY = 100_000
SAMPLING_BATCH = 32
SAMPLING_CHUNK = 4  # vector steps per add: one training phase at train_frequency 4
SAMPLING_ROUNDS = 5
SAMPLING_PROGRESS = 0.5  # PER's beta schedule position for the timed draws
TREE_LEAVES = 1_000_000
MINATAR_OBS_SHAPE = (4, 10, 10)
POOL = 64  # distinct inputs cycled through by the timed calls


# ---------------------------------------------------------------------------------------------- sampling
@dataclass(frozen=True)
class ReplayTiming:
    """One replay operation: median microseconds per call, uniform and prioritized."""

    operation: str
    transitions: int  # transitions each call handles
    uniform_us: float | None  # None: uniform replay makes no such call
    per_us: float

    @property
    def overhead_us(self) -> float:
        return self.per_us - (self.uniform_us or 0.0)


@dataclass(frozen=True)
class TreeTiming:
    """One sum-tree operation on a batch of indices: median microseconds per call."""

    operation: str
    leaves: int
    items: int
    us: float


def time_call(
    call: Callable[[], Any], repeats: int, rounds: int = SAMPLING_ROUNDS, between: Callable[[], Any] | None = None
) -> float:
    """Median over ``rounds`` (after one untimed warm-up round) of the microseconds per ``call()``, each
    round timing ``repeats`` calls; ``between`` runs untimed before every round."""
    per_call: list[float] = []
    for round_index in range(rounds + 1):
        if between is not None:
            between()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        seconds = time.perf_counter() - start
        if round_index > 0:
            per_call.append(seconds / repeats * 1e6)
    return statistics.median(per_call)


def minatar_chunk(length: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``[length, 1, ...]`` transitions shaped as MinAtar Breakout's (random contents)."""
    shape = (length, 1)
    return {
        "obs": torch.randint(0, 2, (*shape, *MINATAR_OBS_SHAPE), dtype=torch.uint8, generator=generator),
        "next_obs": torch.randint(0, 2, (*shape, *MINATAR_OBS_SHAPE), dtype=torch.uint8, generator=generator),
        "action": torch.randint(0, 3, shape, dtype=torch.int64, generator=generator),
        "reward/extrinsic": torch.rand(shape, generator=generator),
        "terminated": torch.rand(shape, generator=generator) < 0.01,
        "truncated": torch.zeros(shape, dtype=torch.bool),
        "valid": torch.ones(shape, dtype=torch.bool),
    }


def filled_buffers(capacity: int, seed: int) -> tuple[Any, Any]:
    """A uniform and a prioritized replay buffer holding the same ``capacity`` transitions; the
    prioritized one's priorities are random (as after training), not all the initial maximum."""
    from rl_agents.agents import PER
    from rl_agents.training.replay import ReplayBuffer

    generator = torch.Generator().manual_seed(seed)
    chunk = minatar_chunk(capacity, generator)
    uniform = ReplayBuffer(capacity, 1, torch.device("cpu"))
    prioritized = ReplayBuffer(capacity, 1, torch.device("cpu"), sampler=PER().replay_sampler())
    uniform.add(chunk)
    prioritized.add(chunk)
    prioritized.feedback(torch.arange(capacity), torch.rand(capacity, generator=generator, dtype=torch.float64))
    prioritized.sampler.mark()  # drop the fill's undo journal (the Learner marks before every update)
    return uniform, prioritized


def measure_replay(repeats: int, capacity: int = SAMPLING_CAPACITY, seed: int = 0) -> list[ReplayTiming]:
    """Uniform against prioritized replay: sample, feedback, add, and a gradient step's replay work."""
    uniform, prioritized = filled_buffers(capacity, seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = prioritized.sampler

    def sample_uniform() -> None:
        uniform.sample(SAMPLING_BATCH, generator)

    def sample_per() -> None:
        prioritized.sample(SAMPLING_BATCH, generator, progress=SAMPLING_PROGRESS)

    feedbacks = itertools.cycle(
        [
            (
                torch.randint(capacity, (SAMPLING_BATCH,), generator=generator),
                torch.rand(SAMPLING_BATCH, generator=generator),
            )
            for _ in range(POOL)
        ]
    )

    def feedback_per() -> None:
        prioritized.feedback(*next(feedbacks))

    chunks = itertools.cycle([minatar_chunk(SAMPLING_CHUNK, generator) for _ in range(POOL)])

    sample_us = time_call(sample_uniform, repeats)
    sample_per_us = time_call(sample_per, repeats)
    feedback_us = time_call(feedback_per, repeats, between=sampler.mark)
    add_us = time_call(lambda: uniform.add(next(chunks)), repeats)
    add_per_us = time_call(lambda: prioritized.add(next(chunks)), repeats, between=sampler.mark)
    sampler.mark()
    return [
        ReplayTiming(f"sample({SAMPLING_BATCH})", SAMPLING_BATCH, sample_us, sample_per_us),
        ReplayTiming(f"feedback({SAMPLING_BATCH} priorities)", SAMPLING_BATCH, None, feedback_us),
        ReplayTiming(f"add({SAMPLING_CHUNK}-step chunk)", SAMPLING_CHUNK, add_us, add_per_us),
        ReplayTiming("per gradient step (sample + feedback)", SAMPLING_BATCH, sample_us, sample_per_us + feedback_us),
    ]


def measure_sum_tree(repeats: int, leaves: int = TREE_LEAVES, seed: int = 0) -> list[TreeTiming]:
    """The raw sum tree at ``leaves`` random priorities: set of 32 leaves, find of 32 targets."""
    from rl_agents.core.sum_tree import SumTree

    rng = np.random.default_rng(seed)
    tree = SumTree(leaves)
    tree.leaves[:] = rng.random(leaves)
    tree.rebuild()
    sets = itertools.cycle([(rng.integers(0, leaves, SAMPLING_BATCH), rng.random(SAMPLING_BATCH)) for _ in range(POOL)])
    finds = itertools.cycle([rng.random(SAMPLING_BATCH) * tree.total for _ in range(POOL)])
    find_us = time_call(lambda: tree.find(next(finds)), repeats)  # first: the sets change the total
    set_us = time_call(lambda: tree.set(*next(sets)), repeats)
    return [
        TreeTiming(f"set({SAMPLING_BATCH} leaves)", leaves, SAMPLING_BATCH, set_us),
        TreeTiming(f"find({SAMPLING_BATCH} targets)", leaves, SAMPLING_BATCH, find_us),
    ]


def replay_table(rows: list[ReplayTiming], capacity: int) -> Table:
    table = Table(
        title=f"Replay cost, {capacity:,} stored MinAtar transitions, 1 env (median microseconds, lower is better)",
        caption="per transition (us/tr.): per call / transitions; overhead: PER's us/call minus uniform's; "
        "per gradient step: uniform samples, PER samples and feeds back",
    )
    table.add_column("operation", no_wrap=True)
    for column in ["transitions", "uniform us", "PER us", "uniform us/tr.", "PER us/tr.", "overhead us", "PER/uniform"]:
        table.add_column(column, justify="right")
    for row in rows:
        uniform = row.uniform_us
        table.add_row(
            row.operation,
            str(row.transitions),
            "-" if uniform is None else f"{uniform:.1f}",
            f"{row.per_us:.1f}",
            "-" if uniform is None else f"{uniform / row.transitions:.2f}",
            f"{row.per_us / row.transitions:.2f}",
            f"{row.overhead_us:+.1f}",
            "-" if uniform is None else f"{row.per_us / uniform:.2f}x",
        )
    return table


def tree_table(rows: list[TreeTiming]) -> Table:
    table = Table(title="SumTree (vectorized numpy), random priorities (median microseconds, lower is better)")
    table.add_column("operation")
    for column in ["leaves", "us/call", "us/item"]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.operation, f"{row.leaves:,}", f"{row.us:.1f}", f"{row.us / row.items:.2f}")
    return table


# ---------------------------------------------------------------------------------------------- speed
@dataclass(frozen=True)
class SpeedWorkload:
    """The speed comparison's environment and the settings a quick check may lower."""

    env_id: str = ENV_ID
    learning_starts: int = LEARNING_STARTS
    buffer_size: int = BUFFER_SIZE


@dataclass(frozen=True)
class TrainedRun(RunResult):
    """A timed training run and the gradient steps it took."""

    gradient_steps: int = 0


VARIANTS = {"dqn": "rl_agents DQN", "per": "rl_agents DQN+PER", "rainbow": "rl_agents Rainbow"}
SB3_NAME = "SB3 DQN"


def round_to_phases(steps: int) -> int:
    """Round up to whole training phases so that every run does the same number of gradient steps."""
    return max(1, -(-steps // TRAIN_FREQ)) * TRAIN_FREQ


def exploration_steps(total_steps: int) -> int:
    return int(EXPLORATION_FRACTION * total_steps)


def register_minatar() -> None:
    """Register the MinAtar/<Game> ids once (``register_envs`` re-registers, with a warning, every call)."""
    import minatar.gym

    if not any(key.startswith("MinAtar/") for key in gym.registry):
        minatar.gym.register_envs()


def ours_envs(env_id: str) -> gym.vector.VectorEnv:
    """One env, rl_agents' MinAtar wrapper, same-step autoreset (every counted step is a transition)."""
    from rl_agents.envs.make import ChannelsFirstUint8

    register_minatar()
    return gym.make_vec(
        env_id,
        num_envs=1,
        vectorization_mode="sync",
        wrappers=[ChannelsFirstUint8],
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )


def run_ours(workload: SpeedWorkload, total_steps: int, seed: int, variant: str = "dqn") -> TrainedRun:
    """rl_agents' ``variant`` ("dqn", "per" or "rainbow") at the shared settings; only ``train`` is timed."""
    from rl_agents import DQN, Trainer
    from rl_agents.agents import PER

    rainbow = variant == "rainbow"
    dqn_options: dict[str, Any] = {
        "lr": LR,
        "adam_eps": ADAM_EPS,
        "gamma": GAMMA,
        "double": rainbow,  # the plain runs: max-Q target, as SB3
        "huber": True,
        "initial_epsilon": INITIAL_EPS,
        "final_epsilon": FINAL_EPS,
        "exploration_steps": exploration_steps(total_steps),
    }
    if rainbow:
        dqn_options.update(dueling=True, atoms=RAINBOW_ATOMS, v_min=RAINBOW_V_MIN, v_max=RAINBOW_V_MAX, noisy=True)
    agents: list[Any] = [DQN(**dqn_options)]
    if variant == "per":
        agents.append(PER())
    elif rainbow:
        agents.append(PER(**RAINBOW_PER))
    envs = ours_envs(workload.env_id)
    trainer = Trainer(
        envs,
        agents,
        seed=seed,
        buffer_size=workload.buffer_size,
        batch_size=BATCH_SIZE,
        learning_starts=workload.learning_starts,
        train_frequency=TRAIN_FREQ,
        gradient_steps=GRADIENT_STEPS,
        target_update_interval=OURS_TARGET_UPDATE,
        tau=1.0,
        n_step=RAINBOW_N_STEP if rainbow else 1,
        max_grad_norm=MAX_GRAD_NORM,
    )
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    start = time.perf_counter()
    trainer.train(total_steps, progress=False)
    seconds = time.perf_counter() - start
    envs.close()
    return TrainedRun(
        VARIANTS[variant],
        seed,
        trainer.global_step,
        seconds,
        list(trainer.episodes.returns),
        trainer.learner.total_gradient_steps,
    )


def sb3_features_extractor() -> type:
    """SB3 features extractor: the MinAtar network up to its 128 units (Conv2d(C, 16, 3), ReLU, Linear, ReLU)."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MinAtarFeatures(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box):
            super().__init__(observation_space, features_dim=MINATAR_HIDDEN)
            channels, height, width = observation_space.shape
            self.net = nn.Sequential(
                nn.Conv2d(channels, 16, 3),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(16 * (height - 2) * (width - 2), MINATAR_HIDDEN),
                nn.ReLU(),
            )

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.net(observations)

    return MinAtarFeatures


def run_sb3(workload: SpeedWorkload, total_steps: int, seed: int) -> TrainedRun:
    """SB3's DQN at the shared settings, on one MinAtar env with rl_agents' wrapper; only ``learn`` is timed."""
    from stable_baselines3 import DQN as SB3DQN
    from stable_baselines3.common.monitor import Monitor

    from rl_agents.envs.make import ChannelsFirstUint8

    register_minatar()
    env = Monitor(ChannelsFirstUint8(gym.make(workload.env_id)))
    model = SB3DQN(
        "MlpPolicy",
        env,
        learning_rate=LR,
        buffer_size=workload.buffer_size,
        learning_starts=workload.learning_starts,
        batch_size=BATCH_SIZE,
        tau=1.0,
        gamma=GAMMA,
        train_freq=TRAIN_FREQ,
        gradient_steps=GRADIENT_STEPS,
        target_update_interval=TARGET_UPDATE_ENV_STEPS,
        exploration_fraction=EXPLORATION_FRACTION,
        exploration_initial_eps=INITIAL_EPS,
        exploration_final_eps=FINAL_EPS,
        max_grad_norm=MAX_GRAD_NORM,
        policy_kwargs={
            "features_extractor_class": sb3_features_extractor(),
            "net_arch": [],
            "normalize_images": False,
            "optimizer_kwargs": {"eps": ADAM_EPS},
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps)
    seconds = time.perf_counter() - start
    env.close()
    returns = [float(r) for r in env.get_episode_rewards()]
    return TrainedRun(SB3_NAME, seed, model.num_timesteps, seconds, returns, int(model._n_updates))


def run_speed(
    total_steps: int, seed: int, threads: int, console: Console, workload: SpeedWorkload | None = None
) -> list[TrainedRun]:
    """Ours DQN, SB3 DQN, ours DQN+PER, ours Rainbow, in that order, ``total_steps`` (rounded up to whole
    training phases) each, with the same seed and torch threads."""
    workload = SpeedWorkload() if workload is None else workload
    runners = [
        functools.partial(run_ours, variant="dqn"),
        run_sb3,
        functools.partial(run_ours, variant="per"),
        functools.partial(run_ours, variant="rainbow"),
    ]
    results = run_workload(workload, round_to_phases(total_steps), seed, threads, console, runners)
    return [result for result in results if isinstance(result, TrainedRun)]


def speed_description(workload: SpeedWorkload, total_steps: int) -> str:
    return (
        f"speed: {workload.env_id}, 1 env, lr {LR:g}, Adam eps {ADAM_EPS:g}, batch {BATCH_SIZE}, "
        f"buffer {workload.buffer_size}, learning starts {workload.learning_starts}, {GRADIENT_STEPS} gradient step "
        f"every {TRAIN_FREQ} env steps, target copied every {TARGET_UPDATE_ENV_STEPS} env steps, epsilon "
        f"{INITIAL_EPS:g} -> {FINAL_EPS:g} over {exploration_steps(total_steps)} steps, gamma {GAMMA}, Huber, "
        f"max-Q target, grad norm {MAX_GRAD_NORM:g}, MinAtar net; {total_steps} steps per run. Rainbow adds "
        f"dueling, C51 ({RAINBOW_ATOMS} atoms on [{RAINBOW_V_MIN:g}, {RAINBOW_V_MAX:g}]), noisy nets, double Q, "
        f"PER(alpha {RAINBOW_PER['alpha']}, beta {RAINBOW_PER['beta']}) and {RAINBOW_N_STEP}-step returns"
    )


def speed_table(results: list[TrainedRun]) -> Table:
    """Each run's steps/s, its ratio to SB3's DQN, gradient steps and final return."""
    sb3 = next(result for result in results if result.library == SB3_NAME)
    table = Table(
        title=f"Training speed on {ENV_ID} (steps/s, higher is better)",
        caption=f"final return: mean of the last {RETURN_WINDOW} training episodes (exploring); "
        "SB3 has no PER or Rainbow",
    )
    table.add_column("run", no_wrap=True)
    for column in ["steps", "gradient steps", "time (s)", "steps/s", "vs SB3 DQN", "episodes", "final return"]:
        table.add_column(column, justify="right")
    for result in results:
        table.add_row(
            result.library,
            str(result.steps),
            str(result.gradient_steps),
            f"{result.seconds:.1f}",
            f"{result.steps_per_second:.0f}",
            f"{result.steps_per_second / sb3.steps_per_second:.2f}x",
            str(len(result.returns)),
            f"{result.final_return:.1f}",
        )
    return table


# ---------------------------------------------------------------------------------------------- CLI
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--steps", type=positive_int, default=30_000, help="env steps per training run, rounded up to a multiple of 4"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=positive_int, default=1, help="torch.set_num_threads for every run")
    parser.add_argument("--only", choices=["sampling", "speed"], default=None, help="run one section (default: both)")
    parser.add_argument(
        "--sampling-repeats", type=positive_int, default=2000, help="timed calls per round in the sampling section"
    )
    args = parser.parse_args(argv)
    if args.only != "sampling" and args.steps <= LEARNING_STARTS:
        parser.error(f"--steps must exceed the learning starts ({LEARNING_STARTS}) so that the runs train")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(machine_description(args.threads))
    console.print(library_versions())
    if args.only in (None, "sampling"):
        console.print(
            f"sampling: {args.sampling_repeats} calls per round, median of {SAMPLING_ROUNDS} rounds; "
            f"PER: PER() defaults, draws at progress {SAMPLING_PROGRESS}"
        )
        console.print(replay_table(measure_replay(args.sampling_repeats), SAMPLING_CAPACITY))
        console.print(tree_table(measure_sum_tree(args.sampling_repeats)))
    if args.only in (None, "speed"):
        workload = SpeedWorkload()
        total_steps = round_to_phases(args.steps)
        console.print(speed_description(workload, total_steps))
        results = run_speed(total_steps, args.seed, args.threads, console, workload)
        console.print(speed_table(results))
        console.print(
            "SB3 has no prioritized replay and no Rainbow: the DQN+PER and Rainbow rows have no SB3 "
            "counterpart (their ratio is against SB3's plain DQN)."
        )


if __name__ == "__main__":
    main()
