"""Hindsight Experience Replay (Andrychowicz et al. 2017) as a part for any replay learner.

HER never acts and has no networks. It supplies a minibatch transform: after each replay draw, a fraction
``n_sampled_goal / (n_sampled_goal + 1)`` of the rows get a goal achieved in the same episode instead of
the one pursued (the "virtual" transitions of the paper; SB3's ``her_ratio``), their rewards recomputed
by the environment's ``compute_reward``. DQN and SAC read goals as part of their Dict observations, so
``dqn+her`` and ``sac+her`` need no change to either learner; PER and exploration bonuses compose.

Goal selection (for a transition at step t of an episode whose stored steps run from s to e):
- ``future``: the achieved goal after a step t' drawn uniformly from [t, e] (the paper's best; t' = t
  gives the goal this very step reached);
- ``final``: the goal achieved after the episode's last step e;
- ``episode``: after a step drawn uniformly from [s, e].

Episodes are read from the replay ring itself (its done flags), so nothing extra is stored, saved or
rolled back. An episode still running when its transition is drawn ends, for now, at the newest stored
step: its future goals are the ones achieved so far, all genuinely later in the same episode, never steps
of the next episode or stale rows of the ring (SB3 instead samples finished episodes only). An episode
whose first steps the ring has overwritten starts at its oldest stored step. An episode cut by a reset
without a done flag (a new ``train()`` call, restarted envs) ends at its last stored step: HER reads
``episode_start``, so the replay stores it. The stored ``terminated``
flag is kept, as SB3 does; n-step returns are refused (their rewards sum steps whose goals would change).
"""

from __future__ import annotations

import numpy as np
import torch

from rl_agents.core.agent import (
    BOOTSTRAP_OBS,
    EPISODE_START,
    EXTRINSIC,
    NEXT_OBS,
    OBS,
    REPLAY_INDEX,
    Agent,
    Batch,
    CompositionError,
    ContractError,
    DataSpec,
    EnvContext,
    check_option,
)
from rl_agents.core.transforms import ReplayTransform, ReplayView
from rl_agents.envs.goals import GOAL_KEYS, RewardFunction, is_goal_space

STRATEGIES = ("future", "final", "episode")
REWARD = f"reward/{EXTRINSIC}"
ACHIEVED, DESIRED = "achieved_goal", "desired_goal"


class HindsightRelabeling(ReplayTransform):
    """Relabels replay rows with achieved goals (see the module's docstring)."""

    reads = frozenset({OBS, NEXT_OBS, REPLAY_INDEX, REWARD})
    rewrites = frozenset({f"{OBS}.{DESIRED}", f"{NEXT_OBS}.{DESIRED}", f"{BOOTSTRAP_OBS}.{DESIRED}", REWARD})

    def __init__(self, strategy: str, relabel_fraction: float, compute_reward: RewardFunction, agent: str):
        self.strategy = strategy
        self.relabel_fraction = relabel_fraction
        self.compute_reward = compute_reward
        self.agent = agent

    def apply(self, minibatch: Batch, replay: ReplayView, generator: torch.Generator) -> dict[str, torch.Tensor]:
        slots = minibatch[REPLAY_INDEX].to("cpu")
        draw = torch.rand(len(slots), generator=generator, device=generator.device).cpu()
        rows = (draw < self.relabel_fraction).nonzero().squeeze(1)
        if rows.numel() == 0:
            return {"relabeled": torch.zeros(())}
        offsets = self._goal_offsets(replay, slots[rows], generator)
        goals = replay.stored_at(f"{NEXT_OBS}.{ACHIEVED}", slots[rows], offsets)
        achieved = minibatch[NEXT_OBS][ACHIEVED][rows.to(minibatch[NEXT_OBS][ACHIEVED].device)]
        rewards = self._rewards(achieved.cpu().numpy(), goals.numpy())
        for key in (OBS, NEXT_OBS, BOOTSTRAP_OBS):
            observation = minibatch[key]
            observation[DESIRED] = _replaced_rows(
                observation[DESIRED], rows, goals
            )  # new tensors: leaves may be shared
        minibatch[REWARD] = _replaced_rows(minibatch[REWARD], rows, rewards)
        return {"relabeled": torch.tensor(rows.numel() / len(slots))}

    def _goal_offsets(self, replay: ReplayView, slots: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Steps from each row to the step whose achieved goal it gets (negative: earlier in the episode)."""
        behind, ahead = replay.episode_extent(slots)
        if self.strategy == "final":
            return ahead
        uniform = torch.rand(len(slots), generator=generator, device=generator.device, dtype=torch.float64).cpu()
        if self.strategy == "future":
            return (uniform * (ahead + 1)).long().clamp(max=ahead)
        return (uniform * (behind + ahead + 1)).long().clamp(max=behind + ahead) - behind

    def _rewards(self, achieved: np.ndarray, goals: np.ndarray) -> torch.Tensor:
        """The env's rewards for the relabeled goals, checked (one number per row)."""
        rewards = np.asarray(self.compute_reward(achieved, goals, [{} for _ in range(len(goals))]), dtype=np.float64)
        if rewards.shape != (len(goals),) or not np.all(np.isfinite(rewards)):
            raise ContractError(
                f"agent {self.agent!r}: the environment's compute_reward returned {rewards.shape} values"
                f"{'' if np.all(np.isfinite(rewards)) else ' with NaN or inf'} for {len(goals)} goal pairs; "
                "expected one finite reward per pair"
            )
        return torch.as_tensor(rewards, dtype=torch.float32)


def _replaced_rows(values: torch.Tensor, rows: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    replaced = values.clone()
    replaced[rows.to(values.device)] = new.to(values.device, values.dtype)
    return replaced


class HER(Agent):
    """Hindsight Experience Replay: relabels replayed goals, for DQN, SAC or any replay learner on a
    goal-conditioned environment (a Dict observation with ``observation``, ``achieved_goal`` and
    ``desired_goal``, and ``compute_reward``; Gymnasium-Robotics' convention).

    Args:
        n_sampled_goal: relabeled transitions per original one: a fraction ``k / (k + 1)`` of each
            minibatch is relabeled (paper and SB3: 4, i.e. 0.8).
        goal_selection_strategy: ``"future"`` (default, as the paper's best), ``"final"`` or ``"episode"``.
    """

    default_name = "her"
    transient_attributes = frozenset({"compute_reward"})  # the environment's, given again by bind

    def __init__(self, *, n_sampled_goal: int = 4, goal_selection_strategy: str = "future", name: str | None = None):
        super().__init__(name=name)
        check_option(self.name, "n_sampled_goal", n_sampled_goal, 0)
        if goal_selection_strategy not in STRATEGIES:
            raise ValueError(
                f"agent {self.name!r}: goal_selection_strategy must be one of {', '.join(map(repr, STRATEGIES))}, "
                f"got {goal_selection_strategy!r}"
            )
        self.n_sampled_goal = n_sampled_goal
        self.goal_selection_strategy = goal_selection_strategy
        self.compute_reward: RewardFunction | None = None

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        space = ctx.observation_space
        if not is_goal_space(space) or not all(key in space.spaces for key in GOAL_KEYS):
            raise CompositionError(
                f"agent {self.name!r} relabels goals, but the observation space {space} is not goal-conditioned: "
                f"it needs a Dict with {', '.join(map(repr, GOAL_KEYS))} (achieved and desired goals of one shape)"
            )
        if ctx.compute_reward is None:
            raise CompositionError(
                f"agent {self.name!r} relabels goals, but the environment has no compute_reward(achieved_goal, "
                "desired_goal, info) on env.unwrapped to give the relabeled transitions their rewards"
            )
        self.compute_reward = ctx.compute_reward

    def data_spec(self) -> DataSpec:
        # episode_start: stored in the replay, it bounds episodes that a reset cut without a done flag
        return DataSpec(needs=frozenset({OBS, NEXT_OBS, REWARD, EPISODE_START}))

    def replay_transform(self) -> HindsightRelabeling:
        if self.compute_reward is None:
            raise RuntimeError(f"agent {self.name!r} must be bound to an environment before its transform is used")
        fraction = self.n_sampled_goal / (self.n_sampled_goal + 1)
        return HindsightRelabeling(self.goal_selection_strategy, fraction, self.compute_reward, self.name)

    def loss_terms(self) -> dict[str, str]:
        return {}
