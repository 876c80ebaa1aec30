"""Proximal Policy Optimization (Schulman et al. 2017) with the implementation details of
Huang et al. (2022), "The 37 Implementation Details of PPO", matching CleanRL's ``ppo.py`` (discrete
actions) and ``ppo_continuous_action.py`` (Box actions) defaults.

PPO keeps one value head per reward stream in the composition. Each stream gets its own GAE with
its own discount (episodic streams stop at terminal states, non-episodic ones bootstrap through them)
and the policy's advantage is the ``coef``-weighted sum of the streams' advantages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import nn

from rl_agents.core import trunks
from rl_agents.core.agent import (
    ACTION,
    EPISODE_START,
    EXTRINSIC,
    NEXT_OBS,
    OBS,
    SEQUENCE_VALID,
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
    carried_key,
    check_option,
    next_carried_key,
    sequence_key,
)
from rl_agents.core.distributions import ActionHead, make_action_head
from rl_agents.core.nets import FusedMLPs, is_image_space, layer_init, mlp
from rl_agents.core.normalize import ReturnScaler
from rl_agents.core.recurrent import MEMORY_KINDS, RecurrentCore
from rl_agents.core.returns import next_state_values, stream_advantages
from rl_agents.core.schedules import OnPolicySchedule
from rl_agents.core.tree import first_leaf

LOGPROB = "logprob"
VALUES = "values"  # [N, num_streams]: one value estimate per reward stream
POLICY_OBS = "policy_obs"  # the normalized observation the policy saw (only with normalize_obs)
ADVANTAGES = "advantages"
RETURNS = "returns"  # [N, num_streams]


@dataclass(frozen=True)
class _Defaults:
    lr: float
    ent_coef: float
    normalize: bool
    schedule: OnPolicySchedule
    num_envs: int  # what a run config without trainer.num_envs gets


# CleanRL ppo.py's settings on 8 envs (CleanRL runs 4; rl-zoo3 8 or 16 on classic control and MiniGrid).
DISCRETE_DEFAULTS = _Defaults(
    lr=2.5e-4, ent_coef=0.01, normalize=False, schedule=OnPolicySchedule(128, 4, 4, 0.5, True), num_envs=8
)
# CleanRL ppo_continuous_action.py's 10 epochs, minibatches of 64 and normalized observations and rewards,
# on rollouts of 4 envs x 256 steps at lr 1e-3: these learn Pendulum-v1 in 100k steps (a last-20 mean of
# -200 after 52k-60k steps on seeds 2-4; CleanRL's 1 env x 2048 at 3e-4 stays near -1200, and 4 x 512 missed
# on seed 2). MuJoCo tasks have tuned presets.
CONTINUOUS_DEFAULTS = _Defaults(
    lr=1e-3, ent_coef=0.0, normalize=True, schedule=OnPolicySchedule(256, 10, 16, 0.5, True), num_envs=4
)
# Small symbolic grid views (MiniGrid's 7x7x3): rl-zoo3's MiniGrid PPO settings (8 envs x 128 steps, 10
# epochs of minibatches of 64, lr 2.5e-4 constant, no entropy bonus), as its DoorKey-5x5 preset; CleanRL's
# Atari-style settings leave DoorKey-5x5 unsolved at 250k steps; these solve it at 45k on seed 2, while
# seed 1 stays at 0.0 over 100k (so it did with CleanRL's entropy bonus of 0.01 too).
GRID_DEFAULTS = _Defaults(
    lr=2.5e-4, ent_coef=0.0, normalize=False, schedule=OnPolicySchedule(128, 10, 16, 0.5, False), num_envs=8
)


# With memory, minibatches are whole env sequences (CleanRL's ppo_atari_lstm.py: 8 envs in 4 minibatches
# of 2 envs' full rollouts); more minibatches than envs are lowered to the number of envs.
MEMORY_NUM_MINIBATCHES = 4
CRITIC_STATE = "critic_"  # names of the critic core's carried state (critic_memory): critic_h, critic_c


def ppo_defaults(observation_space: gym.Space, action_space: gym.Space) -> _Defaults:
    """The defaults for the spaces: continuous actions, discrete actions on a small grid view, or discrete."""
    if isinstance(action_space, gym.spaces.Box):
        return CONTINUOUS_DEFAULTS
    return GRID_DEFAULTS if trunks.has_small_grid_view(observation_space) else DISCRETE_DEFAULTS


class PPO(Agent):
    """PPO with clipped surrogate, optional clipped value loss, entropy bonus and GAE.

    ``None`` hyperparameters take the defaults for the spaces (``DISCRETE_DEFAULTS``, ``GRID_DEFAULTS``,
    ``CONTINUOUS_DEFAULTS``): discrete, CleanRL's (lr 2.5e-4, ent_coef 0.01, no normalization,
    128 steps x 4 epochs x 4 minibatches, 8 envs); discrete on a small grid view (MiniGrid), rl-zoo3's
    (lr 2.5e-4 constant, 128 steps x 10 epochs x 16 minibatches, no entropy bonus, 8 envs);
    continuous, lr 1e-3, ent_coef 0, observation and reward normalization, 256 steps x 10 epochs x 16
    minibatches on 4 envs.

    Args:
        gamma, gae_lambda: discount and GAE lambda of the extrinsic stream.
        ext_coef: weight of the extrinsic stream's advantage.
        clip_coef: surrogate (and value) clipping range.
        anneal_clip: decay the clipping range linearly to 0 over the run's total steps, as rl-zoo3's
            ``clip_range: lin_<x>`` (SB3 reads the progress when each update starts).
        clip_vloss: clip the value loss around the rollout's value estimates.
        ent_coef, vf_coef: entropy bonus and value loss weights.
        norm_adv: normalize advantages per minibatch.
        target_kl: stop the update's epochs once the approximate KL exceeds it.
        normalize_obs: running mean/std observation normalization, clipped to +-obs_clip.
        normalize_reward: scale extrinsic rewards by the running std of the discounted return,
            clipped to +-reward_clip.
        hidden: MLP widths for vector observations (images use the Nature CNN); with memory, the
            widths of the actor's and critic's MLPs on top of the recurrent core.
        memory: None, "lstm" or "gru": a recurrent core between the observation encoder (identity for
            vector observations, the CNN for images) and the actor and critic heads. Its state is
            carried between steps and reset at episode starts, and the loss replays whole env
            sequences from the state stored at the rollout's start (the schedule it suggests has
            ``sequence_minibatches``). Orthogonal weights, zero biases, as CleanRL's ``ppo_atari_lstm.py``.
        memory_size: the recurrent core's width.
        critic_memory: give the critic a recurrent core of its own (as SB3-contrib's RecurrentPPO,
            ``enable_critic_lstm``), the default; False shares the actor's core (as CleanRL), at half
            the recurrent compute, and lets the value loss shape the policy's memory. On position-only
            CartPole with rl-zoo3's settings the separate core solved the task and the shared one did
            not (BENCHMARKS.md, "Memory").
        encoders: your own modules for leaves of a Dict or Tuple observation, by path (``{"image": net}``,
            each with an ``out_dim``); other leaves get :class:`~rl_agents.core.encoders.ObservationEncoder`'s.
    """

    acts = True
    default_name = "ppo"
    resumable_settings = frozenset({"ent_coef", "vf_coef", "target_kl"})
    # Fused inference weights: a cache rebuilt from the parameters whenever they change (loads included).
    # The annealed clipping range: recomputed from the step count before every act and update.
    transient_attributes = frozenset({"_fused_inference", "_clip_now"})

    def __init__(
        self,
        *,
        lr: float | None = None,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        ext_coef: float = 1.0,
        clip_coef: float = 0.2,
        anneal_clip: bool = False,
        clip_vloss: bool = True,
        ent_coef: float | None = None,
        vf_coef: float = 0.5,
        norm_adv: bool = True,
        target_kl: float | None = None,
        normalize_obs: bool | None = None,
        normalize_reward: bool | None = None,
        obs_clip: float = 10.0,
        reward_clip: float = 10.0,
        hidden: tuple[int, ...] = (64, 64),
        bonus_value_init_std: float | None = None,
        memory: str | None = None,
        memory_size: int = 128,
        critic_memory: bool = True,
        encoders: Mapping[str, nn.Module] | None = None,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "gamma", gamma, 0.0, 1.0)
        check_option(self.name, "gae_lambda", gae_lambda, 0.0, 1.0)
        check_option(self.name, "clip_coef", clip_coef, 0.0)
        check_option(self.name, "obs_clip", obs_clip, 0.0)
        check_option(self.name, "reward_clip", reward_clip, 0.0)
        check_option(self.name, "bonus_value_init_std", bonus_value_init_std, 0.0)
        check_option(self.name, "memory_size", memory_size, 1)
        if memory is not None and memory not in MEMORY_KINDS:
            raise ValueError(
                f"agent {self.name!r}: memory must be one of {', '.join(map(repr, MEMORY_KINDS))} or None, "
                f"got {memory!r}"
            )
        self.gamma = gamma
        self.gae_lambda = gae_lambda
        self.ext_coef = ext_coef
        self.clip_coef = clip_coef
        self.anneal_clip = anneal_clip
        self._clip_now = clip_coef  # clip_coef, or its annealed value (anneal_clip) at the latest progress
        self.clip_vloss = clip_vloss
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef
        self.norm_adv = norm_adv
        self.target_kl = target_kl
        self.normalize_obs = normalize_obs
        self.normalize_reward = normalize_reward
        self.obs_clip = obs_clip
        self.reward_clip = reward_clip
        self.hidden = tuple(hidden)
        self.bonus_value_init_std = bonus_value_init_std
        self.memory = memory
        self.memory_size = int(memory_size)
        self.critic_memory = critic_memory
        self.encoders = encoders
        self.core: RecurrentCore | None = None
        self.critic_core: RecurrentCore | None = None
        self.streams: tuple[RewardStream, ...] = ()
        self._defaults = DISCRETE_DEFAULTS
        self._fused_inference: FusedMLPs | None = None

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream(EXTRINSIC, gamma=self.gamma, episodic=True, coef=self.ext_coef),)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        obs_space, action_space = ctx.observation_space, ctx.action_space
        head = make_action_head(action_space)
        if head is None:
            raise CompositionError(
                f"agent {self.name!r} cannot act in action space {action_space}: "
                "supported are Discrete, MultiDiscrete and float Box"
            )
        self._defaults = ppo_defaults(obs_space, action_space)
        if self.lr is None:
            self.lr = self._defaults.lr
        if self.ent_coef is None:
            self.ent_coef = self._defaults.ent_coef
        if self.normalize_obs is None:
            self.normalize_obs = self._defaults.normalize and not is_image_space(obs_space)
        if self.normalize_reward is None:
            self.normalize_reward = self._defaults.normalize
        self.streams = ctx.streams
        self.action_head: ActionHead = head
        self._build_networks(obs_space, head.out_dim, len(ctx.streams))
        if self.normalize_obs:
            self.obs_rms = trunks.observation_normalizer(obs_space)
        if self.normalize_reward:
            self.reward_scaler = ReturnScaler(ctx.num_envs, self.gamma)

    def _build_networks(self, obs_space: gym.Space, action_dim: int, num_streams: int) -> None:
        trunk = trunks.observation_trunk(obs_space, self.encoders)
        self.trunk: nn.Module = trunk.module
        if self.memory is not None:
            self._build_recurrent_networks(trunk, action_dim, num_streams)
        elif trunk.convolutional:
            self.actor = layer_init(nn.Linear(trunk.out_dim, action_dim), std=0.01)
            self.critic = layer_init(nn.Linear(trunk.out_dim, num_streams), std=1.0)
            self._init_bonus_value_heads(self.critic)
        else:
            self.actor = mlp(trunk.out_dim, self.hidden, action_dim, out_std=0.01)
            self.critic = mlp(trunk.out_dim, self.hidden, num_streams, out_std=1.0)
            self._init_bonus_value_heads(self.critic[-1])
            if isinstance(self.trunk, (nn.Flatten, nn.Identity)):  # the MLPs read the observations as they are
                self._fused_inference = FusedMLPs(self.actor, self.critic)

    def _build_recurrent_networks(self, trunk: trunks.Trunk, action_dim: int, num_streams: int) -> None:
        """Encoder -> LSTM/GRU -> actor and critic heads (linear on images, MLPs of ``hidden`` otherwise)."""
        assert self.memory is not None
        input_dim, head_hidden = trunk.out_dim, () if trunk.convolutional else self.hidden
        self.core = RecurrentCore(self.memory, input_dim, self.memory_size)
        if self.critic_memory:
            self.critic_core = RecurrentCore(self.memory, input_dim, self.memory_size)
        self.actor = mlp(self.memory_size, head_hidden, action_dim, out_std=0.01)
        self.critic = mlp(self.memory_size, head_hidden, num_streams, out_std=1.0)
        self._init_bonus_value_heads(self.critic[-1] if isinstance(self.critic, nn.Sequential) else self.critic)

    def _init_bonus_value_heads(self, head: nn.Module) -> None:
        """Re-initialize the value-head rows of the streams other agents add (``bonus_value_init_std``)."""
        if self.bonus_value_init_std is None:
            return
        with torch.no_grad():
            for index, stream in enumerate(self.streams):
                if stream.name != EXTRINSIC:
                    nn.init.orthogonal_(head.weight[index : index + 1], self.bonus_value_init_std)

    def carried_state(self) -> dict[str, tuple[int, ...]]:
        if self.core is None:
            return {}
        critic = {} if self.critic_core is None else self.critic_core.state_shapes()
        return {**self.core.state_shapes(), **{CRITIC_STATE + name: shape for name, shape in critic.items()}}

    def data_spec(self) -> DataSpec:
        policy_input = POLICY_OBS if self.normalize_obs else OBS
        act_outputs = {ACTION, LOGPROB, VALUES} | ({POLICY_OBS} if self.normalize_obs else set())
        needs = {policy_input, ACTION, LOGPROB, VALUES, NEXT_OBS, TERMINATED, TRUNCATED, VALID}
        needs |= {stream.key for stream in self.streams}
        sequence_needs: set[str] = set()
        if self.core is not None:
            carried = {carried_key(name) for name in self.carried_state()}
            next_carried = {next_carried_key(name) for name in self.carried_state()}
            act_outputs |= next_carried  # the state after each step: bootstrap values of truncated episodes
            needs |= carried | next_carried | {EPISODE_START}
            sequence_needs = {policy_input, EPISODE_START} | carried
        return DataSpec(
            needs=frozenset(needs),
            provides=frozenset({ADVANTAGES, RETURNS}),
            act_outputs=frozenset(act_outputs),
            sequence_needs=frozenset(sequence_needs),
        )

    def loss_terms(self) -> dict[str, str]:
        clip = f"clipped to +-{self.clip_coef}" if self.clip_vloss else "unclipped"
        return {
            "policy": f"clipped surrogate (clip {self.clip_coef}) on the coef-weighted advantage of "
            f"{len(self.streams)} stream(s)",
            "value": f"{self.vf_coef} x sum over streams of 0.5 * squared error ({clip})",
            "entropy": f"-{self.ent_coef} x policy entropy",
        }

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        return ppo_defaults(observation_space, action_space).num_envs

    def suggested_schedule(self) -> OnPolicySchedule:
        schedule = OnPolicySchedule(**vars(self._defaults.schedule))
        if self.memory is not None:
            schedule.sequence_minibatches = True
            schedule.num_minibatches = MEMORY_NUM_MINIBATCHES
        return schedule

    # ------------------------------------------------------------------ acting
    def _policy_input(self, obs: torch.Tensor, update_stats: bool) -> torch.Tensor:
        if not self.normalize_obs:
            return obs
        if update_stats:
            self.obs_rms.update(obs)
        return trunks.normalized(self.obs_rms, obs, self.obs_clip)

    def _actor_critic(self, policy_obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(policy_obs)
        return self.actor(features), self.critic(features)

    def value(self, policy_obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.trunk(policy_obs))

    def _recurrent_step(self, policy_obs: torch.Tensor, state: Batch) -> tuple[torch.Tensor, torch.Tensor, Batch]:
        """One step of rows from ``state``: the actor's and the critic's inputs, and the next state."""
        assert self.core is not None
        features = self.trunk(policy_obs)
        actor_in, next_state = self.core.step(features, _state_of(state, self.core, ""))
        if self.critic_core is None:
            return actor_in, actor_in, next_state
        critic_in, critic_state = self.critic_core.step(features, _state_of(state, self.critic_core, CRITIC_STATE))
        next_state.update({CRITIC_STATE + name: value for name, value in critic_state.items()})
        return actor_in, critic_in, next_state

    def _recurrent_sequence(self, minibatch: Batch, policy_input: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's and critic's inputs for a sequence minibatch's rows: its ``[T, B]`` sequences
        replayed from the state stored at their first step, reset at episode starts, then the valid rows."""
        assert self.core is not None
        observations = minibatch[sequence_key(policy_input)]
        steps, envs = first_leaf(observations).shape[:2]
        features = self.trunk(trunks.merge_leading(observations)).reshape(steps, envs, -1)
        starts, valid = minibatch[sequence_key(EPISODE_START)], minibatch[SEQUENCE_VALID]
        state = {name: minibatch[sequence_key(carried_key(name))][0] for name in self.carried_state()}
        actor_in = self.core.sequence(features, starts, _state_of(state, self.core, ""))[valid]
        if self.critic_core is None:
            return actor_in, actor_in
        critic_state = _state_of(state, self.critic_core, CRITIC_STATE)
        return actor_in, self.critic_core.sequence(features, starts, critic_state)[valid]

    def _memory_state(self, state: Batch | None) -> Batch:
        if state is None:
            raise ValueError(f"agent {self.name!r} has memory ({self.memory}): act needs its carried state, state=...")
        return state

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False, state: Batch | None = None) -> Batch:
        policy_obs = self._policy_input(obs, update_stats=self.training)
        next_state: Batch = {}
        if self.core is not None:
            actor_in, critic_in, next_state = self._recurrent_step(policy_obs, self._memory_state(state))
            params, values = self.actor(actor_in), self.critic(critic_in)
        elif self._fused_inference is not None and policy_obs.dim() == 2:
            params, values = self._fused_inference(policy_obs)
        else:
            params, values = self._actor_critic(policy_obs)
        if deterministic:
            action = self.action_head.mode(params)
            log_prob = self.action_head.log_prob(params, action)
        else:
            action, log_prob = self.action_head.sample_with_log_prob(params, self.generator)
        outputs = {ACTION: action, LOGPROB: log_prob, VALUES: values}
        if self.normalize_obs:
            outputs[POLICY_OBS] = policy_obs
        outputs.update({next_carried_key(name): value for name, value in next_state.items()})
        return outputs

    def env_action(self, outputs: Batch) -> torch.Tensor:
        return self.action_head.to_env(outputs[ACTION])

    def set_progress(self, global_step: int, total_steps: int | None) -> None:
        if self.anneal_clip and total_steps:
            self._clip_now = self.clip_coef * max(1.0 - global_step / total_steps, 0.0)

    # ------------------------------------------------------------------ preprocessing
    @torch.no_grad()
    def preprocess(self, batch: Batch) -> Metrics:
        values = batch[VALUES]
        terminated, truncated = batch[TERMINATED], batch[TRUNCATED]
        done = terminated | truncated

        # The critic sees next observations normalized like the policy's (statistics not updated); with
        # memory, from the state act carried past the step (the truncated episode's, not a reset one).
        def value_of(next_obs: torch.Tensor, index: tuple[torch.Tensor, ...]) -> torch.Tensor:
            policy_obs = self._policy_input(next_obs, update_stats=False)
            if self.core is None:
                return self.value(policy_obs)
            state = {name: batch[next_carried_key(name)][index] for name in self.carried_state()}
            return self.critic(self._recurrent_step(policy_obs, state)[1])

        next_values = next_state_values(values, done, batch[NEXT_OBS], value_of)
        valid = batch[VALID]

        def rewards_of(stream: RewardStream) -> torch.Tensor:
            rewards = batch[stream.key].float()
            if stream.name == EXTRINSIC and self.normalize_reward:
                self.reward_scaler.update(rewards, done, valid)
                rewards = self.reward_scaler.scale(rewards, clip=self.reward_clip)
            return rewards

        advantages, returns, metrics = stream_advantages(
            values, next_values, rewards_of, terminated, done, valid, self.streams, self.gae_lambda
        )
        batch[ADVANTAGES] = advantages
        batch[RETURNS] = returns
        return metrics

    # ------------------------------------------------------------------ loss
    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], Metrics]:
        policy_input = POLICY_OBS if self.normalize_obs else OBS
        if self.core is None:
            params, new_values = self._actor_critic(minibatch[policy_input])
        else:
            if SEQUENCE_VALID in minibatch:  # whole env sequences: replay the memory
                actor_in, critic_in = self._recurrent_sequence(minibatch, policy_input)
            else:  # shuffled rows: each from the state it was acted from (no backpropagation through time)
                state = {name: minibatch[carried_key(name)] for name in self.carried_state()}
                actor_in, critic_in, _ = self._recurrent_step(minibatch[policy_input], state)
            params, new_values = self.actor(actor_in), self.critic(critic_in)
        new_log_prob, entropy = self.action_head.log_prob_entropy(params, minibatch[ACTION])
        log_ratio = new_log_prob - minibatch[LOGPROB]
        ratio = log_ratio.exp()
        advantages = minibatch[ADVANTAGES]
        if self.norm_adv and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        clip = self._clip_now
        policy_loss = clipped_surrogate_loss(ratio, advantages, clip)
        value_losses = value_loss(new_values, minibatch[VALUES], minibatch[RETURNS], clip if self.clip_vloss else None)
        entropy_mean = entropy.mean()
        terms = {
            "policy": policy_loss,
            "value": self.vf_coef * value_losses.sum(),
            "entropy": -self.ent_coef * entropy_mean,
        }
        with torch.no_grad():
            metrics: Metrics = {
                "policy_loss": policy_loss.detach(),
                "entropy": entropy_mean.detach(),
                "approx_kl": ((ratio - 1) - log_ratio).mean(),
                "old_approx_kl": (-log_ratio).mean(),
                "clipfrac": ((ratio - 1.0).abs() > clip).float().mean(),
            }
            for index, stream in enumerate(self.streams):
                metrics[f"value_loss/{stream.name}"] = value_losses[index].detach()
        return terms, metrics

    def after_update(self) -> None:
        if self._fused_inference is not None:
            self._fused_inference.invalidate()

    def stop_epochs(self, metrics: dict[str, float]) -> bool:
        return self.target_kl is not None and metrics.get("approx_kl", 0.0) > self.target_kl


def _state_of(state: Batch, core: RecurrentCore, prefix: str) -> Batch:
    """The part of a carried state that belongs to ``core`` (its names behind ``prefix``)."""
    return {name: state[prefix + name] for name in core.state_shapes()}


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    return torch.maximum(unclipped, clipped).mean()


def value_loss(
    new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """Per-stream value loss ``[num_streams]``: 0.5 * squared error, optionally clipped (PPO2 style)."""
    unclipped = (new_values - returns).square()
    if clip is None:
        return 0.5 * unclipped.mean(dim=0)
    clipped_values = old_values + (new_values - old_values).clamp(-clip, clip)
    clipped = (clipped_values - returns).square()
    return 0.5 * torch.maximum(unclipped, clipped).mean(dim=0)
