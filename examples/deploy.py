"""Deploy a trained policy: load it from a run, act in a plain Gymnasium loop, print the return.

No Trainer and no vector env: ``Policy.load`` rebuilds only the acting agent from the checkpoint,
and ``predict`` takes one observation and returns one action, as ``env.step`` wants it. The env must
give the observations the policy was trained on (for Atari and MiniGrid, ``rl_agents.envs`` adds
wrappers: ``policy.make_env()`` makes the run's envs, wrappers included).

    rl-agents train --env CartPole-v1 --agents ppo --steps 50000 --out runs/cartpole
    python examples/deploy.py runs/cartpole
"""

from __future__ import annotations

import argparse

import gymnasium as gym

from rl_agents import Policy


def episode_return(policy: Policy, env: gym.Env, seed: int) -> float:
    obs, info = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action, _ = policy.predict(obs)  # deterministic: the greedy / mean action
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a run directory (its newest checkpoint) or one checkpoint")
    parser.add_argument("--env", help="Gymnasium id (default: the run's); it must give the observations trained on")
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    policy = Policy.load(args.run)
    env = gym.make(args.env or policy.env_recipe().env_id)
    for seed in range(args.episodes):
        print(f"episode {seed}: return {episode_return(policy, env, seed):.1f}")
    env.close()
