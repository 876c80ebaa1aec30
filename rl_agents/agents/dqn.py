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
"""

from __future__ import annotations

import copy

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
    TERMINATED,
    Agent,
    Batch,
    CompositionError,
    DataSpec,
    EnvContext,
    RewardStream,
    check_option,
)
from rl_agents.core.nets import NatureCNN, flat_dim, is_image_space
from rl_agents.core.returns import replay_td_targets
from rl_agents.core.schedules import ReplaySchedule


class QNetwork(nn.Module):
    """Maps observations to ``[batch, actions, streams]`` action values."""

    def __init__(self, observation_space: gym.spaces.Box, num_actions: int, num_streams: int, hidden: tuple[int, ...]):
        super().__init__()
        self.num_actions, self.num_streams = num_actions, num_streams
        if is_image_space(observation_space):
            trunk = NatureCNN(observation_space)
            self.body: nn.Module = nn.Sequential(trunk, nn.Linear(trunk.out_dim, num_actions * num_streams))
        else:
            layers: list[nn.Module] = [nn.Flatten()]
            last = flat_dim(observation_space)
            for width in hidden:
                layers += [nn.Linear(last, width), nn.ReLU()]
                last = width
            layers.append(nn.Linear(last, num_actions * num_streams))
            self.body = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(obs.float()).view(-1, self.num_actions, self.num_streams)


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
        hidden: MLP widths for vector observations.
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
        name: str | None = None,
        loss_weight: float = 1.0,
    ):
        super().__init__(name=name, lr=lr, loss_weight=loss_weight)
        check_option(self.name, "gamma", gamma, 0.0, 1.0)
        check_option(self.name, "exploration_fraction", exploration_fraction, 0.0, 1.0)
        check_option(self.name, "exploration_steps", exploration_steps, 0)
        if not 0.0 <= final_epsilon <= 1.0 or not 0.0 <= initial_epsilon <= 1.0:
            raise ValueError(f"epsilons must be in [0, 1], got {initial_epsilon} and {final_epsilon}")
        self.gamma = gamma
        self.ext_coef = ext_coef
        self.double = double
        self.huber = huber
        self.initial_epsilon = initial_epsilon
        self.final_epsilon = final_epsilon
        self.exploration_fraction = exploration_fraction
        self.exploration_steps = exploration_steps
        self.hidden = tuple(hidden)
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
        if not isinstance(ctx.observation_space, gym.spaces.Box):
            raise CompositionError(f"agent {self.name!r} needs a Box observation space, got {ctx.observation_space}")
        self.num_actions = int(ctx.action_space.n)
        self.action_start = int(ctx.action_space.start)
        self.streams = ctx.streams
        self.q_network = QNetwork(ctx.observation_space, self.num_actions, len(self.streams), self.hidden)
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

    def data_spec(self) -> DataSpec:
        needs = {OBS, ACTION, BOOTSTRAP_OBS, TERMINATED, N_STEPS} | {stream.key for stream in self.streams}
        return DataSpec(needs=frozenset(needs), act_outputs=frozenset({ACTION}))

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
        return [{"params": list(self.q_network.parameters()), "lr": self.lr, "eps": 1e-8}]  # SB3's Adam eps

    def loss_terms(self) -> dict[str, str]:
        kind = "Huber" if self.huber else "squared"
        target = "double-DQN" if self.double else "max-Q"
        return {"td": f"{kind} TD error against the {target} target, summed over {len(self.streams)} stream head(s)"}

    # ------------------------------------------------------------------ acting
    def set_progress(self, global_step: int, total_steps: int | None) -> None:
        decay = self.exploration_steps
        if decay is None and total_steps:
            decay = self.exploration_fraction * total_steps
        fraction = min(global_step / decay, 1.0) if decay else 1.0
        self.epsilon = self.initial_epsilon + fraction * (self.final_epsilon - self.initial_epsilon)

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        """``[batch, actions]``: the coef-weighted sum of the stream heads."""
        return self.q_network(obs) @ self.stream_coefs

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        greedy = self.action_values(obs).argmax(dim=1)
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
    def td_target(self, minibatch: Batch) -> torch.Tensor:
        """``[batch, streams]``: r + gamma^n * (1 - terminal) * Q_target(s', a*) per stream."""
        with torch.no_grad():
            next_obs = minibatch[BOOTSTRAP_OBS]
            next_target = self.target_network(next_obs)
            chooser = self.q_network(next_obs) if self.double else next_target
            best = (chooser @ self.stream_coefs).argmax(dim=1)
            next_value = next_target[torch.arange(best.shape[0], device=best.device), best]
            return replay_td_targets(minibatch, self.streams, next_value, self.stream_gammas, self.stream_episodic)

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        target = self.td_target(minibatch)
        q_values = self.q_network(minibatch[OBS])
        taken = q_values[torch.arange(q_values.shape[0], device=q_values.device), minibatch[ACTION].long()]
        per_stream = F.smooth_l1_loss(taken, target, reduction="none") if self.huber else (taken - target).square()
        td_loss = per_stream.mean(dim=0).sum()
        return {"td": td_loss}, {"q_mean": taken.detach().mean(), "epsilon": self.epsilon}
