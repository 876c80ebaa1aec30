"""The environment loop written out by hand: the trainer sits before and after ``envs.step``.

This is exactly what ``trainer.train(total_steps)`` does (minus the progress bar); write the loop
yourself when you want to interleave your own code with training (custom logging, curricula, ...).

    python examples/run.py --steps 50000
"""

from __future__ import annotations

import argparse

import gymnasium as gym

from rl_agents import PPO, Trainer


def run(total_steps: int, seed: int) -> Trainer:
    envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()], seed=seed, total_steps=total_steps)

    obs, info = envs.reset(seed=seed)
    while trainer.global_step < total_steps:
        action = trainer.act(obs)  # before the step: the acting agent chooses, the trainer stores
        obs, reward, terminated, truncated, info = envs.step(action)
        trainer.observe(obs, reward, terminated, truncated, info)  # after: store, update when due
        if trainer.num_updates and trainer.global_step % (10 * 4 * 128) == 0:
            print(f"step {trainer.global_step}: mean return of the last 20 episodes {trainer.recent_return():.1f}")
    envs.close()
    return trainer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(args.steps, args.seed)
