"""``rl-agents train``: a new run, or ``--resume`` of one, in a locked run directory.

Nothing is written before everything is checked: the config, the checkpoint to resume (the newest
must verify, unless ``--skip-damaged``) and what a resume changes (:mod:`rl_agents.cli.resume`).
A first Ctrl-C or SIGTERM stops at the end of the update in progress and saves a checkpoint
(exit 130 / 143); a second exits at once.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from rl_agents.checkpointing import (
    DamagedCheckpointError,
    checkpoint_candidates,
    read_checkpoint,
    recover_checkpoints_dir,
)
from rl_agents.cli.describe import settings_line
from rl_agents.cli.errors import CommandError, training_stopped
from rl_agents.cli.resume import (
    ResumeRefused,
    apply_learning_rates,
    changes_learning_rates,
    check_changes,
    config_changes,
    resume_record,
)
from rl_agents.cli.run_config import default_run_dir, resolve_config, with_ray_address
from rl_agents.cli.run_lock import RunLock
from rl_agents.config import RunConfig, apply_overrides, config_from_dict, config_to_dict, is_out_of_memory, load_yaml
from rl_agents.config.registry import AgentImports
from rl_agents.config.schema import RESUME_HISTORY_KEY
from rl_agents.envs import EnvError, make_envs
from rl_agents.training import make_trainer
from rl_agents.training.distributed import DistributedTrainer, WorkerFailureError
from rl_agents.training.errors import NonFiniteError
from rl_agents.training.interrupts import StopSignals
from rl_agents.training.run_records import config_of_records
from rl_agents.video import PeriodicVideo, VideoUnavailable

MAX_THREADS = 1024
# Flags that would make a resumed run another run (its config.yaml says what they were).
FIXED_ON_RESUME = ("config", "env", "env_kwargs", "agents", "seed", "num_envs", "workers", "out")


class Resume:
    """What a resume continues from: the checkpoint read and checked, and what the config changes."""

    def __init__(self, checkpoint: Path, tree: dict[str, Any], changes: dict, skipped: dict[str, str]):
        self.checkpoint, self.tree, self.changes, self.skipped = checkpoint, tree, changes, skipped


def cmd_train(args: argparse.Namespace) -> int:
    if not 1 <= args.threads <= MAX_THREADS:  # torch would start that many threads per parallel region
        raise CommandError(f"--threads must be between 1 and {MAX_THREADS}, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise CommandError(f"run directory {str(run_dir)!r} does not exist")
        _refuse_fixed_flags(args, run_dir)
        with RunLock(run_dir) as lock:
            _note_stale_lock(lock)
            return _train_resumed(args, run_dir)
    if args.skip_damaged:
        raise CommandError("--skip-damaged applies to --resume only")
    if args.trust_code:
        raise CommandError("--trust-code applies to --resume only (what you name on the command line is trusted)")
    config = resolve_config(args)
    run_dir = Path(args.out) if args.out else default_run_dir(config)
    if run_dir.exists() and not run_dir.is_dir():
        raise CommandError(f"--out {str(run_dir)!r} is a file, not a directory")
    _refuse_existing_run(run_dir)
    trainer = _build(config)  # before touching the run directory: bad input leaves nothing behind
    video = _periodic_video(config, run_dir, start_step=0)  # after it: a bad env id is named as such
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create the run directory {str(run_dir)!r}: {error.strerror or error}") from error
    with RunLock(run_dir) as lock:
        _note_stale_lock(lock)
        _refuse_existing_run(run_dir)  # another process may have started it meanwhile
        write_text_atomically(run_dir / "config.yaml", _config_yaml(config, []))
        say(settings_line(trainer, config))  # once the run exists: where its settings came from
        return _run(trainer, config, run_dir, args, video)


def _refuse_fixed_flags(args: argparse.Namespace, run_dir: Path) -> None:
    fixed = [flag for flag in FIXED_ON_RESUME if getattr(args, flag, None) not in (None, [])]
    if fixed:
        named = {"config": "the config file argument", "env_kwargs": "--env-kwarg"}
        flag = named.get(fixed[0], "--" + fixed[0].replace("_", "-"))
        raise CommandError(
            f"--resume continues {run_dir} as its config.yaml says; drop {flag} "
            "(--steps, --device, --checkpoints, --video-every, --ray-address and --set of a setting a resume may "
            "change can differ)"
        )


def _refuse_existing_run(run_dir: Path) -> None:
    if checkpoint_candidates(run_dir / "checkpoints"):
        raise CommandError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")


def _note_stale_lock(lock: RunLock) -> None:
    if lock.previous_holder:
        say(f"{lock.path}: taking over the lock of a process that is gone ({lock.previous_holder})")


def _build(config: RunConfig) -> Any:
    trainer = make_trainer(config)
    if isinstance(trainer, DistributedTrainer):
        trainer.start_workers()  # a wrong --ray-address too
    return trainer


# ---------------------------------------------------------------------------- resume
def _train_resumed(args: argparse.Namespace, run_dir: Path) -> int:
    config_path = run_dir / "config.yaml"
    raw = load_yaml(config_path) if config_path.is_file() else _config_of_python_run(run_dir, args.skip_damaged)
    history = list(raw.get(RESUME_HISTORY_KEY) or [])
    imports = AgentImports.of(trust=args.trust_code)  # config.yaml is a file, not the user's command
    as_written = config_to_dict(config_from_dict(raw, source=str(config_path), imports=imports))
    overrides = [
        f"{key}={getattr(args, key)}"
        for key in ("steps", "device", "checkpoints", "video_every", "stop_at_return")
        if getattr(args, key) is not None
    ]
    raw = with_ray_address(apply_overrides(raw, overrides + args.overrides), args)
    config = config_from_dict(raw, source=str(config_path), imports=imports)
    recover_checkpoints_dir(run_dir / "checkpoints")  # what a process killed mid-save left behind
    resume = _read_resume_point(run_dir, config, as_written, args.skip_damaged)
    if resume is None:  # stopped before its first checkpoint: start it again
        say(f"{run_dir}: no checkpoint yet; starting the run from the beginning")
        trainer = _build(config)
        video = _periodic_video(config, run_dir, start_step=0)
        write_text_atomically(config_path, _config_yaml(config, history))
        return _run(trainer, config, run_dir, args, video)
    trainer = _build(config)
    configured_lrs = list(trainer.learner.base_lrs)
    for note in trainer.restore_checkpoint(resume.checkpoint, resume.tree):
        say(f"warning: {resume.checkpoint}: {note}")
    if changes_learning_rates(resume.changes, config.resolved):
        apply_learning_rates(trainer.learner, configured_lrs)
    video = _periodic_video(config, run_dir, start_step=trainer.global_step)  # the next one after the resume
    history.append(resume_record(trainer.global_step, resume.checkpoint.name, resume.changes, resume.skipped))
    write_text_atomically(config_path, _config_yaml(config, history))
    changed = "".join(f"; {key}: {old!r} -> {new!r}" for key, (old, new) in resume.changes.items())
    say(f"resuming {run_dir} from {resume.checkpoint.name} at step {trainer.global_step}{changed}")
    return _run(trainer, config, run_dir, args, video)


def _config_of_python_run(run_dir: Path, skip_damaged: bool) -> dict[str, Any]:
    """The run config of a run built in Python (``trainer.save(RUN/checkpoints)``, no config.yaml),
    from what its newest checkpoint recorded; the resume then writes it as config.yaml."""
    checkpoints = run_dir / "checkpoints"
    if not checkpoint_candidates(checkpoints):
        raise CommandError(f"{run_dir}: no config.yaml and no checkpoints in {checkpoints}: not a run directory")
    try:
        checkpoint, tree = read_checkpoint(checkpoints, skip_damaged=skip_damaged)
    except DamagedCheckpointError as error:
        raise CommandError(f"the newest checkpoint is damaged: {error}") from None
    run = tree.get("run") if isinstance(tree.get("run"), dict) else {}
    raw = run.get("config") or config_of_records(run)
    if not isinstance(raw, dict):
        raise CommandError(
            f"{run_dir}: no config.yaml, and {checkpoint.name} does not record how its envs were built (a trainer "
            "built in Python on envs of its own): continue it in Python with Trainer.load(path, envs)"
        )
    say(f"{run_dir}: no config.yaml; rebuilding the run from what {checkpoint.name} recorded (a run built in Python)")
    return raw


def _read_resume_point(
    run_dir: Path, config: RunConfig, as_written: dict[str, Any], skip_damaged: bool
) -> Resume | None:
    """The checkpoint to resume from and what the new config changes, compared with the config the
    checkpoint was saved with (a checkpoint saved without one: with config.yaml as written)."""
    checkpoints = run_dir / "checkpoints"
    if not checkpoint_candidates(checkpoints):
        return None
    skipped: dict[str, str] = {}

    def note_skip(path: Path, reason: str) -> None:
        skipped[path.name] = reason
        say(f"skipping damaged checkpoint {path.name}: {reason}")

    try:
        checkpoint, tree = read_checkpoint(checkpoints, skip_damaged=skip_damaged, on_skip=note_skip)
    except DamagedCheckpointError as error:
        older = (
            f"; --skip-damaged resumes from the newest intact one of the {error.older} older checkpoints"
            if error.older
            else "; there is no older checkpoint"
        )
        raise CommandError(f"the newest checkpoint is damaged: {error}{older}") from None
    run = tree.get("run")
    saved = run.get("config") if isinstance(run, dict) else None
    changes = config_changes(saved if isinstance(saved, dict) else as_written, config_to_dict(config))
    try:
        check_changes(changes, checkpoint.name, config.resolved)
    except ResumeRefused as error:
        raise CommandError(str(error)) from None
    return Resume(checkpoint, tree, changes, skipped)


def _config_yaml(config: RunConfig, history: list[Any]) -> str:
    document = config_to_dict(config)
    if history:
        document[RESUME_HISTORY_KEY] = history
    return yaml.safe_dump(document, sort_keys=False)


# ---------------------------------------------------------------------------- the run
def _periodic_video(config: RunConfig, run_dir: Path, start_step: int) -> PeriodicVideo | None:
    """The run's videos (``video_every``) in ``run_dir/videos``, from an env like the run's. Checked
    now, before anything is written: a missing imageio-ffmpeg or an env that cannot render fails
    the command at once, not after hours of training."""
    if config.video_every is None:
        return None
    make_env = functools.partial(make_envs, config.env, 1, "sync", render_mode="rgb_array", **config.env_kwargs)

    def warn(path: Path, error: Exception) -> None:  # a failed video must not cost the run
        say(f"warning: {path}: video not written ({type(error).__name__}: {error}); no more videos, training goes on")

    try:
        return PeriodicVideo(
            make_env, run_dir / "videos", config.video_every, start_step=start_step, seed=config.seed, on_error=warn
        )
    except VideoUnavailable as error:
        raise CommandError(f"--video-every {config.video_every}: {error}") from error


def _run(
    trainer: Any, config: RunConfig, run_dir: Path, args: argparse.Namespace, video: PeriodicVideo | None = None
) -> int:
    from rl_agents.logging import CSVLogger, TensorBoardLogger

    loggers = [CSVLogger(run_dir / "metrics.csv"), TensorBoardLogger(run_dir / "tensorboard")]
    trainer.loggers = loggers
    loggers[0].truncate(trainer.global_step)  # rows logged after the checkpoint are logged again
    interval = max(config.steps // config.checkpoints, 1)
    next_save = (trainer.global_step // interval + 1) * interval

    def save_periodically(t: Any) -> None:
        nonlocal next_save
        if t.global_step >= next_save:
            t.save(run_dir / "checkpoints")
            next_save = (t.global_step // interval + 1) * interval

    def after_update(t: Any) -> None:
        save_periodically(t)  # first: a video never stands between the run and its checkpoint
        if video is not None:
            video(t)

    target = ReturnTarget(config.stop_at_return)
    stop = StopSignals()
    try:
        with stop:
            try:
                # On NaN/inf numbers or a failed env, train() saves the trainer as checkpoints/last_good first.
                trainer.train(
                    config.steps,
                    progress=True,
                    quiet=args.quiet,
                    on_update=after_update,
                    stop_requested=stop.requested,
                    save_on_error=run_dir / "checkpoints",
                    stop_when=target.reached if config.stop_at_return is not None else None,
                )
            except (NonFiniteError, EnvError, WorkerFailureError) as error:
                raise CommandError(training_stopped(error, trainer, run_dir)) from error
            except (MemoryError, RuntimeError) as error:
                if not is_out_of_memory(error):
                    raise
                raise CommandError(
                    f"training stopped at step {trainer.global_step}: not enough memory: {error}"
                ) from error
            final = trainer.save(run_dir / "checkpoints")  # a second signal meanwhile leaves the previous one
    finally:
        for logger in loggers:
            logger.close()
        if video is not None:
            video.close()
        if isinstance(trainer, DistributedTrainer):
            trainer.close()
    if stop.requested():
        print(
            f"{stop.name} at step {trainer.global_step}: saved {final}; "
            f"continue with: rl-agents train --resume {run_dir}",
            file=sys.stderr,
        )
        return stop.exit_status
    plot = _plot_run(run_dir)
    _print_summary(trainer, run_dir, final, plot, video.directory if video is not None and video.written else None)
    if config.stop_at_return is not None:
        say(target.outcome(trainer))
    print(f"run directory: {run_dir}")  # unwrapped, for copying and for scripts
    return 0


class ReturnTarget:
    """``--stop-at-return``: whether the mean return of the last 20 episodes reached the target, and when."""

    WINDOW = 20

    def __init__(self, target: float | None):
        self.target = target
        self.started = time.perf_counter()
        self.reached_at: tuple[int, float] | None = None  # (step, seconds) when it was reached

    def reached(self, trainer: Any) -> bool:
        if self.target is None or trainer.episodes.num_episodes < self.WINDOW:
            return False
        if trainer.recent_return(self.WINDOW) >= self.target and self.reached_at is None:
            self.reached_at = (trainer.global_step, time.perf_counter() - self.started)
        return self.reached_at is not None

    def outcome(self, trainer: Any) -> str:
        last = f"{trainer.recent_return(self.WINDOW):.2f}" if trainer.episodes.num_episodes else "-"
        if self.reached_at is None:
            return (
                f"not solved: the last-{self.WINDOW} mean return is {last} at step {trainer.global_step:,}, "
                f"below {self.target:g}"
            )
        step, seconds = self.reached_at
        return (
            f"solved at {step:,} steps in {seconds:.1f} s: the last-{self.WINDOW} mean return reached "
            f"{last} (target {self.target:g})"
        )


def say(line: str) -> None:
    """One line on stderr, unwrapped (it names paths, which scripts and tests read back)."""
    print(line, file=sys.stderr, flush=True)


def write_text_atomically(path: Path, text: str) -> None:
    """Write a file so that a process killed meanwhile, or a full disk, leaves the old content or the
    new, never half (and no temporary file)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CommandError(f"{path}: cannot be written: {error.strerror or error}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise CommandError(f"{path}: cannot be written: {error.strerror or error}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _plot_run(run_dir: Path) -> Path | None:
    from rl_agents.plotting import plot_runs

    if not (run_dir / "metrics.csv").exists():
        return None
    return plot_runs([run_dir], run_dir / "learning_curve.png")


def _print_summary(trainer: Any, run_dir: Path, checkpoint: Path, plot: Path | None, videos: Path | None) -> None:
    table = Table(title=f"run {run_dir}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths wrap instead of being cut, so they can be copied
    episodes = trainer.episodes
    table.add_row("environment steps", f"{trainer.global_step:,}")
    table.add_row("updates", str(trainer.num_updates))
    table.add_row("episodes", str(episodes.num_episodes))
    table.add_row("mean return (last 20)", f"{trainer.recent_return():.2f}" if episodes.num_episodes else "-")
    table.add_row("best episode return", f"{episodes.best_return:.2f}" if episodes.num_episodes else "-")
    table.add_row("steps/s", f"{trainer.metrics.get('charts/steps_per_second', float('nan')):,.0f}")
    table.add_row("config", str(run_dir / "config.yaml"))
    table.add_row("metrics", str(run_dir / "metrics.csv"))
    table.add_row("tensorboard", str(run_dir / "tensorboard"))
    table.add_row("checkpoint", str(checkpoint))
    table.add_row("learning curve", str(plot) if plot else "-")
    if videos is not None:
        table.add_row("videos", str(videos))
    Console(stderr=True, markup=False, emoji=False).print(table)  # names are printed as they are
