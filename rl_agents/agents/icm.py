"""Intrinsic Curiosity Module (Pathak et al. 2017, "Curiosity-driven Exploration by Self-supervised
Prediction").

ICM is an exploration bonus, not a policy: it never acts. An encoder ``phi`` embeds observations; an
*inverse model* predicts the action taken from ``(phi(s), phi(s'))``, which shapes ``phi`` to keep what
the agent can influence; a *forward model* predicts ``phi(s')`` from ``(phi(s), a)``. Its error is the
curiosity reward, published as the non-episodic ``curiosity`` stream (a different name from RND's
``intrinsic`` stream, so both bonuses can be combined), which the acting agent (e.g. PPO) learns a
separate value for and mixes into its advantage with ``int_coef``.

Choices (the paper's where it gives one):

* loss ``(1 - beta) * L_I + beta * L_F`` with ``beta = 0.2`` (paper); the two weighted parts are the
  loss terms ``inverse`` and ``forward``; Adam learning rate 1e-3;
* ``L_I``: cross-entropy for Discrete actions, the sum over dimensions of per-dimension cross-entropies
  for MultiDiscrete, the mean squared error for Box actions (clipped to the space's finite bounds, the
  action the environment executed);
* ``L_F = 0.5 * ||f(phi(s), a) - phi(s')||^2`` summed over features, averaged over rows; the target
  ``phi(s')`` is detached, so the encoder learns from the inverse loss and, through ``phi(s)`` only,
  from the forward loss. The forward model sees the action one-hot (per dimension for MultiDiscrete)
  or raw (Box);
* reward per valid step ``eta * 0.5 * ||f(phi(s), a) - phi(s')||^2`` (``eta = 1``), i.e. ``eta`` times
  the row's ``L_F``, computed in ``preprocess`` with the models as they are at the end of the rollout,
  then divided by the running standard deviation of its discounted (``int_gamma``), never-reset return
  (``normalize_reward``; as in RND, Burda et al. 2018);
* observations are normalized by a running mean/std per element (updated with each batch's valid next
  observations before its rewards are computed) and clipped to ``+-obs_clip``, as in RND;
* networks: ``phi`` is the RND trunk (three 2x2 convolutions for small views such as MiniGrid's 7x7,
  the Nature convolutions for frames of 36 pixels or more, an MLP for vectors) and a linear layer to
  ``feature_dim`` features (256 for images, 64 for vectors), where the paper uses four 3x3 stride-2
  ELU convolutions (288 features); inverse and forward models have one hidden ReLU layer of
  ``head_hidden`` units (256, as in the paper).

Steps that are not real transitions (``valid`` False) get reward 0 and move no statistics; rows of a
minibatch whose ``valid`` is False (when the key is present) are left out of the loss. Minibatch rows
need not be consecutive, so the loss works on rows sampled from a replay buffer as well (with n-step
returns too: ``next_obs`` stays the one-step next observation there).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rl_agents.core.agent import (
    ACTION,
    NEXT_OBS,
    OBS,
    VALID,
    Agent,
    Batch,
    CompositionError,
    DataSpec,
    EnvContext,
    Metrics,
    RewardStream,
)
from rl_agents.core.bonus import intrinsic_reward
from rl_agents.core.nets import conv_trunk, flat_dim, layer_init, mlp_trunk, require_numeric_box, uses_convolutions
from rl_agents.core.normalize import ReturnScaler, RunningMeanStd
from rl_agents.core.trunks import ObservationSelector

CURIOSITY = "curiosity"


# ---------------------------------------------------------------------------------------------- actions


class ActionCoding(nn.Module):
    """How the forward model sees an action and how the inverse model's prediction of it is scored."""

    in_dim: int  # width of the encoded action fed to the forward model
    out_dim: int  # width of the inverse model's output

    def encode(self, action: torch.Tensor) -> torch.Tensor:
        """``[B, in_dim]`` float encoding of stored actions."""
        raise NotImplementedError

    def inverse_loss(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Per-row inverse-model loss ``[B]``."""
        raise NotImplementedError

    def accuracy(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor | None:
        """Per-row fraction of action components predicted exactly ``[B]`` (None for continuous actions)."""
        return None


class DiscreteCoding(ActionCoding):
    """Discrete actions stored as indices counted from 0 (the space's ``start`` is added only for the env)."""

    def __init__(self, n: int):
        super().__init__()
        self.in_dim = self.out_dim = n

    def encode(self, action: torch.Tensor) -> torch.Tensor:
        return F.one_hot(action.long().reshape(-1), self.in_dim).float()

    def inverse_loss(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(prediction, action.long().reshape(-1), reduction="none")

    def accuracy(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (prediction.argmax(-1) == action.long().reshape(-1)).float()


class MultiDiscreteCoding(ActionCoding):
    """MultiDiscrete actions ``[B, k]``: one one-hot and one cross-entropy per dimension."""

    def __init__(self, nvec: np.ndarray):
        super().__init__()
        self.sizes = [int(n) for n in np.asarray(nvec).reshape(-1)]
        self.in_dim = self.out_dim = sum(self.sizes)

    def _components(self, action: torch.Tensor) -> list[torch.Tensor]:
        return list(action.long().reshape(-1, len(self.sizes)).unbind(-1))

    def encode(self, action: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.one_hot(a, n) for a, n in zip(self._components(action), self.sizes)], -1).float()

    def inverse_loss(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        logits = prediction.split(self.sizes, -1)
        losses = [F.cross_entropy(logit, a, reduction="none") for logit, a in zip(logits, self._components(action))]
        return torch.stack(losses, -1).sum(-1)

    def accuracy(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        logits = prediction.split(self.sizes, -1)
        hits = [(logit.argmax(-1) == a).float() for logit, a in zip(logits, self._components(action))]
        return torch.stack(hits, -1).mean(-1)


class BoxCoding(ActionCoding):
    """Continuous actions, flattened and clipped to the space's bounds (infinite bounds clip nothing)."""

    def __init__(self, space: gym.spaces.Box):
        super().__init__()
        self.in_dim = self.out_dim = flat_dim(space)
        self.register_buffer("low", torch.as_tensor(space.low, dtype=torch.float32).reshape(-1))
        self.register_buffer("high", torch.as_tensor(space.high, dtype=torch.float32).reshape(-1))

    def encode(self, action: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(action.float().reshape(-1, self.in_dim), self.high), self.low)

    def inverse_loss(self, prediction: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return (prediction - self.encode(action)).square().mean(-1)


def make_action_coding(space: gym.Space) -> ActionCoding | None:
    """The coding for an action space, or None when it is not supported."""
    if isinstance(space, gym.spaces.Discrete):
        return DiscreteCoding(int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete) and not np.any(space.start):
        return MultiDiscreteCoding(space.nvec)
    if isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating) and flat_dim(space) > 0:
        return BoxCoding(space)
    return None


# ---------------------------------------------------------------------------------------------- math


def half_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row ``0.5 * ||prediction - target||^2`` ``[B]``: the forward loss and, times eta, the reward."""
    return 0.5 * (prediction - target).square().sum(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the rows where ``mask`` is True (all rows without a mask; 0 when none is)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def _check_sizes(agent: str, **sizes: int | None) -> None:
    for option, size in sizes.items():
        if size is not None and size < 1:
            raise ValueError(f"agent {agent!r}: {option} must be >= 1, got {size}")


def two_layer(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear, the shape of the paper's inverse and forward models."""
    return nn.Sequential(
        layer_init(nn.Linear(in_dim, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, out_dim), std=1.0)
    )


# ---------------------------------------------------------------------------------------------- agent


class ICM(Agent):
    """Intrinsic Curiosity Module exploration bonus (does not act).

    Args:
        lr: Adam learning rate of the encoder, inverse and forward models.
        beta: weight of the forward loss; the inverse loss gets ``1 - beta`` (paper: 0.2).
        eta: scale of the curiosity reward ``eta * 0.5 * ||f(phi(s), a) - phi(s')||^2``; with ``normalize_reward``
            it cancels out (the return's std scales with it, up to the normalizer's epsilon), so it matters
            only without normalization.
        int_gamma: discount of the curiosity stream and of the return whose std scales the reward.
        int_coef: weight of the curiosity advantage in the acting agent.
        normalize_reward: divide the reward by the running std of its discounted, never-reset return.
        normalize_obs: normalize observations by a running mean/std per element, clipped to ``+-obs_clip``.
        obs_clip: clip of the normalized observations.
        feature_dim: size of ``phi``; ``None`` gives 256 for images and 64 for vectors.
        hidden: MLP widths of ``phi`` before its last linear layer, for vector observations.
        head_hidden: hidden width of the inverse and forward models (paper: 256).
        chunk_size: rows per forward pass when computing a batch's rewards (bounds memory).
        warmup_steps: vector-env steps of random actions whose observations initialize the observation
            statistics before training; 0 skips the warm-up.
        obs_keys: the leaves of a Dict or Tuple observation to read, by path (one image, or vectors side
            by side); None: the only image leaf if there is one, else every vector leaf.
    """

    acts = False
    default_name = "icm"
    transient_attributes = frozenset({"observation_selector"})  # rebuilt from the space by bind

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        beta: float = 0.2,
        eta: float = 1.0,
        int_gamma: float = 0.99,
        int_coef: float = 1.0,
        normalize_reward: bool = True,
        normalize_obs: bool = True,
        obs_clip: float = 5.0,
        feature_dim: int | None = None,
        hidden: tuple[int, ...] = (64, 64),
        head_hidden: int = 256,
        chunk_size: int = 4096,
        warmup_steps: int = 0,
        obs_keys: list[str] | None = None,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.eta = eta
        self.int_gamma = int_gamma
        self.int_coef = int_coef
        self.normalize_reward = normalize_reward
        self.normalize_obs = normalize_obs
        self.obs_clip = obs_clip
        _check_sizes(
            self.default_name if name is None else name,
            feature_dim=feature_dim,
            head_hidden=head_hidden,
            chunk_size=chunk_size,
        )
        self.feature_dim = feature_dim
        self.hidden = tuple(hidden)
        self.head_hidden = head_hidden
        self.chunk_size = chunk_size
        self.warmup_steps = warmup_steps
        self.obs_keys = None if obs_keys is None else list(obs_keys)
        self.stream = RewardStream(CURIOSITY, gamma=int_gamma, episodic=False, coef=int_coef)

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (self.stream,)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        self.observation_selector = ObservationSelector(self.name, ctx.observation_space, self.obs_keys)
        space = self.observation_selector.space
        require_numeric_box(self.name, space)
        coding = make_action_coding(ctx.action_space)
        if coding is None:
            raise CompositionError(
                f"agent {self.name!r} cannot model actions of space {ctx.action_space}: "
                "supported are Discrete, MultiDiscrete (start 0) and float Box"
            )
        self.actions = coding
        self.num_features = self._build_encoder(space)
        self.inverse_model = two_layer(2 * self.num_features, self.head_hidden, coding.out_dim)
        self.forward_model = two_layer(self.num_features + coding.in_dim, self.head_hidden, self.num_features)
        self.obs_rms = RunningMeanStd(tuple(space.shape))
        self.reward_scaler = ReturnScaler(ctx.num_envs, self.int_gamma)

    def _build_encoder(self, space: gym.spaces.Box) -> int:
        if uses_convolutions(space):
            trunk, trunk_dim = conv_trunk(space)
            features = self.feature_dim or 256
        else:
            trunk, trunk_dim = mlp_trunk(space, self.hidden)
            features = self.feature_dim or 64
        self.encoder = nn.Sequential(trunk, layer_init(nn.Linear(trunk_dim, features), std=1.0))
        return features

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({OBS, NEXT_OBS, ACTION, VALID}), provides=frozenset({self.stream.key}))

    def loss_terms(self) -> dict[str, str]:
        return {
            "inverse": f"{1 - self.beta:g} x inverse-model loss of the action from (phi(s), phi(s'))",
            "forward": f"{self.beta:g} x 0.5 * ||forward(phi(s), a) - phi(s')||^2 (target detached)",
        }

    @torch.no_grad()
    def warmup(self, next_obs: torch.Tensor) -> None:
        next_obs = self.observation_selector(next_obs)
        self.obs_rms.update(next_obs.reshape(-1, *next_obs.shape[2:]))

    # ------------------------------------------------------------------ networks
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the encoder sees them: running-normalized and clipped (if on), float32."""
        if not self.normalize_obs:
            return obs.float()
        return self.obs_rms.normalize(obs.float(), clip=self.obs_clip).float()

    def encode_pair(self, obs: torch.Tensor, next_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(phi(s), phi(s'))`` of raw observations, in one pass through the encoder."""
        features = self.encoder(self.normalize(torch.cat([obs, next_obs])))
        return features[: obs.shape[0]], features[obs.shape[0] :]

    def predict_next(self, phi: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The forward model's prediction of ``phi(s')``."""
        return self.forward_model(torch.cat([phi, self.actions.encode(action)], -1))

    def predict_action(self, phi: torch.Tensor, next_phi: torch.Tensor) -> torch.Tensor:
        """The inverse model's logits (discrete) or action estimate (Box)."""
        return self.inverse_model(torch.cat([phi, next_phi], -1))

    def curiosity(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Unnormalized reward per row ``eta * 0.5 * ||forward(phi(s), a) - phi(s')||^2`` ``[B]``."""
        phi, next_phi = self.encode_pair(obs, next_obs)
        return self.eta * half_squared_error(self.predict_next(phi, action), next_phi)

    # ------------------------------------------------------------------ preprocessing
    @torch.no_grad()
    def preprocess(self, batch: Batch) -> Metrics:
        valid = batch[VALID]
        rows = valid.nonzero(as_tuple=True)
        obs, next_obs = self.observation_selector(batch[OBS]), self.observation_selector(batch[NEXT_OBS])
        if self.normalize_obs and rows[0].numel() > 0:
            self.obs_rms.update(next_obs[rows])
        raw = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
        if rows[0].numel() > 0:
            raw[rows] = self._curiosity_in_chunks(obs[rows], batch[ACTION][rows], next_obs[rows])
        reward, metrics = intrinsic_reward(raw, valid, self.reward_scaler, CURIOSITY, normalize=self.normalize_reward)
        batch[self.stream.key] = reward
        return metrics

    def _curiosity_in_chunks(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        size = self.chunk_size
        parts = [
            self.curiosity(obs[i : i + size], action[i : i + size], next_obs[i : i + size])
            for i in range(0, obs.shape[0], size)
        ]
        return torch.cat(parts)

    # ------------------------------------------------------------------ loss
    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], Metrics]:
        obs, next_obs = self.observation_selector(minibatch[OBS]), self.observation_selector(minibatch[NEXT_OBS])
        action = minibatch[ACTION]
        valid = minibatch.get(VALID)
        phi, next_phi = self.encode_pair(obs, next_obs)
        predicted_action = self.predict_action(phi, next_phi)
        inverse_loss = masked_mean(self.actions.inverse_loss(predicted_action, action), valid)
        forward_loss = masked_mean(half_squared_error(self.predict_next(phi, action), next_phi.detach()), valid)
        terms = {"inverse": (1.0 - self.beta) * inverse_loss, "forward": self.beta * forward_loss}
        # Detached tensors, not floats: the Trainer converts all logged values with one host sync.
        metrics: Metrics = {"inverse_loss": inverse_loss.detach(), "forward_loss": forward_loss.detach()}
        with torch.no_grad():
            accuracy = self.actions.accuracy(predicted_action, action)
            if accuracy is not None:
                metrics["inverse_accuracy"] = masked_mean(accuracy, valid)
        return terms, metrics
