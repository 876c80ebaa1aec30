"""Videos of a policy: frames written as GIF or MP4, and :class:`PeriodicVideo`, which records one
deterministic episode every N training steps without changing the training.

MP4 needs ``imageio-ffmpeg`` (``pip install 'rl-agents[video]'``); GIF needs only Pillow.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_agents.checkpointing import step_dir_name
from rl_agents.evaluation import evaluate_agent

DEFAULT_FPS = 30
VIDEO_EXTRA = "pip install 'rl-agents[video]'"


class VideoUnavailable(RuntimeError):
    """Videos cannot be recorded here: imageio-ffmpeg is missing, or the env cannot render frames."""


def save_video(frames: list[np.ndarray], path: str | Path, fps: int = DEFAULT_FPS) -> Path:
    """Write frames as a GIF (Pillow) or MP4 (needs imageio's ffmpeg plugin)."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
    else:
        # H.264 in yuv420p needs even sizes, nothing more: imageio's default (multiples of 16)
        # would rescale most renders (CartPole's 600 wide), blurring them, with a warning.
        imageio.mimsave(path, frames, fps=fps, macro_block_size=2)
    return path


def mp4_problem() -> str | None:
    """Why MP4 files cannot be written here, or None."""
    if importlib.util.find_spec("imageio") is None or importlib.util.find_spec("imageio_ffmpeg") is None:
        return f"writing mp4 videos needs imageio-ffmpeg, which is not installed ({VIDEO_EXTRA})"
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as error:  # a platform without a bundled binary and none on PATH
        return f"imageio-ffmpeg finds no ffmpeg executable ({error})"
    return None


def first_frame(rendered: Any) -> np.ndarray | None:
    """Env 0's frame of a vector env's ``render()``, or None when it rendered none."""
    frame = rendered[0] if isinstance(rendered, (list, tuple)) and rendered else rendered
    return np.asarray(frame) if frame is not None else None


def render_problem(make_env: Callable[[], gym.vector.VectorEnv]) -> str | None:
    """Why the envs ``make_env`` makes cannot be filmed (made, reset and rendered once), or None."""
    try:
        with isolated_randomness([], torch.device("cpu")):  # the probe draws nothing training would see
            envs = make_env()
            try:
                envs.reset(seed=0)
                frame = first_frame(envs.render())
            finally:
                envs.close()
    except Exception as error:  # any reason at all: the user learns it before training, not after
        return f"the environment cannot render frames ({type(error).__name__}: {error})"
    if frame is None or frame.ndim != 3 or frame.shape[-1] not in (3, 4) or frame.dtype != np.uint8:
        shape = "nothing" if frame is None else f"{frame.dtype} {list(frame.shape)}"
        return f"the environment renders {shape}, not RGB frames (make it with render_mode='rgb_array')"
    return None


@contextlib.contextmanager
def isolated_randomness(generators: list[torch.Generator], device: torch.device) -> Iterator[None]:
    """Leave ``generators`` and the global random states (torch's CPU one and ``device``'s CUDA one,
    numpy's, Python's) as they were, whatever the body draws from them."""
    saved = [(generator, generator.get_state()) for generator in generators]
    numpy_state, python_state = np.random.get_state(), random.getstate()
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for generator, state in saved:
            generator.set_state(state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class PeriodicVideo:
    """Every ``every`` environment steps, one episode of the trainer's acting agent, acting
    deterministically, written as ``directory/step_<global_step:09d>.mp4`` (cut at ``max_steps``
    frames; at the env's ``render_fps``). Call it after updates: as ``on_update`` of ``Trainer.train``::

        from rl_agents.envs import make_envs
        from rl_agents.video import PeriodicVideo

        def make_env():
            return make_envs("CartPole-v1", 1, render_mode="rgb_array")

        with PeriodicVideo(make_env, "runs/cartpole/videos", every=10_000) as video:
            trainer.train(100_000, on_update=video)

    Recording never changes training: the episodes run in an env of their own (``make_env``'s, made
    once and reused, each episode reset with ``seed``), the agent is in eval mode meanwhile (its
    normalizers do not move), and every random generator it could draw from (the trainer's, which
    also orders minibatches, and the global ones) is put back as it was; a run with videos is
    bit-identical to one without. Construction checks that MP4 can be written and that the env
    renders RGB frames, raising :class:`VideoUnavailable` before any training.

    ``start_step``: the global step training starts from (a resumed run's); the first video is at the
    next multiple of ``every`` after it. ``on_error(path, error)``: called instead of raising when an
    episode cannot be recorded or written; recording then stops (``stopped`` says why) and training
    goes on. ``written``: the files written so far.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.vector.VectorEnv],
        directory: str | os.PathLike,
        every: int,
        *,
        max_steps: int = 1000,
        start_step: int = 0,
        seed: int = 0,
        on_error: Callable[[Path, Exception], None] | None = None,
    ):
        if every < 1 or max_steps < 1:
            raise ValueError(f"every and max_steps must be >= 1, got {every} and {max_steps}")
        problem = mp4_problem() or render_problem(make_env)
        if problem:
            raise VideoUnavailable(problem)
        self.make_env, self.directory, self.every = make_env, Path(directory), every
        self.max_steps, self.seed, self.on_error = max_steps, seed, on_error
        self.next_step = (start_step // every + 1) * every
        self.written: list[Path] = []
        self.stopped: str | None = None
        self._envs: gym.vector.VectorEnv | None = None

    def __call__(self, trainer: Any) -> None:
        if self.stopped is not None or trainer.global_step < self.next_step:
            return
        self.next_step = (trainer.global_step // self.every + 1) * self.every
        path = self.directory / f"{step_dir_name(trainer.global_step)}.mp4"
        try:
            self.written.append(self.record(trainer, path))
        except Exception as error:
            if self.on_error is None:
                raise
            self.stopped = f"{path}: {type(error).__name__}: {error}"
            with contextlib.suppress(Exception):  # an env that failed is not reused, nor may its close fail the run
                self.close()
            self.on_error(path, error)

    def record(self, trainer: Any, path: Path) -> Path:
        """Record one episode now and write it to ``path`` (whole or not at all: a process killed
        meanwhile leaves no half file under that name)."""
        frames: list[np.ndarray] = []
        agent = trainer.acting
        generators = {id(g): g for g in (trainer.generator, getattr(agent, "generator", None)) if g is not None}
        with isolated_randomness(list(generators.values()), trainer.device):
            if self._envs is None:
                self._envs = self.make_env()
            evaluate_agent(
                agent,
                self._envs,
                1,
                deterministic=True,
                seed=self.seed,
                device=trainer.device,
                frames=frames,
                max_steps=self.max_steps,
            )
        fps = self._envs.metadata.get("render_fps") or DEFAULT_FPS
        partial = path.with_name(f".{path.stem}.partial{path.suffix}")
        try:
            save_video(frames, partial, fps=fps)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        if self._envs is not None:
            envs, self._envs = self._envs, None
            envs.close()

    def __enter__(self) -> PeriodicVideo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
