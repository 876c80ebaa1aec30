"""Evaluate an acting agent for whole episodes, without training it or moving its statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from rl_agents.core.agent import Agent


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
    deterministic: bool = False,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
    frames: list[np.ndarray] | None = None,
) -> EvaluationResult:
    """Run ``envs`` until ``episodes`` episodes have finished; the agent is put in eval mode meanwhile
    (normalizers stop updating) and restored afterwards. Rendered frames of env 0 are appended to
    ``frames`` when it is given (the envs must use ``render_mode="rgb_array"``)."""
    was_training = agent.training
    agent.eval()
    returns: list[float] = []
    lengths: list[int] = []
    running_return = np.zeros(envs.num_envs)
    running_length = np.zeros(envs.num_envs, dtype=np.int64)
    reset_pending = np.zeros(envs.num_envs, dtype=bool)
    obs_dtype = torch.uint8 if envs.single_observation_space.dtype == np.uint8 else torch.float32
    try:
        obs, _ = envs.reset(seed=seed)
        while len(returns) < episodes:
            if frames is not None:
                rendered = envs.render()
                frames.append(np.asarray(rendered[0] if isinstance(rendered, (list, tuple)) else rendered))
            with torch.inference_mode():
                outputs = agent.act(
                    torch.as_tensor(np.asarray(obs), device=device).to(obs_dtype), deterministic=deterministic
                )
                action = agent.env_action(outputs).cpu().numpy()
            obs, reward, terminated, truncated, _ = envs.step(action)
            valid = ~reset_pending
            running_return += np.where(valid, reward, 0.0)
            running_length += valid
            done = (terminated | truncated) & valid
            for index in np.flatnonzero(done):
                returns.append(float(running_return[index]))
                lengths.append(int(running_length[index]))
            running_return[done] = 0.0
            running_length[done] = 0
            reset_pending = terminated | truncated
    finally:
        agent.train(was_training)
    return EvaluationResult(returns[:episodes], lengths[:episodes])


def save_video(frames: list[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write frames as a GIF (Pillow) or MP4 (needs imageio's ffmpeg plugin)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps)
    return path
