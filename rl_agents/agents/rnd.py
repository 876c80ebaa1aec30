"""Random Network Distillation (Burda et al. 2018, "Exploration by Random Network Distillation"),
following CleanRL's ``ppo_rnd_envpool.py``.

RND is an exploration bonus, not a policy: it never acts. A fixed, randomly initialized *target*
network embeds each (normalized) next observation and a *predictor* network is trained to match
that embedding. The prediction error is small on observations like those trained on and large on
novel ones; it is published as the non-episodic ``intrinsic`` reward stream, which the acting agent
(e.g. PPO) learns a separate value for and mixes into its advantage with ``int_coef``.

Details kept from CleanRL:

* observations are normalized by a running mean/std (per element) and clipped to ``+-obs_clip``
  before both networks;
* the intrinsic reward is ``((target - predictor) ** 2).sum(-1) / 2``, divided by the running
  standard deviation of its discounted (``int_gamma``), never-reset return;
* the predictor loss is the feature MSE, each sample kept with probability ``update_proportion``;
* networks: CleanRL's convolutional target (3 convs + linear) and predictor (same convs + 3 linear
  layers) with LeakyReLU and orthogonal ``sqrt(2)`` initialization; small views such as MiniGrid's
  7x7 views use 2x2 kernels; vector observations use MLPs of the same shape.

Differences from CleanRL:

* the random-action warm-up of the observation statistics is optional (``warmup_steps``, off by
  default); ``preprocess`` updates the statistics with the rollout's valid next observations
  *before* computing the rollout's rewards, so without a warm-up the first rollout is normalized by
  its own statistics;
* the rewards of a rollout are computed in ``preprocess`` with the predictor as it is at the end of
  the rollout (CleanRL computes them step by step during the rollout with the same predictor, since
  it only changes during the update);
* the discounted return used for the reward scale runs per environment along time, as in Burda et
  al.'s code (CleanRL iterates its ``[T, N]`` buffer transposed, i.e. along environments), and steps
  that are not real transitions (``valid`` False) neither advance it nor enter its statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from rl_agents.core.agent import (
    NEXT_OBS,
    VALID,
    Agent,
    Batch,
    DataSpec,
    EnvContext,
    Metrics,
    RewardStream,
    check_option,
)
from rl_agents.core.bonus import intrinsic_reward
from rl_agents.core.nets import conv_trunk, layer_init, mlp_trunk, require_numeric_box, uses_convolutions
from rl_agents.core.normalize import ReturnScaler, RunningMeanStd
from rl_agents.core.trunks import ObservationSelector

INTRINSIC = "intrinsic"


class RND(Agent):
    """Random Network Distillation exploration bonus (does not act).

    Args:
        lr: Adam learning rate of the predictor (CleanRL: 1e-4).
        int_gamma: discount of the intrinsic stream (CleanRL: 0.99).
        int_coef: weight of the intrinsic advantage in the acting agent (CleanRL: 1.0).
        update_proportion: fraction of each minibatch the predictor trains on (CleanRL: 0.25).
        obs_clip: normalized observations are clipped to ``+-obs_clip`` (CleanRL: 5).
        feature_dim: embedding size; ``None`` gives 512 for images (CleanRL) and 64 for vectors.
        hidden: MLP widths before the embedding for vector observations.
        chunk_size: rows per forward pass when computing a rollout's rewards (bounds memory).
        warmup_steps: vector-env steps of random actions whose observations initialize the observation
            statistics before training (CleanRL: 50 rollouts of 128 steps); 0 skips the warm-up.
        obs_keys: the leaves of a Dict or Tuple observation to read, by path (one image, or vectors side
            by side); None: the only image leaf if there is one, else every vector leaf.
    """

    acts = False
    default_name = "rnd"
    transient_attributes = frozenset({"observation_selector"})  # rebuilt from the space by bind

    def __init__(
        self,
        *,
        lr: float = 1e-4,
        int_gamma: float = 0.99,
        int_coef: float = 1.0,
        update_proportion: float = 0.25,
        obs_clip: float = 5.0,
        feature_dim: int | None = None,
        hidden: tuple[int, ...] = (64, 64),
        chunk_size: int = 4096,
        warmup_steps: int = 0,
        obs_keys: list[str] | None = None,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "int_gamma", int_gamma, 0.0, 1.0)
        check_option(self.name, "obs_clip", obs_clip, 0.0)
        for option, size in (("feature_dim", feature_dim), ("chunk_size", chunk_size)):
            if size is not None and size < 1:
                raise ValueError(f"agent {name or self.default_name!r}: {option} must be >= 1, got {size}")
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        self.int_gamma = int_gamma
        self.int_coef = int_coef
        self.update_proportion = update_proportion
        self.obs_clip = obs_clip
        self.feature_dim = feature_dim
        self.hidden = tuple(hidden)
        self.chunk_size = chunk_size
        self.warmup_steps = warmup_steps
        self.obs_keys = None if obs_keys is None else list(obs_keys)
        self.stream = RewardStream(INTRINSIC, gamma=int_gamma, episodic=False, coef=int_coef)

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (self.stream,)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        self.observation_selector = ObservationSelector(self.name, ctx.observation_space, self.obs_keys)
        space = self.observation_selector.space
        require_numeric_box(self.name, space)
        if uses_convolutions(space):
            features = self.feature_dim or 512
            target_trunk, trunk_dim = conv_trunk(space)
            predictor_trunk, _ = conv_trunk(space)
        else:
            features = self.feature_dim or 64
            target_trunk, trunk_dim = mlp_trunk(space, self.hidden)
            predictor_trunk, _ = mlp_trunk(space, self.hidden)
        self.features = features
        self.target = nn.Sequential(target_trunk, layer_init(nn.Linear(trunk_dim, features)))
        self.predictor = nn.Sequential(
            predictor_trunk,
            layer_init(nn.Linear(trunk_dim, features)),
            nn.ReLU(),
            layer_init(nn.Linear(features, features)),
            nn.ReLU(),
            layer_init(nn.Linear(features, features)),
        )
        for param in self.target.parameters():
            param.requires_grad_(False)
        self.obs_rms = RunningMeanStd(tuple(space.shape))
        self.reward_scaler = ReturnScaler(ctx.num_envs, self.int_gamma)

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({NEXT_OBS, VALID}), provides=frozenset({self.stream.key}))

    def loss_terms(self) -> dict[str, str]:
        return {
            "predictor": "MSE of predictor vs fixed target features on a "
            f"{self.update_proportion:g} fraction of the minibatch",
        }

    @torch.no_grad()
    def warmup(self, next_obs: torch.Tensor) -> None:
        next_obs = self.observation_selector(next_obs)
        self.obs_rms.update(next_obs.reshape(-1, *next_obs.shape[2:]))

    # ------------------------------------------------------------------ networks
    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Observations as the networks see them: running-normalized, clipped, float32."""
        return self.obs_rms.normalize(obs.float(), clip=self.obs_clip).float()

    def prediction_error(self, obs: torch.Tensor) -> torch.Tensor:
        """Per-row novelty ``((target - predictor) ** 2).sum(-1) / 2`` of raw observations ``[B, ...]``."""
        x = self.normalize(obs)
        return (self.target(x) - self.predictor(x)).square().sum(-1) / 2

    # ------------------------------------------------------------------ preprocessing
    @torch.no_grad()
    def preprocess(self, batch: Batch) -> Metrics:
        next_obs, valid = self.observation_selector(batch[NEXT_OBS]), batch[VALID]
        valid_obs = next_obs[valid]
        if valid_obs.shape[0] > 0:
            self.obs_rms.update(valid_obs)
        raw = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
        if valid_obs.shape[0] > 0:
            raw[valid] = torch.cat([self.prediction_error(chunk) for chunk in valid_obs.split(self.chunk_size)])
        reward, metrics = intrinsic_reward(raw, valid, self.reward_scaler, INTRINSIC)
        batch[self.stream.key] = reward
        return metrics

    # ------------------------------------------------------------------ loss
    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], Metrics]:
        next_obs = self.observation_selector(minibatch[NEXT_OBS])
        generator = self.generator
        device = generator.device if generator is not None else next_obs.device
        draw = torch.rand(next_obs.shape[0], generator=generator, device=device).to(next_obs.device)
        # Only the kept rows enter the loss, so only they go through the networks (4x less work at 0.25).
        kept = (draw < self.update_proportion).nonzero().squeeze(1)
        if kept.numel() == 0:
            zero_loss, zero_metric = torch.zeros((), device=next_obs.device), torch.zeros((), device=next_obs.device)
            return {"predictor": zero_loss}, {"predictor_loss": zero_metric}
        x = self.normalize(next_obs[kept])
        with torch.no_grad():
            target = self.target(x)
        predictor_loss = (self.predictor(x) - target).square().mean(-1).mean()
        # A detached tensor, not a float: the Learner converts all logged values with one host sync.
        return {"predictor": predictor_loss}, {"predictor_loss": predictor_loss.detach()}
