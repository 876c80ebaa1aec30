"""PPO with the Nature CNN on Atari Breakout, rl_agents against Stable-Baselines3 on one device.

Both libraries run CleanRL's ``ppo_atari.py`` settings: 8 envs x 128 steps per rollout, 4 epochs,
4 minibatches (of 256), lr 2.5e-4 annealed linearly, gamma 0.99, GAE lambda 0.95, clip 0.1,
ent 0.01, vf 0.5, max grad norm 0.5, Nature CNN shared by actor and critic, DeepMind preprocessing
(noop reset, frame skip 4 with max-pooling, 84x84 grayscale, 4 stacked frames, rewards clipped to
their sign; no end-of-life episodes on either side). Made to measure the GPU path
(``--device cuda``), where the CNN's forward and backward passes are the bulk of the work; on the
CPU it runs too. Also prints PPO CartPole-v1 (4 envs, 64-64 MLPs) on the same device, to show what
a GPU does for a network that small.

    python -m benchmarks.gpu --device cuda --steps 20480
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import timed
from benchmarks.speed import RunResult

ATARI_ID = "BreakoutNoFrameskip-v4"
NUM_ENVS, NUM_STEPS, NUM_EPOCHS, NUM_MINIBATCHES = 8, 128, 4, 4
LEARNING_RATE, CLIP = 2.5e-4, 0.1


def run_ours_atari(total_steps: int, seed: int, device: str) -> RunResult:
    from rl_agents import PPO, Trainer
    from rl_agents.envs import make_envs

    envs = make_envs(ATARI_ID, NUM_ENVS)
    ppo = PPO(lr=LEARNING_RATE, clip_coef=CLIP, ent_coef=0.01)
    trainer = Trainer(
        envs,
        [ppo],
        seed=seed,
        device=device,
        num_steps=NUM_STEPS,
        num_epochs=NUM_EPOCHS,
        num_minibatches=NUM_MINIBATCHES,
    )
    seconds = timed(lambda: trainer.train(total_steps, progress=False))
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds)


def run_sb3_atari(total_steps: int, seed: int, device: str) -> RunResult:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    envs = VecFrameStack(
        make_atari_env(ATARI_ID, n_envs=NUM_ENVS, seed=seed, wrapper_kwargs={"terminal_on_life_loss": False}), 4
    )
    model = SB3PPO(
        "CnnPolicy",
        envs,
        learning_rate=lambda progress_remaining: LEARNING_RATE * progress_remaining,
        n_steps=NUM_STEPS,
        batch_size=NUM_ENVS * NUM_STEPS // NUM_MINIBATCHES,
        n_epochs=NUM_EPOCHS,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=CLIP,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=seed,
        device=device,
        verbose=0,
    )
    seconds = timed(lambda: model.learn(total_timesteps=total_steps))
    envs.close()
    return RunResult("sb3", seed, model.num_timesteps, seconds)


def run_ours_cartpole(total_steps: int, seed: int, device: str) -> RunResult:
    import gymnasium as gym

    from rl_agents import PPO, Trainer

    envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()], seed=seed, device=device, num_steps=128, num_epochs=4, num_minibatches=4)
    seconds = timed(lambda: trainer.train(total_steps, progress=False))
    return RunResult("rl_agents", seed, trainer.global_step, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=20_480, help="Atari env steps per run (whole rollouts of 1,024)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    batch = NUM_ENVS * NUM_STEPS
    steps = max(1, -(-args.steps // batch)) * batch
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {args.device} ({device_name}), torch {torch.__version__}, {args.threads} CPU thread(s)")
    results = {}
    for runner in (run_ours_atari, run_sb3_atari):
        result = runner(steps, args.seed, args.device)
        results[result.library] = result
        print(
            f"  {ATARI_ID} PPO {result.library:<9} {result.steps} steps in {result.seconds:6.1f}s = "
            f"{result.steps_per_second:7.0f} steps/s"
        )
    ratio = results["rl_agents"].steps_per_second / results["sb3"].steps_per_second
    print(f"  ratio rl_agents / sb3 on {args.device}: {ratio:.2f}x")
    cartpole = run_ours_cartpole(51_200, args.seed, args.device)
    print(f"  CartPole-v1 PPO (4 envs) rl_agents on {args.device}: {cartpole.steps_per_second:7.0f} steps/s")


if __name__ == "__main__":
    main()
