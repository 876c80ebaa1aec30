"""The quick-start demo: a short PPO run on CartPole-v1 with a progress bar, CSV and TensorBoard
logs, and a learning-curve plot at the end."""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

from rl_agents import PPO, Trainer
from rl_agents.logging import CSVLogger, TensorBoardLogger
from rl_agents.plotting import plot_learning_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/demo", help="run directory")
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    out = Path(args.out)
    envs = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="sync")
    loggers = [CSVLogger(out / "metrics.csv"), TensorBoardLogger(out / "tensorboard")]
    # rl-zoo3's tuned CartPole settings.
    ppo = PPO(lr=1e-3, gamma=0.98, gae_lambda=0.8, ent_coef=0.0, clip_vloss=False)
    trainer = Trainer(envs, [ppo], seed=args.seed, num_steps=32, num_epochs=20, num_minibatches=1, loggers=loggers)
    trainer.train(args.steps)
    for logger in loggers:
        logger.close()
    plot = plot_learning_curves({"ppo": out / "metrics.csv"}, out / "learning_curve.png", title="PPO on CartPole-v1")
    print(f"mean return of the last 20 episodes: {trainer.recent_return():.1f}")
    print(f"metrics:      {out / 'metrics.csv'}")
    print(f"tensorboard:  {out / 'tensorboard'}  (tensorboard --logdir {out / 'tensorboard'})")
    print(f"plot:         {plot}")


if __name__ == "__main__":
    main()
