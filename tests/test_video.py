"""Training videos: ``rl-agents train --video-every N`` and :class:`rl_agents.video.PeriodicVideo`.

The point of the feature is that recording changes nothing: a run with videos must be bit-identical
to one without, also with an agent whose deterministic ``act`` draws random numbers (a test below
shows that the comparison does catch a recorder that leaves the generators as the episode left them).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import rl_agents.video
from rl_agents import PPO, Trainer
from rl_agents.checkpointing import TENSORS_FILE
from rl_agents.cli.main import main
from rl_agents.envs import make_envs
from rl_agents.evaluation import evaluate_agent
from rl_agents.video import PeriodicVideo, VideoUnavailable

# 2 envs x 128 steps: updates (and checkpoints, with --checkpoints 4) at steps 256, 512, 768 and 1024.
TINY = ["--env", "CartPole-v1", "--agents", "ppo", "--seed", "1", "--num-envs", "2", "--set", "trainer.num_steps=128"]
TINY += ["--steps", "1024", "--checkpoints", "4", "--quiet"]
EVERY = 300  # the first update at or past each multiple: 512 (>= 300), 768 (>= 600), 1024 (>= 900)
VIDEO_STEPS = [512, 768, 1024]
WALL_CLOCK = ("charts/wall_time", "charts/steps_per_second")


def train(*args: str) -> int:
    return main(["train", *args])


def decoded_frames(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [np.asarray(frame) for frame in reader]


def rendering_env() -> Any:
    return make_envs("CartPole-v1", 1, "sync", render_mode="rgb_array")


def draw_from_every_generator(generator: torch.Generator) -> None:
    torch.rand(1, generator=generator, device=generator.device)
    torch.rand(1), np.random.rand(), random.random()


@contextlib.contextmanager
def ppo_drawing_random_numbers() -> Iterator[None]:
    """PPO's act draws from every generator, even when deterministic, as a user's agent may: then a
    recorder that left a generator as the filmed episode left it would change the training (stock
    PPO acting deterministically draws nothing, which would hide that)."""
    act = PPO.act

    def drawing_act(self: PPO, obs: torch.Tensor, deterministic: bool = False) -> Any:
        draw_from_every_generator(self.generator)
        return act(self, obs, deterministic)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PPO, "act", drawing_act)
        yield


@pytest.fixture(scope="module")
def video_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("video") / "run"
    with ppo_drawing_random_numbers():
        assert train(*TINY, "--video-every", str(EVERY), "--out", str(run)) == 0
    return run


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("plain") / "run"
    with ppo_drawing_random_numbers():
        assert train(*TINY, "--out", str(run)) == 0
    return run


# ---------------------------------------------------------------------------- the command line
def test_videos_are_written_at_the_expected_steps_and_show_the_episode(video_run: Path) -> None:
    videos = video_run / "videos"
    assert sorted(path.name for path in videos.iterdir()) == [f"step_{step:09d}.mp4" for step in VIDEO_STEPS]
    seed = yaml.safe_load((video_run / "config.yaml").read_text())["seed"]
    for step in VIDEO_STEPS:
        decoded = decoded_frames(videos / f"step_{step:09d}.mp4")
        # The episode again, independently: the checkpoint of that step, acting deterministically.
        trainer = Trainer.load(video_run / "checkpoints" / f"step_{step:09d}")
        frames: list[np.ndarray] = []
        envs = rendering_env()
        result = evaluate_agent(trainer.acting, envs, 1, deterministic=True, seed=seed, frames=frames)
        envs.close()
        assert len(decoded) == len(frames) == result.lengths[0], step
        assert decoded[0].shape == frames[0].shape
        # H.264 is lossy, but the first frame is the same picture.
        assert np.abs(decoded[0].astype(float) - frames[0].astype(float)).mean() < 4.0


def test_training_with_videos_is_bit_identical_to_training_without(video_run: Path, plain_run: Path) -> None:
    checkpoints = sorted(path.name for path in (plain_run / "checkpoints").glob("step_*"))
    assert checkpoints == sorted(path.name for path in (video_run / "checkpoints").glob("step_*"))
    assert len(checkpoints) == 4
    for name in checkpoints:
        plain = load_file(plain_run / "checkpoints" / name / TENSORS_FILE)
        with_videos = load_file(video_run / "checkpoints" / name / TENSORS_FILE)
        assert plain.keys() == with_videos.keys()
        for key in plain:
            assert torch.equal(plain[key], with_videos[key]), f"{name}: {key}"
    assert metrics_without_wall_clock(plain_run) == metrics_without_wall_clock(video_run)


def metrics_without_wall_clock(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        rows = [{key: value for key, value in row.items() if key not in WALL_CLOCK} for row in csv.DictReader(handle)]
    assert len(rows) == 4 and all(len(row) > 10 for row in rows)
    return rows


def test_resume_keeps_video_every_and_may_change_it(video_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(video_run, run)
    assert train("--resume", str(run), "--steps", "1536", "--quiet") == 0
    assert yaml.safe_load((run / "config.yaml").read_text())["video_every"] == EVERY
    # The next multiples of 300 after the resumed step 1024: 1200 (update 1280), 1500 (update 1536).
    assert video_steps(run) == [*VIDEO_STEPS, 1280, 1536]
    assert train("--resume", str(run), "--steps", "2048", "--video-every", "512", "--quiet") == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["video_every"] == 512
    assert config["resumes"][-1]["changed"] == {
        "steps": {"from": 1536, "to": 2048},
        "video_every": {"from": 300, "to": 512},
    }
    assert video_steps(run) == [*VIDEO_STEPS, 1280, 1536, 2048]  # updates 1792 and 2048: 2048 >= 2048


def video_steps(run: Path) -> list[int]:
    return sorted(int(path.stem.removeprefix("step_")) for path in (run / "videos").glob("step_*.mp4"))


@pytest.fixture
def without_imageio_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "imageio_ffmpeg" else real(name, *args)
    )


@pytest.mark.usefixtures("without_imageio_ffmpeg")
def test_missing_imageio_ffmpeg_fails_before_anything_is_written(
    video_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "new"
    assert train(*TINY, "--video-every", "512", "--out", str(run)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--video-every" in lines[0] and "imageio-ffmpeg" in lines[0], lines
    assert not run.exists()
    resumed = tmp_path / "resumed"  # a resumed run's config.yaml keeps video_every: refused before it is rewritten
    shutil.copytree(video_run, resumed)
    before = (resumed / "config.yaml").read_bytes()
    assert train("--resume", str(resumed), "--steps", "1536", "--quiet") == 2
    assert "imageio-ffmpeg" in capsys.readouterr().err
    assert (resumed / "config.yaml").read_bytes() == before
    assert video_steps(resumed) == VIDEO_STEPS


def test_a_video_that_cannot_be_written_warns_once_and_training_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full_disk(frames: Any, path: Path, fps: int = 30) -> Path:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(rl_agents.video, "save_video", full_disk)
    run = tmp_path / "run"
    assert train(*TINY, "--video-every", "256", "--out", str(run)) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "video not written" in line]
    assert len(warnings) == 1 and "step_000000256" in warnings[0] and "No space left" in warnings[0], warnings
    assert not list(run.glob("videos/*"))  # no half file either
    assert (run / "checkpoints" / "step_000001024").is_dir()


def test_eval_writes_mp4_and_gif_of_the_episode(video_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("episode.mp4", "episode.gif"):
        out = tmp_path / name
        assert main(["eval", str(video_run), "--episodes", "1", "--deterministic", "--video", str(out)]) == 0
        printed = capsys.readouterr().out
        length = round(float(printed.split("episodes:")[1].split("+-")[0]))  # CartPole: reward 1 per step
        if name.endswith(".mp4"):
            assert len(decoded_frames(out)) == length
        else:
            with Image.open(out) as image:  # Pillow merges repeated frames into a longer one
                assert image.format == "GIF" and 1 < image.n_frames <= length


# ---------------------------------------------------------------------------- Python
class DrawingPPO(PPO):
    """PPO whose act draws from every generator even when deterministic, as a user's agent may."""

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Any:
        draw_from_every_generator(self.generator)
        return super().act(obs, deterministic)


def python_run(tmp_path: Path, videos: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[float]]:
    """A seeded Python run, with a video every update or none: its final weights, generator and returns."""
    trainer = Trainer(make_envs("CartPole-v1", 2), [DrawingPPO()], seed=3, num_steps=64)
    with PeriodicVideo(rendering_env, tmp_path / "videos", every=128, max_steps=30) as video:
        trainer.train(512, progress=False, on_update=video if videos else None)
    assert len(video.written) == (4 if videos else 0)
    weights = {key: value.clone() for key, value in trainer.acting.state_dict().items()}
    return weights, trainer.generator.get_state(), list(trainer.episodes.returns)


def assert_same_run(a: tuple, b: tuple) -> None:
    assert a[0].keys() == b[0].keys() and all(torch.equal(a[0][key], b[0][key]) for key in a[0])
    assert torch.equal(a[1], b[1]) and a[2] == b[2]


def test_an_agent_drawing_random_numbers_while_filmed_trains_as_unfilmed(tmp_path: Path) -> None:
    assert_same_run(python_run(tmp_path / "a", videos=False), python_run(tmp_path / "b", videos=True))


def test_the_comparison_catches_a_recorder_that_does_not_restore_the_generators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.contextmanager
    def not_isolated(*args: Any) -> Iterator[None]:
        yield

    plain = python_run(tmp_path / "a", videos=False)
    monkeypatch.setattr(rl_agents.video, "isolated_randomness", not_isolated)
    with pytest.raises(AssertionError):
        assert_same_run(plain, python_run(tmp_path / "b", videos=True))


def test_recording_leaves_every_random_state_and_the_agent_mode_as_they_were(tmp_path: Path) -> None:
    trainer = Trainer(make_envs("CartPole-v1", 2), [DrawingPPO()], seed=3, num_steps=64)
    trainer.train(128, progress=False)
    states = (trainer.generator.get_state(), torch.random.get_rng_state(), np.random.get_state()[1].copy())
    python_state, training = random.getstate(), trainer.acting.training
    with PeriodicVideo(rendering_env, tmp_path, every=64, max_steps=5) as video:
        video(trainer)
    assert [path.name for path in video.written] == ["step_000000128.mp4"]
    assert torch.equal(states[0], trainer.generator.get_state()) and torch.equal(states[1], torch.get_rng_state())
    assert np.array_equal(states[2], np.random.get_state()[1]) and python_state == random.getstate()
    assert trainer.acting.training == training
    assert len(decoded_frames(video.written[0])) == 5  # cut at max_steps: no CartPole episode is that short


def test_max_steps_cuts_an_evaluation_and_counts_the_partial_episode() -> None:
    agent = Trainer(make_envs("CartPole-v1", 1), [PPO()], seed=0).acting
    envs = rendering_env()
    frames: list[np.ndarray] = []
    cut = evaluate_agent(agent, envs, 2, deterministic=True, frames=frames, max_steps=5)
    assert (cut.lengths, cut.returns, len(frames)) == ([5], [5.0], 5)
    whole = evaluate_agent(agent, envs, 1, deterministic=True)
    assert evaluate_agent(agent, envs, 1, deterministic=True, max_steps=10_000) == whole  # uncut: the same
    envs.close()


@pytest.mark.filterwarnings("ignore:.*without specifying any render mode")
def test_an_env_that_does_not_render_is_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(VideoUnavailable, match="rgb_array"):
        PeriodicVideo(lambda: make_envs("CartPole-v1", 1), tmp_path, every=100)
    assert not list(tmp_path.iterdir())
