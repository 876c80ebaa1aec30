"""Time to solve CartPole-v1: env steps and seconds until the mean return of the last 20 episodes is >= 475.

Each library with its tuned PPO for the task:

* ours: the shipped preset ``rl_agents/config/presets/CartPole-v1.yaml`` (``load_preset`` + ``make_trainer``,
  as ``rl-agents train --preset CartPole-v1`` builds it): 8 envs x 32 steps, 10 epochs of 1 minibatch
  of 256, lr 4e-3 annealed linearly, gamma 0.98, GAE lambda 0.8, ent 0, clip 0.2, no value-loss
  clipping, separate 64-64 tanh actor and critic.
* SB3: rl-zoo3's tuned CartPole-v1 entry (``hyperparams/ppo.yml``): n_envs 8, MlpPolicy, n_steps 32,
  batch_size 256, n_epochs 20, gamma 0.98, gae_lambda 0.8, ent_coef 0, learning_rate lin_1e-3,
  clip_range lin_0.2 (SB3's defaults otherwise: vf 0.5, max grad norm 0.5, 64-64 tanh actor and critic).

They differ in the epochs (10 vs 20) and learning rate (4e-3 vs 1e-3), our preset's tuning, and in
the clip range, which rl-zoo3 anneals to 0 with the learning rate and ours keeps at 0.2.
Both anneal over the step cap given to the training call (default 100,096: the preset's
100k steps and rl-zoo3's ``n_timesteps``, rounded up to whole rollouts of 256), which is also the
budget: a run that has not reached the threshold by then counts as not solved.

The condition is checked after every rollout of 256 steps on both sides, on the returns of the
episodes finished so far (ours: ``trainer.episodes.returns`` through ``train(stop_when=...)``; SB3:
its ``Monitor``'s episode returns, through a callback on the rollout's last step), and needs 20 finished
episodes. Ours updates on that last rollout before it stops; SB3 stops before updating on it. Only
the training call is timed.

Run it with ``python -m benchmarks --workloads cartpole-solve [--steps CAP] [--seeds N]``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.common import sb3_episode_recorder, timed
from benchmarks.offpolicy import RETURN_WINDOW, RunResult

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0
DEFAULT_STEPS = 100_000  # the preset's steps and rl-zoo3's n_timesteps
QUICK_STEPS = 2_048  # --quick: 8 rollouts, a smoke check (too few to solve)

# rl-zoo3 hyperparams/ppo.yml, CartPole-v1 (marked "Tuned")
ZOO_N_ENVS = 8
ZOO_N_STEPS = 32
ZOO_BATCH_SIZE = 256
ZOO_N_EPOCHS = 20
ZOO_GAMMA = 0.98
ZOO_GAE_LAMBDA = 0.8
ZOO_ENT_COEF = 0.0
ZOO_LEARNING_RATE = 1e-3  # lin_: annealed to 0
ZOO_CLIP_RANGE = 0.2  # lin_: annealed to 0


@dataclass(frozen=True)
class Workload:
    """The task, the threshold, and the rollout size both sides share (8 envs x 32 steps)."""

    env_id: str = ENV_ID
    threshold: float = THRESHOLD
    window: int = RETURN_WINDOW
    num_envs: int = ZOO_N_ENVS
    num_steps: int = ZOO_N_STEPS

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


WORKLOAD = Workload()


@dataclass(frozen=True)
class SolveResult(RunResult):
    """A run that stopped at the threshold (``solved``) or at the step cap; ``steps``/``seconds`` are
    where it stopped."""

    solved: bool


def is_solved(returns: Sequence[float], workload: Workload) -> bool:
    """Whether the last ``window`` episodes (all of them finished) average at least the threshold."""
    return len(returns) >= workload.window and float(np.mean(returns[-workload.window :])) >= workload.threshold


def round_to_rollouts(steps: int, workload: Workload = WORKLOAD) -> int:
    return max(1, -(-steps // workload.batch_size)) * workload.batch_size


def describe(total_steps: int) -> str:
    return (
        f"{ENV_ID} until the last-{WORKLOAD.window} mean return >= {WORKLOAD.threshold:g}, "
        f"at most {total_steps} steps: "
        f"ours the shipped preset, SB3 rl-zoo3's tuned PPO ({ZOO_N_ENVS} envs x {ZOO_N_STEPS} steps, {ZOO_N_EPOCHS} "
        f"epochs of {ZOO_BATCH_SIZE}, lr {ZOO_LEARNING_RATE:g} annealed, "
        f"gamma {ZOO_GAMMA:g}, lambda {ZOO_GAE_LAMBDA:g}, "
        f"ent {ZOO_ENT_COEF:g}; clip {ZOO_CLIP_RANGE:g}, annealed in SB3's)"
    )


def run_ours(workload: Workload, total_steps: int, seed: int) -> SolveResult:
    from rl_agents.config import config_from_dict, load_preset
    from rl_agents.training import make_trainer

    raw = {**load_preset(workload.env_id, "ppo"), "steps": total_steps, "seed": seed}
    config = config_from_dict(raw, f"preset {workload.env_id}")
    if (config.trainer.num_envs, config.trainer.schedule.get("num_steps")) != (workload.num_envs, workload.num_steps):
        raise ValueError(
            f"the {workload.env_id} preset no longer runs {workload.num_envs} envs x {workload.num_steps} steps"
        )
    trainer = make_trainer(config)
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    seconds = timed(
        lambda: trainer.train(total_steps, progress=False, stop_when=lambda t: is_solved(t.episodes.returns, workload))
    )
    trainer.envs.close()
    returns = list(trainer.episodes.returns)
    return SolveResult("rl_agents", seed, trainer.global_step, seconds, returns, is_solved(returns, workload))


def run_sb3(workload: Workload, total_steps: int, seed: int) -> SolveResult:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(workload.env_id, n_envs=workload.num_envs, seed=seed)
    model = SB3PPO(
        "MlpPolicy",
        envs,
        n_steps=workload.num_steps,
        batch_size=ZOO_BATCH_SIZE,
        n_epochs=ZOO_N_EPOCHS,
        gamma=ZOO_GAMMA,
        gae_lambda=ZOO_GAE_LAMBDA,
        ent_coef=ZOO_ENT_COEF,
        learning_rate=lambda progress_remaining: ZOO_LEARNING_RATE * progress_remaining,
        clip_range=lambda progress_remaining: ZOO_CLIP_RANGE * progress_remaining,
        seed=seed,
        device="cpu",
        verbose=0,
    )
    returns: list[float] = []
    recorder = sb3_episode_recorder(returns, lambda done: is_solved(done, workload), check_every=workload.num_steps)
    seconds = timed(lambda: model.learn(total_timesteps=total_steps, callback=recorder))
    envs.close()
    return SolveResult("sb3", seed, model.num_timesteps, seconds, returns, is_solved(returns, workload))


def median_to_threshold(results: Sequence[SolveResult], measure: str) -> float:
    """Median over seeds of ``measure`` ("steps" or "seconds") at the threshold; an unsolved run counts as
    infinite, so the median is infinite when half the runs or more did not solve the task."""
    return statistics.median(getattr(r, measure) if r.solved else math.inf for r in results)


def outcome(result: SolveResult) -> str:
    if result.solved:
        return f"solved at {result.steps} steps, {result.seconds:.2f}s"
    return f"not solved in {result.steps} steps ({result.seconds:.2f}s, final return {result.final_return:.1f})"
