"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications") for Box
actions, trained off-policy from the Trainer's replay buffer.

Defaults are Stable-Baselines3's ``SAC``: lr 3e-4 for actor, critics and temperature, batch 256,
one gradient step per env step after 100 random steps, Polyak target updates with tau 0.005, twin
critics and a squashed Gaussian actor of (256, 256) ReLU MLPs, log-std clamped to [-20, 2],
automatic entropy tuning toward ``-dim(action)`` starting from a temperature of 1, Adam with eps 1e-8.

One difference from SB3: the Trainer sums the critic, actor and temperature losses into one
optimizer step, so the actor's loss sees the critics as they were before this step's critic update
(SB3 updates the critics first). The actor's gradient never reaches the critics: its Q estimate
uses their parameters detached.

Sampler feedback: the critic loss weights each row by ``sample_weight`` (ones unless a sampler such as
``per`` draws the rows; the actor and temperature losses are not weighted) and the loss outputs
``priority``, the mean of the two critics' |TD errors| summed over the streams.

Reward streams: each critic has one output per stream in the composition; each output is trained on
its stream's reward with the stream's discount (non-episodic streams bootstrap through terminal
states), the entropy bonus belongs to the extrinsic stream, and the actor maximizes the
``coef``-weighted sum.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_agents.core.agent import (
    ACTION,
    BOOTSTRAP_OBS,
    EXTRINSIC,
    N_STEPS,
    OBS,
    PRIORITY,
    SAMPLE_WEIGHT,
    TERMINATED,
    Agent,
    Batch,
    CompositionError,
    DataSpec,
    EnvContext,
    RewardStream,
    check_option,
)
from rl_agents.core.colored_noise import ColoredNoise
from rl_agents.core.encoders import ObservationEncoder
from rl_agents.core.nets import flat_dim
from rl_agents.core.returns import replay_td_targets
from rl_agents.core.schedules import ReplaySchedule

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
ADAM_EPS = 1e-8  # PyTorch's default, which SB3's SAC uses


def relu_mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.ReLU(inplace=True)]
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """A Gaussian over pre-squash actions; actions are ``tanh`` of a sample, in [-1, 1]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...], log_std_range: tuple[float, float]):
        super().__init__()
        self.body = relu_mlp(obs_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
        width = hidden[-1] if hidden else obs_dim
        self.mean = nn.Linear(width, action_dim)
        self.log_std = nn.Linear(width, action_dim)
        self.log_std_range = log_std_range

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.body(obs))
        return self.mean(features), self.log_std(features).clamp(*self.log_std_range)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in [-1, 1], its log-probability), reparameterized so gradients reach the actor.
        ``noise``: the standard normal values to use (e.g. colored exploration noise); None draws them."""
        mean, log_std = self(obs)
        if noise is None:
            noise = torch.randn(mean.shape, generator=generator, device=generator.device if generator else mean.device)
        noise = noise.to(mean.device)
        pre_squash = mean + log_std.exp() * noise
        action = torch.tanh(pre_squash)
        gaussian = (-0.5 * noise.square() - log_std - LOG_SQRT_2PI).sum(-1)
        # tanh's change of variables; 1e-6 keeps the log finite at the boundary (as SB3 and CleanRL do)
        log_prob = gaussian - torch.log(1.0 - action.square() + 1e-6).sum(-1)
        return action, log_prob


class Critic(nn.Module):
    """Q(s, a): one output per reward stream."""

    def __init__(self, obs_dim: int, action_dim: int, num_streams: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = relu_mlp(obs_dim + action_dim, hidden, num_streams)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1))

    def frozen(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The same Q with detached weights: gradients flow to the inputs only (the actor's loss)."""
        x = torch.cat([obs, action], dim=-1)
        for layer in self.net:
            x = F.linear(x, layer.weight.detach(), layer.bias.detach()) if isinstance(layer, nn.Linear) else layer(x)
        return x


class SAC(Agent):
    """SAC with twin critics, target critics and automatic entropy tuning.

    Args:
        lr: Adam learning rate of the actor (and of the critics and temperature unless given).
        critic_lr, alpha_lr: learning rates of the critics and the temperature (default ``lr``).
        gamma: discount of the extrinsic stream.
        alpha: initial entropy temperature.
        autotune: learn the temperature toward ``target_entropy`` (default ``-dim(action)``).
        hidden: MLP widths of actor and critics.
        colored_noise_beta: the color of the exploration noise when collecting (Eberhard et al. 2023):
            0 draws SAC's own white noise; 1 (pink) keeps each env's actions leaning one way for a while
            (what sparse-reward tasks like MountainCarContinuous need); 2 is red (Brownian-like). Only
            collection changes, and only for a batch of all the run's envs (training samples white noise).
        colored_noise_length: steps of colored noise drawn at once per env and action dimension.
    """

    acts = True
    default_name = "sac"

    def __init__(
        self,
        *,
        lr: float = 3e-4,
        critic_lr: float | None = None,
        alpha_lr: float | None = None,
        gamma: float = 0.99,
        ext_coef: float = 1.0,
        alpha: float = 1.0,
        autotune: bool = True,
        target_entropy: float | None = None,
        hidden: tuple[int, ...] = (256, 256),
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        colored_noise_beta: float = 0.0,
        colored_noise_length: int = 1000,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "gamma", gamma, 0.0, 1.0)
        check_option(self.name, "log_std_max", log_std_max, log_std_min)
        check_option(self.name, "colored_noise_beta", colored_noise_beta, 0.0, 5.0)
        check_option(self.name, "colored_noise_length", colored_noise_length, 2)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.critic_lr = critic_lr
        self.alpha_lr = alpha_lr
        self.gamma = gamma
        self.ext_coef = ext_coef
        self.initial_alpha = alpha
        self.autotune = autotune
        self.target_entropy = target_entropy
        self.hidden = tuple(hidden)
        self.log_std_range = (log_std_min, log_std_max)
        self.colored_noise_beta = colored_noise_beta
        self.colored_noise_length = colored_noise_length
        self.streams: tuple[RewardStream, ...] = ()
        self.obs_encoder: ObservationEncoder | None = None  # for Dict / Tuple observations (set by bind)

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream(EXTRINSIC, gamma=self.gamma, episodic=True, coef=self.ext_coef),)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        space, obs_space = ctx.action_space, ctx.observation_space
        if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.floating):
            raise CompositionError(
                f"agent {self.name!r} needs a float Box action space, got {space} (for discrete actions use DQN)"
            )
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise CompositionError(f"agent {self.name!r} needs finite action bounds to squash into, got {space}")
        obs_dim = self._observation_width(obs_space)
        self.streams = ctx.streams
        action_dim, num_streams = int(np.prod(space.shape)), len(self.streams)
        self.action_shape = tuple(space.shape)
        self.actor = SquashedGaussianActor(obs_dim, action_dim, self.hidden, self.log_std_range)
        self.critics = nn.ModuleList([Critic(obs_dim, action_dim, num_streams, self.hidden) for _ in range(2)])
        self.exploration_noise = (
            ColoredNoise(ctx.num_envs, action_dim, self.colored_noise_beta, self.colored_noise_length)
            if self.colored_noise_beta > 0
            else None
        )
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(self.initial_alpha)), requires_grad=self.autotune)
        if self.target_entropy is None:
            self.target_entropy = -float(action_dim)
        low, high = torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high, dtype=torch.float32)
        self.register_buffer("action_center", ((high + low) / 2).reshape(-1), persistent=False)
        self.register_buffer("action_half_range", ((high - low) / 2).reshape(-1), persistent=False)
        self.register_buffer("stream_coefs", torch.tensor([s.coef for s in self.streams]), persistent=False)
        self.register_buffer("stream_gammas", torch.tensor([s.gamma for s in self.streams]), persistent=False)
        self.register_buffer(
            "stream_episodic", torch.tensor([float(s.episodic) for s in self.streams]), persistent=False
        )
        self.register_buffer(
            "is_extrinsic", torch.tensor([float(s.name == EXTRINSIC) for s in self.streams]), persistent=False
        )

    def _observation_width(self, obs_space: gym.Space) -> int:
        """The width of the vector the networks read: the flattened Box, or a Dict / Tuple observation's
        leaves flattened (discrete ones one-hot) side by side. Images are refused (no CNN here)."""
        if isinstance(obs_space, gym.spaces.Box):
            if len(obs_space.shape) > 2:
                raise CompositionError(f"agent {self.name!r} needs vector observations, got {obs_space}")
            return flat_dim(obs_space)
        encoder = ObservationEncoder(obs_space)  # no parameters: one-hots and flattens only (images refused)
        if encoder.image_paths:
            raise CompositionError(
                f"agent {self.name!r} needs vector observations, got image leaves {encoder.image_paths} in {obs_space}"
            )
        self.obs_encoder = encoder
        return encoder.out_dim

    def data_spec(self) -> DataSpec:
        needs = {OBS, ACTION, BOOTSTRAP_OBS, TERMINATED, N_STEPS, SAMPLE_WEIGHT} | {s.key for s in self.streams}
        return DataSpec(needs=frozenset(needs), act_outputs=frozenset({ACTION}), loss_outputs=frozenset({PRIORITY}))

    def param_groups(self) -> list[dict]:
        groups = [
            {"params": list(self.actor.parameters()), "lr": self.lr, "eps": ADAM_EPS, "name": "actor"},
            {
                "params": list(self.critics.parameters()),
                "lr": self.critic_lr or self.lr,
                "eps": ADAM_EPS,
                "name": "critics",
            },
        ]
        if self.autotune:
            groups.append(
                {"params": [self.log_alpha], "lr": self.alpha_lr or self.lr, "eps": ADAM_EPS, "name": "alpha"}
            )
        return groups

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        """One env: the suggested schedule's update-to-data ratio is the published one per env step."""
        return 1

    def suggested_schedule(self) -> ReplaySchedule:
        return ReplaySchedule(
            buffer_size=1_000_000,
            batch_size=256,
            learning_starts=100,
            train_frequency=1,
            gradient_steps=1,
            target_update_interval=1,
            tau=0.005,
            n_step=1,
            max_grad_norm=None,
        )

    def target_networks(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.critics, self.target_critics)]

    def loss_terms(self) -> dict[str, str]:
        terms = {
            "critic": f"0.5 x squared soft TD error of both critics, summed over {len(self.streams)} stream output(s), "
            "rows weighted by sample_weight",
            "actor": "alpha x log pi(a|s) - min over critics of the coef-weighted Q(s, a), a ~ pi",
        }
        if self.autotune:
            terms["alpha"] = f"-log(alpha) x (log pi(a|s) + target entropy {self.target_entropy:g})"
        return terms

    # ------------------------------------------------------------------ acting
    def _flat(self, obs: torch.Tensor) -> torch.Tensor:
        if self.obs_encoder is not None:  # a Dict / Tuple (or Discrete) observation
            return self.obs_encoder(obs)
        return obs.float().reshape(obs.shape[0], -1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        flat = self._flat(obs)
        if deterministic:
            return {ACTION: torch.tanh(self.actor(flat)[0])}
        noise = None
        if self.exploration_noise is not None and flat.shape[0] == self.exploration_noise.sequences.shape[0]:
            noise = self.exploration_noise.sample(self.generator)
        action, _ = self.actor.sample(flat, self.generator, noise)
        return {ACTION: action}

    def random_act(self, num_envs: int) -> Batch:
        shape = (num_envs, int(self.action_center.numel()))
        return {ACTION: torch.rand(shape, generator=self.generator, device=self.generator.device) * 2 - 1}

    def env_action(self, outputs: Batch) -> torch.Tensor:
        action = self.action_center + self.action_half_range * outputs[ACTION]
        return action.reshape(-1, *self.action_shape)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.detach().exp()

    # ------------------------------------------------------------------ loss
    def _soft_target(self, minibatch: Batch) -> torch.Tensor:
        """``[batch, streams]``: r + gamma^n (1 - terminal) (min target Q(s', a') - alpha log pi(a'|s'))."""
        with torch.no_grad():
            next_obs = self._flat(minibatch[BOOTSTRAP_OBS])
            next_action, next_log_prob = self.actor.sample(next_obs, self.generator)
            next_q = torch.minimum(*(critic(next_obs, next_action) for critic in self.target_critics))
            next_q = next_q - self.alpha * next_log_prob.unsqueeze(1) * self.is_extrinsic
            return replay_td_targets(minibatch, self.streams, next_q, self.stream_gammas, self.stream_episodic)

    def _policy_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """min over critics of the coef-weighted Q, with gradients to the action only."""
        return torch.minimum(*(critic.frozen(obs, action) @ self.stream_coefs for critic in self.critics))

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        obs, action = self._flat(minibatch[OBS]), minibatch[ACTION]
        target = self._soft_target(minibatch)
        q_values = [critic(obs, action) for critic in self.critics]
        weights = minibatch[SAMPLE_WEIGHT].unsqueeze(1)  # [batch, 1]: ones unless a sampler weights the rows
        critic_loss = 0.5 * sum((weights * (q - target).square()).mean(dim=0).sum() for q in q_values)
        # The mean of the two critics' |TD errors|, summed over the streams (as Tianshou prioritizes SAC).
        minibatch[PRIORITY] = sum((q.detach() - target).abs() for q in q_values).sum(dim=1) / len(q_values)
        policy_action, log_prob = self.actor.sample(obs, self.generator)
        actor_loss = (self.alpha * log_prob - self._policy_value(obs, policy_action)).mean()
        terms = {"critic": critic_loss, "actor": actor_loss}
        if self.autotune:
            terms["alpha"] = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        metrics = {"q_mean": q_values[0].detach().mean(), "alpha": self.alpha, "entropy": -log_prob.detach().mean()}
        return terms, metrics
