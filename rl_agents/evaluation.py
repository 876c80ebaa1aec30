"""Evaluate an acting agent for whole episodes, without training it or moving its statistics."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.core.agent import Agent
from rl_agents.core.memory import CarriedState, episode_starts_after_step
from rl_agents.core.tree import map_space, map_tree
from rl_agents.envs.spaces import observation_tensor_dtype


@dataclass(frozen=True)
class EvaluationResult:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def evaluate_agent(
    agent: Agent,
    envs: gym.vector.VectorEnv,
    episodes: int,
    *,
    deterministic: bool = True,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    frames: list[np.ndarray] | None = None,
    max_steps: int | None = None,
) -> EvaluationResult:
    """Run ``envs`` until ``episodes`` episodes have finished, with greedy / mean actions unless
    ``deterministic`` is False (then sampled, e.g. DQN's epsilon-greedy); the agent is put in eval mode meanwhile
    (normalizers stop updating) and restored afterwards. Rendered frames of env 0 are appended to
    ``frames`` when it is given (the envs must use ``render_mode="rgb_array"``), one per step.
    ``max_steps`` caps the vector steps (a video's length): if it cuts the run short, the episodes
    still running count with what they have so far, after the finished ones. An agent with memory
    starts every episode from its initial carried state."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    was_training = agent.training
    agent.eval()
    returns: list[float] = []
    lengths: list[int] = []
    running_return = np.zeros(envs.num_envs)
    running_length = np.zeros(envs.num_envs, dtype=np.int64)
    reset_pending = np.zeros(envs.num_envs, dtype=bool)
    obs_dtype = map_space(observation_tensor_dtype, envs.single_observation_space)  # (a tree for Dict / Tuple)
    memory = CarriedState(agent, envs.num_envs, device)
    autoreset_mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    steps = 0
    try:
        obs, _ = envs.reset(seed=seed)
        while len(returns) < episodes and (max_steps is None or steps < max_steps):
            if frames is not None:
                rendered = envs.render()
                frames.append(np.asarray(rendered[0] if isinstance(rendered, (list, tuple)) else rendered))
            with torch.inference_mode():
                observations = map_tree(
                    lambda leaf, dtype: torch.as_tensor(np.asarray(leaf), device=device).to(dtype), obs, obs_dtype
                )
                outputs = memory.act(observations, deterministic=deterministic)
                action = agent.env_action(outputs).cpu().numpy()
            obs, reward, terminated, truncated, _ = envs.step(action)
            steps += 1
            valid = ~reset_pending
            running_return += np.where(valid, reward, 0.0)
            running_length += valid
            done = (terminated | truncated) & valid
            for index in np.flatnonzero(done):
                returns.append(float(running_return[index]))
                lengths.append(int(running_length[index]))
            running_return[done] = 0.0
            running_length[done] = 0
            memory.reset(episode_starts_after_step(autoreset_mode, terminated | truncated, ~valid))
            reset_pending = (
                terminated | truncated if autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(reset_pending)
            )
    finally:
        agent.train(was_training)
    if len(returns) < episodes:  # cut by max_steps: the episodes in progress (one just reset has no steps yet)
        partial = np.flatnonzero(running_length > 0)
        returns += [float(running_return[index]) for index in partial]
        lengths += [int(running_length[index]) for index in partial]
    return EvaluationResult(returns[:episodes], lengths[:episodes])
