"""Recurrent PPO training benchmark: rl_agents PPO with an LSTM against sb3-contrib's RecurrentPPO at the
same settings.

Two workloads on CartPoleNoVel-v1 (CartPole-v1 with the velocity entries zeroed, rl-zoo3's
``MaskVelocityWrapper``), 8 envs, on the CPU with the same number of torch threads:

* ``lstm-cartpole-novel``: rl-zoo3's ``ppo_lstm`` settings for CartPoleNoVel-v1: rollouts of 8 envs x 32
  steps, 20 epochs of one minibatch of the whole rollout (SB3 batch 256, ours ``num_minibatches=1``),
  lr 1e-3, gamma 0.98, GAE lambda 0.8, ent_coef 0, clip 0.2, vf_coef 0.5, max grad norm 0.5, an LSTM of
  64 for the actor and a separate one for the critic (SB3 ``enable_critic_lstm=True, shared_lstm=False``;
  ours ``critic_memory=True``), then one hidden layer of 64 in each head (SB3
  ``net_arch=dict(pi=[64], vf=[64])``; ours ``hidden=(64,)``). Unlike rl-zoo3's preset, the lr and the
  clip range are constant (rl-zoo3: linear decays; ours ``anneal_lr=False``), nothing is normalized
  (rl-zoo3 normalizes observations with VecNormalize; ours ``normalize_obs=False,
  normalize_reward=False``), and both take their default tanh activations and orthogonal init (rl-zoo3:
  ReLU, ``ortho_init=False``).
* ``lstm-cartpole-novel-128``: closer to CleanRL's ``ppo_atari_lstm.py``: rollouts of 8 envs x 128 steps,
  4 epochs of 4 minibatches (SB3 batch 256), LSTMs of 128, lr 2.5e-4 (constant), gamma 0.99, GAE lambda
  0.95, ent_coef 0.01, clip 0.2, vf_coef 0.5, max grad norm 0.5, heads as above. CleanRL's actor and
  critic share one LSTM; SB3-contrib's ``shared_lstm=True`` would detach the critic's gradient from it,
  so both libraries get a separate critic LSTM here as well.

Neither clips the value loss (ours ``clip_vloss=False``, SB3 ``clip_range_vf=None``); both normalize
advantages per minibatch and use Adam with eps 1e-5. The differences that remain:

* Minibatches: SB3-contrib splits the (env-major, rotated by a random offset) rollout by transitions into
  minibatches of ``batch_size`` and pads each piece of an episode inside one to a common length; ours
  shuffles the envs and gives each minibatch whole env sequences (``num_minibatches`` groups of envs),
  replayed from the memory stored at the rollout's start. With one minibatch (the first workload) both
  train on the whole rollout each epoch.
* Value loss: SB3 ``vf_coef * MSE``, ours ``vf_coef * 0.5 * MSE``: the critic's gradient is half of
  SB3's (it matters through the shared gradient-norm clip; Adam is otherwise scale-free).
* Truncated episodes: SB3 adds ``gamma * V(final observation)`` to the last reward; ours bootstraps GAE
  from the value of the final observation. Both evaluate it from the critic memory carried past that step.
* Initialization: both orthogonal for the linear layers (hidden sqrt(2), actor 0.01, critic 1); ours
  also initializes the LSTM weights orthogonally (gain 1, biases 0), SB3 leaves PyTorch's default.

Both libraries step 8 copies of the same env (``rl_agents.envs.masked.MaskVelocity`` around
``gym.make("CartPole-v1")``) one after another in this process: ours in gymnasium's SyncVectorEnv in
same-step autoreset mode (so that every counted step is a real transition, as in SB3; in the default
next-step mode the reset step after each episode is counted but not trained on), SB3 in its DummyVecEnv
with each env in a ``Monitor``. Each workload runs ours, then SB3, in this process with the same seed.
Only the training call is timed (construction excluded). Steps are rounded up to whole rollouts so that
both libraries do the same number of updates. The final return is the mean of the last 20 training
episodes, in the order they ended (ours: ``trainer.episodes.returns``; SB3: its ``Monitor``'s).

    python -m benchmarks.recurrent                                        # lstm-cartpole-novel, 50k steps
    python -m benchmarks.recurrent --workload all
    python -m benchmarks.recurrent --workload lstm-cartpole-novel-128 --steps 20000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import gymnasium as gym
import torch
from rich.console import Console

from benchmarks.common import sb3_episode_recorder
from benchmarks.offpolicy import RunResult, run_workload, summary_table
from benchmarks.speed import library_versions, machine_description

ENV_ID = "CartPoleNoVel-v1"
BASE_ENV_ID = "CartPole-v1"
NUM_ENVS = 8
CLIP_COEF = 0.2
VF_COEF = 0.5
MAX_GRAD_NORM = 0.5
HEAD_HIDDEN = (64,)  # one layer of 64 in the actor's and the critic's head, after their LSTMs


@dataclass(frozen=True)
class Workload:
    """One benchmark configuration: the rollout, the update and the network, and the default run length."""

    num_steps: int  # per env per rollout
    num_epochs: int
    num_minibatches: int
    lr: float
    gamma: float
    gae_lambda: float
    ent_coef: float
    memory_size: int
    default_steps: int
    num_envs: int = NUM_ENVS

    @property
    def rollout_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def sb3_batch_size(self) -> int:
        return self.rollout_size // self.num_minibatches


WORKLOADS: dict[str, Workload] = {
    # rl-zoo3 ppo_lstm CartPoleNoVel-v1
    "lstm-cartpole-novel": Workload(
        num_steps=32,
        num_epochs=20,
        num_minibatches=1,
        lr=1e-3,
        gamma=0.98,
        gae_lambda=0.8,
        ent_coef=0.0,
        memory_size=64,
        default_steps=50_000,
    ),
    # closer to CleanRL ppo_atari_lstm.py
    "lstm-cartpole-novel-128": Workload(
        num_steps=128,
        num_epochs=4,
        num_minibatches=4,
        lr=2.5e-4,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.01,
        memory_size=128,
        default_steps=50_000,
    ),
}
DEFAULT_WORKLOAD = "lstm-cartpole-novel"


def round_to_rollouts(steps: int, workload: Workload) -> int:
    """Round up to whole rollouts so that both libraries do the same number of updates."""
    rollout = workload.rollout_size
    return max(1, -(-steps // rollout)) * rollout


def make_env() -> gym.Env:
    """One CartPoleNoVel-v1: what ``rl_agents.envs.make_envs("CartPoleNoVel-v1", n)`` builds per env."""
    from rl_agents.envs.masked import MaskVelocity

    return MaskVelocity(gym.make(BASE_ENV_ID), BASE_ENV_ID)


def run_ours(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from rl_agents import PPO, Trainer

    envs = gym.vector.SyncVectorEnv([make_env] * workload.num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent = PPO(
        lr=workload.lr,
        gamma=workload.gamma,
        gae_lambda=workload.gae_lambda,
        clip_coef=CLIP_COEF,
        clip_vloss=False,
        ent_coef=workload.ent_coef,
        vf_coef=VF_COEF,
        norm_adv=True,
        normalize_obs=False,
        normalize_reward=False,
        hidden=HEAD_HIDDEN,
        memory="lstm",
        memory_size=workload.memory_size,
        critic_memory=True,
    )
    trainer = Trainer(
        envs,
        [agent],
        seed=seed,
        num_steps=workload.num_steps,
        num_epochs=workload.num_epochs,
        num_minibatches=workload.num_minibatches,
        max_grad_norm=MAX_GRAD_NORM,
        anneal_lr=False,
    )
    assert trainer.schedule.sequence_minibatches, "a recurrent PPO trains on whole env sequences"
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    start = time.perf_counter()
    trainer.train(total_steps, progress=False)
    seconds = time.perf_counter() - start
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds, list(trainer.episodes.returns))


def run_sb3(workload: Workload, total_steps: int, seed: int) -> RunResult:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    envs = DummyVecEnv([lambda: Monitor(make_env())] * workload.num_envs)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        envs,
        learning_rate=workload.lr,
        n_steps=workload.num_steps,
        batch_size=workload.sb3_batch_size,
        n_epochs=workload.num_epochs,
        gamma=workload.gamma,
        gae_lambda=workload.gae_lambda,
        clip_range=CLIP_COEF,
        clip_range_vf=None,
        normalize_advantage=True,
        ent_coef=workload.ent_coef,
        vf_coef=VF_COEF,
        max_grad_norm=MAX_GRAD_NORM,
        policy_kwargs={
            "lstm_hidden_size": workload.memory_size,
            "n_lstm_layers": 1,
            "enable_critic_lstm": True,
            "shared_lstm": False,
            "net_arch": {"pi": list(HEAD_HIDDEN), "vf": list(HEAD_HIDDEN)},
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )
    returns: list[float] = []
    start = time.perf_counter()
    model.learn(total_timesteps=total_steps, callback=sb3_episode_recorder(returns))
    seconds = time.perf_counter() - start
    envs.close()
    return RunResult("sb3", seed, model.num_timesteps, seconds, returns)


def workload_description(name: str, workload: Workload, total_steps: int) -> str:
    return (
        f"workload {name}: {ENV_ID}, {workload.num_envs} envs x {workload.num_steps} steps, "
        f"{workload.num_epochs} epochs x {workload.num_minibatches} minibatch(es) "
        f"(SB3 batch {workload.sb3_batch_size}), "
        f"lr {workload.lr:g} constant, gamma {workload.gamma:g}, GAE lambda {workload.gae_lambda:g}, "
        f"ent {workload.ent_coef:g}, clip {CLIP_COEF:g}, no value clipping, max grad norm {MAX_GRAD_NORM:g}, "
        f"LSTM {workload.memory_size} + critic LSTM {workload.memory_size}, heads {list(HEAD_HIDDEN)}, "
        f"no normalization; {total_steps} steps per run ({total_steps // workload.rollout_size} rollouts)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=[*WORKLOADS, "all"], default=DEFAULT_WORKLOAD)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per run, rounded up to whole rollouts (default: the workload's: "
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
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print("command: " + " ".join(["python -m benchmarks.recurrent", *(sys.argv[1:] if argv is None else argv)]))
    console.print(machine_description(args.threads))
    console.print(library_versions() + f" | sb3-contrib {sb3_contrib_version()}")

    rows: list[tuple[str, int, RunResult, RunResult]] = []
    for name in names:
        workload = WORKLOADS[name]
        total_steps = round_to_rollouts(args.steps or workload.default_steps, workload)
        console.print(workload_description(name, workload, total_steps))
        ours, sb3 = run_workload(workload, total_steps, args.seed, args.threads, console, [run_ours, run_sb3])
        rows.append((name, total_steps, ours, sb3))
    console.print(summary_table(rows, "Recurrent PPO", times=True))


def sb3_contrib_version() -> str:
    import sb3_contrib

    return sb3_contrib.__version__


if __name__ == "__main__":
    main()
