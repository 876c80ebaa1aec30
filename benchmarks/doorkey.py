"""PPO with a CNN on MiniGrid DoorKey (7x7x3 egocentric view), rl_agents against Stable-Baselines3.

Environment, both libraries: ``MiniGrid-DoorKey-5x5-v0`` behind minigrid's ``ImgObsWrapper`` (the
wrapper ``rl_agents.envs.make_envs`` applies to MiniGrid ids), so each observation is the 7x7x3 uint8
grid of object, colour and state indices, fed to the network unscaled. Ours trains on
``make_envs(ENV_ID, 8)``; SB3 on ``make_vec_env(ENV_ID, 8, wrapper_class=ImgObsWrapper)``, which its
PPO wraps in ``VecTransposeImage`` (channels first).

Network, both libraries: what rl_agents' ``PPO`` builds for small image observations
(``rl_agents.core.nets.NatureCNN`` with the MiniGrid encoder): Conv 2x2 (16) - ReLU - MaxPool 2x2 -
Conv 2x2 (32) - ReLU - Conv 2x2 (64) - ReLU - Linear (64) - ReLU, shared by a linear actor head and a
linear critic head; orthogonal initialization (gain sqrt 2 for the trunk, 0.01 actor, 1 critic),
zero biases. SB3 gets the same trunk as a features extractor (``GridEncoder`` below) with
``net_arch=[]``, a shared extractor and ``normalize_images=False`` (ours does not scale these
symbolic grids either).

Settings, both libraries: CleanRL ``ppo.py`` defaults as in ``benchmarks/speed.py``: 8 envs x 128
steps per rollout, 4 epochs, 4 minibatches (of 256), lr 2.5e-4 annealed linearly, gamma 0.99, GAE
lambda 0.95, clip 0.2, ent 0.01, vf 0.5, max grad norm 0.5, Adam eps 1e-5. (rl-zoo3's DoorKey-5x5
entry differs: an MlpPolicy with observation normalization, 10 epochs of minibatches of 64, no
entropy bonus, 100k steps.) Remaining difference: ours clips the value loss, SB3 does not, as in the other PPO
workloads.

Besides steps/s, DoorKey is a learning task: the final return is the mean of the last 20 training
episodes (1 - 0.9 x steps / 250 for reaching the goal, 0 for running out of time).

Run it with ``python -m benchmarks --workloads minigrid-doorkey [--steps N] [--seeds N]``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks import speed
from benchmarks.common import sb3_episode_recorder, timed
from benchmarks.offpolicy import RunResult

ENV_ID = "MiniGrid-DoorKey-5x5-v0"
FEATURES = 64  # width of the encoder's output (rl_agents.core.nets.NatureCNN for small views)
WORKLOAD = speed.Workload(ENV_ID, 8)
DEFAULT_STEPS = 100_000
DEFAULT_SEEDS = 3  # learning on DoorKey varies from seed to seed


def describe(total_steps: int) -> str:
    return (
        f"{ENV_ID} (ImgObsWrapper, 7x7x3), {WORKLOAD.num_envs} envs x {speed.NUM_STEPS} steps, {speed.NUM_EPOCHS} "
        f"epochs, {speed.NUM_MINIBATCHES} minibatches of {WORKLOAD.minibatch_size}, lr {speed.LEARNING_RATE:g} "
        f"annealed, ent 0.01, MiniGrid CNN (16-32-64 2x2 convs, 64 features); {total_steps} steps per run"
    )


def run_ours(workload: speed.Workload, total_steps: int, seed: int) -> RunResult:
    from rl_agents import PPO, Trainer
    from rl_agents.envs import make_envs

    envs = make_envs(workload.env_id, workload.num_envs)
    trainer = Trainer(
        envs,
        [PPO()],
        seed=seed,
        num_steps=speed.NUM_STEPS,
        num_epochs=speed.NUM_EPOCHS,
        num_minibatches=speed.NUM_MINIBATCHES,
        anneal_lr=True,  # CleanRL's and SB3's side; PPO's own defaults for small grid views keep lr constant
    )
    trainer.episodes.window = None  # every episode: the result holds the whole run's returns
    seconds = timed(lambda: trainer.train(total_steps, progress=False))
    envs.close()
    return RunResult("rl_agents", seed, trainer.global_step, seconds, list(trainer.episodes.returns))


def grid_encoder_class() -> type[nn.Module]:
    """SB3 features extractor with rl_agents' MiniGrid encoder (imports SB3 when called)."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class GridEncoder(BaseFeaturesExtractor):
        """Channels-first 7x7 grids -> FEATURES features; SB3's orthogonal init matches rl_agents' layer_init."""

        def __init__(self, observation_space, features_dim: int = FEATURES):
            super().__init__(observation_space, features_dim)
            channels = observation_space.shape[0]
            self.convs = nn.Sequential(
                nn.Conv2d(channels, 16, 2),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 2),
                nn.ReLU(),
                nn.Conv2d(32, 64, 2),
                nn.ReLU(),
                nn.Flatten(),
            )
            with torch.no_grad():
                flat = self.convs(torch.zeros(1, *observation_space.shape)).shape[1]
            self.head = nn.Sequential(nn.Linear(flat, features_dim), nn.ReLU())

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.head(self.convs(observations))

    return GridEncoder


def run_sb3(workload: speed.Workload, total_steps: int, seed: int) -> RunResult:
    from minigrid.wrappers import ImgObsWrapper
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(workload.env_id, n_envs=workload.num_envs, seed=seed, wrapper_class=ImgObsWrapper)
    model = SB3PPO(
        "CnnPolicy",
        envs,
        learning_rate=lambda progress_remaining: speed.LEARNING_RATE * progress_remaining,
        n_steps=speed.NUM_STEPS,
        batch_size=workload.minibatch_size,
        n_epochs=speed.NUM_EPOCHS,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        policy_kwargs={
            "features_extractor_class": grid_encoder_class(),
            "net_arch": [],
            "share_features_extractor": True,
            "normalize_images": False,
        },
        seed=seed,
        device="cpu",
        verbose=0,
    )
    episode_returns: list[float] = []
    recorder = sb3_episode_recorder(episode_returns)
    seconds = timed(lambda: model.learn(total_timesteps=total_steps, callback=recorder))
    envs.close()
    return RunResult("sb3", seed, model.num_timesteps, seconds, episode_returns)
