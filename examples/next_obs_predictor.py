"""An auxiliary-loss agent: a next-observation predictor trained beside any learner.

It provides no data and chooses no actions: it only adds a loss term, which the Trainer sums with the
learner's into the one optimizer step. It declares no learning rate, so it trains with the acting
agent's (the documented default). Its prediction error is logged as ``predictor/prediction_error``.

    python examples/next_obs_predictor.py
    rl-agents train --agents dqn+examples.next_obs_predictor:NextObsPredictor --steps 20000
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rl_agents import Agent, DataSpec, EnvContext


class NextObsPredictor(Agent):
    """Auxiliary loss: predict the next observation from the observation and the action."""

    default_name = "predictor"

    def __init__(self, *, hidden: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.hidden = hidden

    def bind(self, ctx: EnvContext) -> None:
        super().bind(ctx)
        obs_size = int(torch.tensor(ctx.observation_space.shape).prod())
        space = ctx.action_space
        self.num_actions = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        action_size = self.num_actions or int(torch.tensor(space.shape).prod())
        self.model = nn.Sequential(
            nn.Linear(obs_size + action_size, self.hidden), nn.Tanh(), nn.Linear(self.hidden, obs_size)
        )

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({"obs", "action", "next_obs", "valid"}))

    def loss_terms(self) -> dict[str, str]:
        return {"prediction": "MSE of the predicted next observation on valid rows"}

    def loss(self, minibatch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        obs, next_obs = minibatch["obs"].flatten(1).float(), minibatch["next_obs"].flatten(1).float()
        action = minibatch["action"]
        if self.num_actions is not None:  # discrete actions arrive as integer indices: one-hot them
            action = nn.functional.one_hot(action.long().flatten(), self.num_actions)
        error = (self.model(torch.cat([obs, action.flatten(1).float()], 1)) - next_obs).square().mean(1)
        valid = minibatch["valid"].float()  # rows of a reset step after an autoreset are not transitions
        loss = (error * valid).sum() / valid.sum().clamp(min=1)
        return {"prediction": loss}, {"prediction_error": loss.detach()}


if __name__ == "__main__":
    from rl_agents import PPO, Trainer
    from rl_agents.envs import make_envs

    trainer = Trainer(make_envs("CartPole-v1", 4), [PPO(), NextObsPredictor()], seed=1)
    trainer.train(20_000, progress=False)
    print(f"mean return of the last 20 episodes: {trainer.recent_return():.1f}")
    print(f"next-observation prediction error: {trainer.metrics['predictor/prediction_error']:.4f}")
