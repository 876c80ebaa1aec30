"""Advantage Actor-Critic: the synchronous, batched variant of A3C (Mnih et al. 2016, "Asynchronous
Methods for Deep Reinforcement Learning"), with the defaults of Stable-Baselines3's ``A2C``
(``stable_baselines3/a2c/a2c.py`` and its ``ActorCriticPolicy``, SB3 2.x).

Every update is a single gradient step on the whole rollout of ``num_steps`` (5) steps per
environment: no epochs, no minibatches, no ratio clipping.

Defaults taken from SB3:

* learning rate 7e-4, constant (no annealing); gamma 0.99; ``gae_lambda`` 1.0, i.e. plain n-step
  returns bootstrapped from the value of each rollout's last next observation;
* ``ent_coef`` 0.0, ``vf_coef`` 0.5, no advantage normalization, gradient norm clipped to 0.5;
* separate actor and critic MLPs of (64, 64) tanh units for vector observations; for images one
  Nature CNN shared by both heads (SB3's ``CnnPolicy`` shares its features extractor); orthogonal
  initialization with gain sqrt(2), 0.01 on the action layer and 1 on the value layer; Box actions
  are a diagonal Gaussian with a state-independent log std initialized to 0, clipped to the bounds
  before reaching the environment;
* losses: ``policy = -mean(A * log pi(a|s))``, ``value = vf_coef * mean((V - R)^2)`` (SB3's
  ``F.mse_loss``, without PPO's factor 1/2) and ``entropy = -ent_coef * mean(H)``.

Reward streams: A2C keeps one value head per reward stream of the composition (so ``a2c+rnd``
learns an extrinsic and an intrinsic value). Each stream gets its own n-step return with its own
discount; episodic streams do not bootstrap through terminal states, non-episodic ones do. The policy's
advantage is the ``coef``-weighted sum of the streams' advantages, and the value term sums the
streams' squared errors.

Known differences from SB3:

* the optimizer is the Trainer's Adam (eps 1e-5) shared by every agent of the composition; SB3's A2C
  uses ``RMSprop(alpha=0.99, eps=1e-5)`` (``use_rms_prop=True``, after OpenAI Baselines);
* a truncated episode bootstraps from the value of its final observation through the return's
  next-state value; SB3 adds ``gamma * V(final obs)`` to the truncated step's reward. The return is
  the same;
* no observation or reward normalization (SB3 leaves both to the ``VecNormalize`` wrapper) and no
  generalized state-dependent exploration.
"""

from __future__ import annotations

from collections.abc import Mapping

import gymnasium as gym
import torch
from torch import nn

from rl_agents.core.agent import (
    ACTION,
    EXTRINSIC,
    NEXT_OBS,
    OBS,
    TERMINATED,
    TRUNCATED,
    VALID,
    Agent,
    Batch,
    CompositionError,
    DataSpec,
    EnvContext,
    Metrics,
    RewardStream,
    check_option,
)
from rl_agents.core.distributions import ActionHead, make_action_head
from rl_agents.core.nets import FusedMLPs, NatureCNN, layer_init, mlp
from rl_agents.core.returns import next_state_values, stream_advantages
from rl_agents.core.schedules import OnPolicySchedule
from rl_agents.core.trunks import observation_trunk

VALUES = "values"  # [N, num_streams]: one value estimate per reward stream, stored when acting
ADVANTAGES = "advantages"  # [N]: coef-weighted sum of the streams' advantages
RETURNS = "returns"  # [N, num_streams]


class A2C(Agent):
    """Advantage Actor-Critic (synchronous A3C) with Stable-Baselines3's defaults.

    Args:
        lr: learning rate (SB3: 7e-4, constant).
        gamma: discount of the extrinsic stream (SB3: 0.99).
        gae_lambda: GAE lambda of every stream; 1.0 (SB3) gives plain n-step returns.
        ext_coef: weight of the extrinsic stream's advantage.
        ent_coef: entropy bonus weight (SB3: 0.0).
        vf_coef: value loss weight (SB3: 0.5).
        normalize_advantage: normalize the advantages of each update (SB3: False).
        hidden: widths of the separate actor and critic MLPs for vector observations (SB3: (64, 64)).
        encoders: your own modules for leaves of a Dict or Tuple observation, by path (``{"image": net}``,
            each with an ``out_dim``); other leaves get :class:`~rl_agents.core.encoders.ObservationEncoder`'s.
    """

    acts = True
    default_name = "a2c"
    resumable_settings = frozenset({"ent_coef", "vf_coef"})
    # Fused inference weights: a cache rebuilt from the parameters whenever they change (loads included).
    transient_attributes = frozenset({"_fused_inference"})

    def __init__(
        self,
        *,
        lr: float = 7e-4,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ext_coef: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        normalize_advantage: bool = False,
        hidden: tuple[int, ...] = (64, 64),
        encoders: Mapping[str, nn.Module] | None = None,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "gamma", gamma, 0.0, 1.0)
        check_option(self.name, "gae_lambda", gae_lambda, 0.0, 1.0)
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.ext_coef = ext_coef
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef
        self.normalize_advantage = normalize_advantage
        self.hidden = tuple(hidden)
        self.encoders = encoders
        self.streams: tuple[RewardStream, ...] = ()
        self._fused_inference: FusedMLPs | None = None

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream(EXTRINSIC, gamma=self.gamma, episodic=True, coef=self.ext_coef),)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        head = make_action_head(ctx.action_space)
        if head is None:
            raise CompositionError(
                f"agent {self.name!r} cannot act in action space {ctx.action_space}: "
                "supported are Discrete, MultiDiscrete and float Box"
            )
        self.streams = ctx.streams
        self.action_head: ActionHead = head
        self._build_networks(ctx.observation_space, head.out_dim, len(ctx.streams))

    def _build_networks(self, obs_space: gym.Space, action_dim: int, num_streams: int) -> None:
        trunk = observation_trunk(obs_space, self.encoders)
        self.trunk: nn.Module = trunk.module
        if trunk.convolutional:
            self.actor: nn.Module = layer_init(nn.Linear(trunk.out_dim, action_dim), std=0.01)
            self.critic: nn.Module = layer_init(nn.Linear(trunk.out_dim, num_streams), std=1.0)
            return
        self.actor = mlp(trunk.out_dim, self.hidden, action_dim, out_std=0.01)
        self.critic = mlp(trunk.out_dim, self.hidden, num_streams, out_std=1.0)
        if isinstance(self.trunk, (nn.Flatten, nn.Identity)):  # the MLPs read the observations as they are
            self._fused_inference = FusedMLPs(self.actor, self.critic)

    def data_spec(self) -> DataSpec:
        needs = {OBS, ACTION, VALUES, NEXT_OBS, TERMINATED, TRUNCATED, VALID} | {s.key for s in self.streams}
        return DataSpec(
            needs=frozenset(needs),
            provides=frozenset({ADVANTAGES, RETURNS}),
            act_outputs=frozenset({ACTION, VALUES}),
        )

    def loss_terms(self) -> dict[str, str]:
        return {
            "policy": "-mean(advantage x log-probability), advantage: coef-weighted sum over "
            f"{len(self.streams)} stream(s)",
            "value": f"{self.vf_coef} x sum over streams of mean squared error to the n-step return",
            "entropy": f"-{self.ent_coef} x policy entropy",
        }

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        """rl-zoo3's A2C entries run 8 envs or more (CartPole-v1: 8; Acrobot, MountainCar: 16)."""
        return 8

    def suggested_schedule(self) -> OnPolicySchedule:
        """SB3's A2C: 5 steps per env, one gradient step per rollout, constant learning rate."""
        return OnPolicySchedule(num_steps=5, num_epochs=1, num_minibatches=1, max_grad_norm=0.5, anneal_lr=False)

    # ------------------------------------------------------------------ networks
    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        # (CNNs and the Dict / Tuple encoder take observations as stored: uint8 images stay uint8 until scaled)
        return self.trunk(obs if isinstance(obs, (dict, tuple)) or isinstance(self.trunk, NatureCNN) else obs.float())

    def actor_critic(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Action-distribution parameters ``[B, action_dim]`` and values ``[B, num_streams]``."""
        features = self._features(obs)
        return self.actor(features), self.critic(features)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self._features(obs))

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        if self._fused_inference is not None and obs.dim() == 2:
            params, values = self._fused_inference(obs.float())
        else:
            params, values = self.actor_critic(obs)
        action = self.action_head.mode(params) if deterministic else self.action_head.sample(params, self.generator)
        return {ACTION: action, VALUES: values}

    def env_action(self, outputs: Batch) -> torch.Tensor:
        return self.action_head.to_env(outputs[ACTION])

    # ------------------------------------------------------------------ preprocessing
    @torch.no_grad()
    def preprocess(self, batch: Batch) -> Metrics:
        values = batch[VALUES]
        terminated = batch[TERMINATED]
        done = terminated | batch[TRUNCATED]
        valid = batch[VALID]
        next_values = next_state_values(values, done, batch[NEXT_OBS], lambda next_obs, _index: self.value(next_obs))
        advantages, returns, metrics = stream_advantages(
            values,
            next_values,
            lambda stream: batch[stream.key].float(),
            terminated,
            done,
            valid,
            self.streams,
            self.gae_lambda,
        )
        batch[ADVANTAGES] = advantages
        batch[RETURNS] = returns
        return metrics

    # ------------------------------------------------------------------ loss
    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], Metrics]:
        params, values = self.actor_critic(minibatch[OBS])
        log_prob, entropy = self.action_head.log_prob_entropy(params, minibatch[ACTION])
        advantages = minibatch[ADVANTAGES]
        if self.normalize_advantage:
            advantages = normalized(advantages)
        policy = policy_gradient_loss(log_prob, advantages)
        value_losses = squared_error_per_stream(values, minibatch[RETURNS])
        entropy_mean = entropy.mean()
        terms = {
            "policy": policy,
            "value": self.vf_coef * value_losses.sum(),
            "entropy": -self.ent_coef * entropy_mean,
        }
        metrics: Metrics = {"policy_loss": policy.detach(), "entropy": entropy_mean.detach()}
        for index, stream in enumerate(self.streams):
            metrics[f"value_loss/{stream.name}"] = value_losses[index].detach()
        return terms, metrics

    def after_update(self) -> None:
        if self._fused_inference is not None:
            self._fused_inference.invalidate()


def policy_gradient_loss(log_prob: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE with a baseline: ``-mean(A * log pi(a|s))``; no gradient flows into the advantages."""
    return -(advantages.detach() * log_prob).mean()


def squared_error_per_stream(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """``[num_streams]`` mean squared errors of ``[B, num_streams]`` values (SB3's ``F.mse_loss``)."""
    return (values - returns).square().mean(dim=0)


def normalized(advantages: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit standard deviation, as SB3's ``normalize_advantage`` (one row is left as is)."""
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
