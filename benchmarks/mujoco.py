"""PPO on HalfCheetah-v5 at CleanRL's ``ppo_continuous_action.py`` defaults, rl_agents against Stable-Baselines3.

Settings for both libraries: 1 env, 2048 steps per rollout, 10 epochs, 32 minibatches (of 64),
lr 3e-4 annealed linearly, gamma 0.99, GAE lambda 0.95, clip 0.2, ent 0, vf 0.5, max grad norm 0.5,
separate 64-64 tanh actor and critic with a state-independent log std, observation normalization
and reward scaling (running std of the discounted return), both clipped to +-10. Ours: ``PPO()``
picks all of these for Box actions. SB3: ``PPO("MlpPolicy")`` with those arguments inside
``VecNormalize(norm_obs=True, norm_reward=True, clip_obs=10, clip_reward=10, gamma=0.99)``.
Remaining difference: ours clips the value loss (CleanRL's ``clip_vloss``), SB3 does not
(``clip_range_vf=None``, its default, as in ``benchmarks/speed.py``).

Used by ``python -m benchmarks --workloads ppo-halfcheetah``; on its own:

    python -m benchmarks.mujoco --steps 20480 --seed 0
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import gymnasium as gym
import torch

from benchmarks.common import timed
from benchmarks.speed import RunResult, env_only_gym

ENV_ID = "HalfCheetah-v5"
NUM_ENVS = 1
NUM_STEPS = 2048
NUM_EPOCHS = 10
NUM_MINIBATCHES = 32
LEARNING_RATE = 3e-4
GAMMA = 0.99
CLIP = 10.0


@dataclass(frozen=True)
class Workload:
    env_id: str = ENV_ID
    num_envs: int = NUM_ENVS

    @property
    def batch_size(self) -> int:
        return self.num_envs * NUM_STEPS

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // NUM_MINIBATCHES


WORKLOAD = Workload()


def round_to_rollouts(steps: int, workload: Workload = WORKLOAD) -> int:
    batch = workload.batch_size
    return max(1, -(-steps // batch)) * batch


def describe(total_steps: int) -> str:
    return (
        f"{ENV_ID}, {NUM_ENVS} env x {NUM_STEPS} steps, {NUM_EPOCHS} epochs, {NUM_MINIBATCHES} minibatches of "
        f"{WORKLOAD.minibatch_size}, lr {LEARNING_RATE:g} annealed, obs+reward normalization; "
        f"{total_steps} steps per run"
    )


def run_ours(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from rl_agents import PPO, Trainer

    envs = gym.make_vec(workload.env_id, num_envs=workload.num_envs, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()], seed=seed)  # PPO's suggested schedule for Box actions: 2048 x 10 x 32
    seconds = timed(lambda: trainer.train(total_steps, progress=False))
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds)


def run_sb3(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    envs = VecNormalize(
        make_vec_env(workload.env_id, n_envs=workload.num_envs, seed=seed),
        norm_obs=True,
        norm_reward=True,
        clip_obs=CLIP,
        clip_reward=CLIP,
        gamma=GAMMA,
    )
    model = SB3PPO(
        "MlpPolicy",
        envs,
        learning_rate=lambda progress_remaining: LEARNING_RATE * progress_remaining,
        n_steps=NUM_STEPS,
        batch_size=workload.minibatch_size,
        n_epochs=NUM_EPOCHS,
        gamma=GAMMA,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.0,
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


def env_only(workload: Workload, total_steps: int, seed: int) -> float:
    """Random-action steps/s of gymnasium's sync vector env (what rl_agents steps)."""
    return env_only_gym(workload, max(total_steps, workload.num_envs), seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=51_200, help="env steps per run (rounded up to whole rollouts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    total_steps = round_to_rollouts(args.steps)
    print(describe(total_steps))
    print(f"  env-only gym sync: {env_only(WORKLOAD, total_steps, args.seed):8.0f} steps/s")
    for runner in (run_ours, run_sb3):
        torch.set_num_threads(args.threads)
        result = runner(WORKLOAD, total_steps, args.seed)
        print(
            f"  {result.library:<9} {result.steps} steps in {result.seconds:6.2f}s = "
            f"{result.steps_per_second:8.0f} steps/s"
        )


if __name__ == "__main__":
    main()
