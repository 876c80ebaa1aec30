"""A count-based exploration bonus: a complete agent of your own, composed with any learner.

Each observation is hashed to a few bits with SimHash (Tang et al. 2017, "#Exploration"): the signs
of a fixed random projection. The bonus for reaching a hash cell visited ``n`` times is
``beta / sqrt(n)``, in its own non-episodic reward stream, so the learner keeps a separate value
estimate for it. The visit counts are training state: ``state_attributes`` saves them in checkpoints.

    python examples/count_bonus.py                          # PPO + this bonus on CartPole, in Python
    rl-agents train --agents ppo+examples.count_bonus:CountBonus --steps 20000   # the same, on the command line
"""

from __future__ import annotations

import torch

from rl_agents import Agent, DataSpec, EnvContext, RewardStream


class CountBonus(Agent):
    """Count-based exploration bonus beta / sqrt(visits) of SimHash cells."""

    state_attributes = ("counts",)  # saved in checkpoints, restored on load, rolled back with a failed update

    def __init__(self, *, beta: float = 0.01, bits: int = 16, gamma: float = 0.99, **kwargs):
        super().__init__(**kwargs)  # name, lr, loss_weight (this agent has no parameters to train)
        self.beta = beta
        self.bits = bits
        self.gamma = gamma
        self.counts: dict[str, int] = {}  # hash cell -> visits (JSON: string keys)

    def reward_streams(self) -> tuple[RewardStream, ...]:
        return (RewardStream("count", gamma=self.gamma, episodic=False),)

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        size = int(torch.tensor(ctx.observation_space.shape).prod())  # one env's observation
        # A buffer: saved with the agent's tensors, and drawn from the seeded RNG the Trainer forks per agent.
        self.register_buffer("projection", torch.randn(size, self.bits))
        self.register_buffer("powers", 2 ** torch.arange(self.bits))

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({"next_obs", "valid"}), provides=frozenset({"reward/count"}))

    @torch.no_grad()
    def preprocess(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        next_obs, valid = batch["next_obs"], batch["valid"]  # [T, N, *obs_shape], [T, N] bool
        signs = next_obs.flatten(2).float() @ self.projection > 0  # [T, N, bits]
        cells = (signs.long() * self.powers).sum(-1)  # [T, N]: one integer per hash cell
        bonus = torch.zeros(valid.shape, device=valid.device)  # one number per step and env
        for index, cell in zip(valid.nonzero().tolist(), cells[valid].tolist()):
            key = str(cell)
            self.counts[key] = self.counts.get(key, 0) + 1
            bonus[tuple(index)] = self.beta / self.counts[key] ** 0.5
        batch["reward/count"] = bonus
        return {"bonus_mean": float(bonus[valid].mean()) if valid.any() else 0.0, "cells": float(len(self.counts))}


if __name__ == "__main__":
    from rl_agents import PPO, Trainer
    from rl_agents.envs import make_envs

    trainer = Trainer(make_envs("CartPole-v1", 4), [PPO(), CountBonus()], seed=1)
    trainer.train(20_000, progress=False)
    bonus = trainer.agents[1]
    print(f"mean return of the last 20 episodes: {trainer.recent_return():.1f}; {len(bonus.counts)} cells visited")
