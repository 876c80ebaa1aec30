"""Deep Q-Networks (Mnih et al. 2015) with double Q-learning (van Hasselt et al. 2016), trained
off-policy from the Trainer's replay buffer.

Defaults are Stable-Baselines3's ``DQN``: lr 1e-4, batch 32, train every 4 steps, Huber loss,
gradients clipped to norm 10, epsilon decaying linearly from 1 to 0.05 over the first 10% of
training, a hard target update every 10,000 env steps (2,500 gradient steps at one per 4 steps),
MLP (64, 64) for vectors and the Nature CNN for frames, Adam with eps 1e-8. Unlike SB3's default, the target is the
double-DQN one (``double=False`` gives the max over the target network).

Reward streams: DQN keeps one Q head per stream in the composition. The action's value is the
``coef``-weighted sum of the heads; each head is trained on its own stream's reward with the stream's
discount, and non-episodic streams (exploration bonuses) bootstrap through terminal states. With a
single extrinsic stream this is plain DQN.

Rainbow's pieces (Hessel et al. 2018) are options that compose with each other and with the streams:
``dueling`` (Wang et al. 2016: value and advantage heads on the last hidden layer, ``Q = V + A - mean A``),
``atoms`` > 1 (C51, Bellemare et al. 2017: a categorical return distribution over ``atoms`` points from
``v_min`` to ``v_max``, one distribution per stream, trained by cross-entropy against the projected
target), ``noisy`` (Fortunato et al. 2018: factorized noisy linear layers, resampled at every forward
pass and switched off by ``deterministic=True``), with ``double`` and the schedule's ``n_step``. Prioritized
replay is a separate part (``per``); ``--agents rainbow`` names the whole combination.

Sampler feedback: the loss weights each row by ``sample_weight`` (ones unless a sampler such as ``per``
draws the rows) and outputs ``priority``: the row's |TD error| summed over the streams, or with ``atoms``
> 1 its cross-entropy loss summed over the streams (as Rainbow prioritizes by the distributional loss).

Networks: vector observations get an MLP of ``hidden`` widths; frames of 36 pixels or more the Nature CNN;
small frames (MinAtar's 10x10, MiniGrid's 7x7) the MinAtar network (Young & Tian 2019: one 3x3
convolution of 16 channels and a 128-unit layer). With ``noisy`` every linear layer the Q network builds
is noisy (all of them for vectors and small frames; for Nature frames the heads after the CNN's 512 units).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import partial

import gymnasium as gym
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
from rl_agents.core.encoders import ObservationEncoder
from rl_agents.core.nets import ImageInput, NatureCNN, flat_dim, image_layout, is_image_space, is_small_grid_view
from rl_agents.core.noisy import NoisyLinear
from rl_agents.core.returns import categorical_projection, replay_td_targets
from rl_agents.core.schedules import ReplaySchedule

MINATAR_HIDDEN = 128  # the MinAtar network's fully connected layer (Young & Tian 2019)


def small_frame_features(observation_space: gym.spaces.Box) -> tuple[list[nn.Module], int]:
    """The MinAtar network's convolution (16 channels, 3x3, stride 1) and flatten; returns (layers, width)."""
    channels, height, width, channels_last = image_layout(observation_space.shape)
    layers = [ImageInput(channels_last), nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.Flatten()]
    return layers, 16 * (height - 2) * (width - 2)


class QNetwork(nn.Module):
    """Maps observations to ``[batch, actions, streams]`` action values, or with ``atoms`` > 1 to
    ``[batch, actions, streams, atoms]`` logits of the return distributions.

    ``dueling``: separate value and advantage heads, combined as ``V + A - mean_a A`` (per atom for
    distributions). ``noisy_std``: the noisy layers' ``sigma_0``; None: plain linear layers. A forward pass
    given a generator draws fresh noise in every noisy layer; without one they act as their means."""

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        num_actions: int,
        num_streams: int,
        hidden: tuple[int, ...],
        *,
        atoms: int = 1,
        dueling: bool = False,
        noisy_std: float | None = None,
        encoders: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__()
        self.num_actions, self.num_streams, self.atoms = num_actions, num_streams, atoms
        self.dueling = dueling
        linear = nn.Linear if noisy_std is None else partial(NoisyLinear, std_init=noisy_std)
        outputs = num_actions * num_streams * atoms
        layers: list[nn.Module]
        if encoders or not isinstance(observation_space, gym.spaces.Box):  # Dict, Tuple, Discrete, ...
            encoder = ObservationEncoder(observation_space, encoders)
            layers, last = [encoder], encoder.out_dim
            for width in hidden:
                layers += [linear(last, width), nn.ReLU()]
                last = width
        elif is_image_space(observation_space) and not is_small_grid_view(observation_space):
            trunk = NatureCNN(observation_space)
            layers, last = [trunk], trunk.out_dim
        else:
            if is_image_space(observation_space):
                layers, last = small_frame_features(observation_space)
                widths: tuple[int, ...] = (MINATAR_HIDDEN,)
            else:
                layers, last, widths = [nn.Flatten()], flat_dim(observation_space), hidden
            for width in widths:
                layers += [linear(last, width), nn.ReLU()]
                last = width
        if dueling:
            self.value_head: nn.Module = linear(last, num_streams * atoms)
            self.advantage_head: nn.Module = linear(last, outputs)
        else:
            layers.append(linear(last, outputs))
        self.body = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = obs if isinstance(obs, (dict, tuple)) else obs.float()  # (the encoder takes a tree as stored)
        for module in self.body:
            x = module(x, generator) if isinstance(module, NoisyLinear) else module(x)
        shape = (-1, self.num_actions, self.num_streams) + ((self.atoms,) if self.atoms > 1 else ())
        if not self.dueling:
            return x.view(shape)
        advantage = self._head(self.advantage_head, x, generator).view(shape)
        value = self._head(self.value_head, x, generator).view(-1, 1, *shape[2:])
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    @staticmethod
    def _head(head: nn.Module, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return head(x, generator) if isinstance(head, NoisyLinear) else head(x)


class DQN(Agent):
    """Double DQN with epsilon-greedy exploration, a target network and the Huber loss.

    Args:
        lr: Adam learning rate.
        gamma: discount of the extrinsic stream.
        double: double-DQN target (online argmax, target evaluation); False: max of the target net.
        huber: Huber (smooth L1) loss; False: squared error (CleanRL's ``dqn.py``).
        initial_epsilon, final_epsilon: epsilon-greedy range.
        exploration_fraction: fraction of the run's ``total_steps`` over which epsilon decays linearly.
        exploration_steps: decay over this many env steps instead (also needed without total_steps).
        hidden: MLP widths for vector observations (and on the features of a Dict or Tuple observation).
        encoders: your own modules for leaves of a Dict or Tuple observation, by path (``{"image": net}``,
            each with an ``out_dim``); other leaves get :class:`~rl_agents.core.encoders.ObservationEncoder`'s.
        dueling: value and advantage heads (dueling architecture).
        atoms: points of the categorical return distribution (C51: 51); 1: expected values (plain DQN).
        v_min, v_max: the distribution's support (with ``atoms`` > 1), shared by every stream.
        noisy: noisy linear layers (factorized Gaussian) for exploration; set the epsilons to 0 with them
            for Rainbow's setting.
        noisy_std: the noisy layers' initial ``sigma_0``.
        adam_eps: Adam's epsilon (SB3's 1e-8; Dopamine's MinAtar agents use 3.125e-4).
    """

    acts = True
    default_name = "dqn"
    # The exploration rate: set_progress recomputes it from the step count before every act.
    transient_attributes = frozenset({"epsilon"})

    def __init__(
        self,
        *,
        lr: float = 1e-4,
        gamma: float = 0.99,
        ext_coef: float = 1.0,
        double: bool = True,
        huber: bool = True,
        initial_epsilon: float = 1.0,
        final_epsilon: float = 0.05,
        exploration_fraction: float = 0.1,
        exploration_steps: int | None = None,
        hidden: tuple[int, ...] = (64, 64),
        encoders: Mapping[str, nn.Module] | None = None,
        dueling: bool = False,
        atoms: int = 1,
        v_min: float = -10.0,
        v_max: float = 10.0,
        noisy: bool = False,
        noisy_std: float = 0.5,
        adam_eps: float = 1e-8,
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "gamma", gamma, 0.0, 1.0)
        check_option(self.name, "exploration_fraction", exploration_fraction, 0.0, 1.0)
        check_option(self.name, "exploration_steps", exploration_steps, 0)
        check_option(self.name, "atoms", atoms, 1)
        check_option(self.name, "noisy_std", noisy_std, 0.0)
        if not 0.0 <= final_epsilon <= 1.0 or not 0.0 <= initial_epsilon <= 1.0:
            raise ValueError(f"epsilons must be in [0, 1], got {initial_epsilon} and {final_epsilon}")
        if atoms > 1 and not v_min < v_max:
            raise ValueError(f"agent {self.name!r}: v_min must be below v_max, got {v_min} and {v_max}")
        self.gamma = gamma
        self.ext_coef = ext_coef
        self.double = double
        self.huber = huber
        self.initial_epsilon = initial_epsilon
        self.final_epsilon = final_epsilon
        self.exploration_fraction = exploration_fraction
        self.exploration_steps = exploration_steps
        self.hidden = tuple(hidden)
        self.encoders = encoders
        self.dueling, self.atoms, self.v_min, self.v_max = dueling, int(atoms), v_min, v_max
        self.noisy, self.noisy_std = noisy, noisy_std
        check_option(self.name, "adam_eps", adam_eps, 0.0)
        self.adam_eps = adam_eps
        self.epsilon = initial_epsilon
        self.streams: tuple[RewardStream, ...] = ()

    # ------------------------------------------------------------------ composition
    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream(EXTRINSIC, gamma=self.gamma, episodic=True, coef=self.ext_coef),)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        if not isinstance(ctx.action_space, gym.spaces.Discrete):
            raise CompositionError(
                f"agent {self.name!r} needs a Discrete action space, got {ctx.action_space} "
                "(for continuous actions use SAC)"
            )
        self.num_actions = int(ctx.action_space.n)
        self.action_start = int(ctx.action_space.start)
        self.streams = ctx.streams
        self.q_network = QNetwork(
            ctx.observation_space,
            self.num_actions,
            len(self.streams),
            self.hidden,
            atoms=self.atoms,
            dueling=self.dueling,
            noisy_std=self.noisy_std if self.noisy else None,
            encoders=self.encoders,
        )
        self.target_network = copy.deepcopy(self.q_network).requires_grad_(False)
        self.register_buffer(
            "stream_coefs", torch.tensor([s.coef for s in self.streams], dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "stream_gammas", torch.tensor([s.gamma for s in self.streams], dtype=torch.float32), persistent=False
        )
        self.register_buffer(
            "stream_episodic", torch.tensor([float(s.episodic) for s in self.streams]), persistent=False
        )
        self.register_buffer("support", torch.linspace(self.v_min, self.v_max, self.atoms), persistent=False)

    def data_spec(self) -> DataSpec:
        needs = {OBS, ACTION, BOOTSTRAP_OBS, TERMINATED, N_STEPS, SAMPLE_WEIGHT} | {s.key for s in self.streams}
        return DataSpec(needs=frozenset(needs), act_outputs=frozenset({ACTION}), loss_outputs=frozenset({PRIORITY}))

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        """One env: the suggested schedule's update-to-data ratio is the published one per env step."""
        return 1

    def suggested_schedule(self) -> ReplaySchedule:
        return ReplaySchedule(
            buffer_size=1_000_000,
            batch_size=32,
            learning_starts=100,
            train_frequency=4,
            gradient_steps=1,
            target_update_interval=2500,
            tau=1.0,
            n_step=1,
            max_grad_norm=10.0,
        )

    def target_networks(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.q_network, self.target_network)]

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.q_network.parameters()), "lr": self.lr, "eps": self.adam_eps}]

    def loss_terms(self) -> dict[str, str]:
        target = "double-DQN" if self.double else "max-Q"
        heads = f"summed over {len(self.streams)} stream head(s), rows weighted by sample_weight"
        if self.atoms > 1:
            return {"td": f"cross-entropy to the projected {self.atoms}-atom {target} target distribution, {heads}"}
        kind = "Huber" if self.huber else "squared"
        return {"td": f"{kind} TD error against the {target} target, {heads}"}

    # ------------------------------------------------------------------ acting
    def set_progress(self, global_step: int, total_steps: int | None) -> None:
        decay = self.exploration_steps
        if decay is None and total_steps:
            decay = self.exploration_fraction * total_steps
        fraction = min(global_step / decay, 1.0) if decay else 1.0
        self.epsilon = self.initial_epsilon + fraction * (self.final_epsilon - self.initial_epsilon)

    def stream_values(self, output: torch.Tensor) -> torch.Tensor:
        """``[batch, actions, streams]`` expected values of a Q network's output (logits when distributional)."""
        return output if self.atoms == 1 else output.softmax(dim=-1) @ self.support

    def action_values(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[batch, actions]``: the coef-weighted sum of the stream heads (noisy layers sampled with
        ``generator``; their means without one)."""
        output = self.q_network(obs) if generator is None else self.q_network(obs, generator)
        return self.stream_values(output) @ self.stream_coefs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        noise = self.generator if self.noisy and not deterministic else None
        greedy = self.action_values(obs, noise).argmax(dim=1)
        if deterministic or self.epsilon == 0.0:
            return {ACTION: greedy}
        device = self.generator.device
        explore = torch.rand(greedy.shape[0], generator=self.generator, device=device) < self.epsilon
        random = torch.randint(self.num_actions, greedy.shape, generator=self.generator, device=device)
        return {ACTION: torch.where(explore.to(greedy.device), random.to(greedy.device), greedy)}

    def random_act(self, num_envs: int) -> Batch:
        device = self.generator.device
        return {ACTION: torch.randint(self.num_actions, (num_envs,), generator=self.generator, device=device)}

    def env_action(self, outputs: Batch) -> torch.Tensor:
        return outputs[ACTION] + self.action_start if self.action_start else outputs[ACTION]

    # ------------------------------------------------------------------ loss
    @property
    def _noise(self) -> torch.Generator | None:
        """The generator noisy layers draw from in training (None: no noisy layers)."""
        return self.generator if self.noisy else None

    def _evaluate(self, network: nn.Module, obs: torch.Tensor) -> torch.Tensor:
        """``network(obs)``, with fresh noise in its noisy layers when the agent has them."""
        return network(obs) if self._noise is None else network(obs, self._noise)

    def _best_next_actions(self, next_obs: torch.Tensor, next_target: torch.Tensor) -> torch.Tensor:
        """The bootstrap actions: the online network's argmax (double) or the target's."""
        chooser = self._evaluate(self.q_network, next_obs) if self.double else next_target
        return (self.stream_values(chooser) @ self.stream_coefs).argmax(dim=1)

    def td_target(self, minibatch: Batch) -> torch.Tensor:
        """``[batch, streams]``: r + gamma^n * (1 - terminal) * Q_target(s', a*) per stream."""
        with torch.no_grad():
            next_obs = minibatch[BOOTSTRAP_OBS]
            next_target = self._evaluate(self.target_network, next_obs)
            best = self._best_next_actions(next_obs, next_target)
            next_value = next_target[torch.arange(best.shape[0], device=best.device), best]
            return replay_td_targets(minibatch, self.streams, next_value, self.stream_gammas, self.stream_episodic)

    def target_distribution(self, minibatch: Batch) -> torch.Tensor:
        """``[batch, streams, atoms]``: the target network's distribution at (s', a*) shifted by each stream's
        n-step reward and discount (0 past a terminal state of an episodic stream), projected on the support."""
        with torch.no_grad():
            next_obs = minibatch[BOOTSTRAP_OBS]
            next_logits = self._evaluate(self.target_network, next_obs)
            best = self._best_next_actions(next_obs, next_logits)
            next_probs = next_logits[torch.arange(best.shape[0], device=best.device), best].softmax(dim=-1)
            rewards = torch.stack([minibatch[stream.key].float() for stream in self.streams], dim=1)
            discounts = self.stream_gammas ** minibatch[N_STEPS].unsqueeze(1)
            discounts = discounts * (1.0 - minibatch[TERMINATED].float().unsqueeze(1) * self.stream_episodic)
            return categorical_projection(next_probs, rewards, discounts, self.support)

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        weights = minibatch[SAMPLE_WEIGHT].unsqueeze(1)  # [batch, 1]: ones unless a sampler weights the rows
        outputs = self._evaluate(self.q_network, minibatch[OBS])
        taken = outputs[torch.arange(outputs.shape[0], device=outputs.device), minibatch[ACTION].long()]
        if self.atoms > 1:
            per_stream = -(self.target_distribution(minibatch) * taken.log_softmax(dim=-1)).sum(dim=-1)
            minibatch[PRIORITY] = per_stream.detach().sum(dim=1)
            q_mean = (taken.detach().softmax(dim=-1) @ self.support).mean()
        else:
            target = self.td_target(minibatch)
            per_stream = F.smooth_l1_loss(taken, target, reduction="none") if self.huber else (taken - target).square()
            minibatch[PRIORITY] = (taken.detach() - target).abs().sum(dim=1)
            q_mean = taken.detach().mean()
        td_loss = (weights * per_stream).mean(dim=0).sum()
        return {"td": td_loss}, {"q_mean": q_mean, "epsilon": self.epsilon}
