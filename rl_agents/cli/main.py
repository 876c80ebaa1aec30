"""The ``rl-agents`` command: train, eval, plot, describe, list."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
import yaml
from rich.console import Console
from rich.table import Table

from rl_agents.agents import AGENTS
from rl_agents.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    is_out_of_memory,
    list_presets,
    load_preset,
    load_yaml,
    parse_agent_names,
    preset_path,
)
from rl_agents.core.agent import CompositionError
from rl_agents.envs import EnvCreationError, EnvError
from rl_agents.training import make_trainer
from rl_agents.training.distributed import DistributedTrainer, RayUnavailableError, WorkerFailureError
from rl_agents.training.errors import NonFiniteError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CompositionError,
    EnvCreationError,
    FileNotFoundError,
    RayUnavailableError,
)


MAX_THREADS = 1024


class CommandError(ValueError):
    """A command-line usage problem reported as one line."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line for the user; --debug shows the traceback
        if args.debug or not _is_user_error(error):
            if args.debug:
                raise
            print(
                f"rl-agents: internal error: {type(error).__name__}: {_one_line(str(error))} "
                "(rerun with --debug for the traceback)",
                file=sys.stderr,
            )
            return 1
        print(f"rl-agents: error: {_one_line(str(error))}", file=sys.stderr)
        return 2


def _is_user_error(error: Exception) -> bool:
    from rl_agents.checkpointing import CheckpointError

    return isinstance(error, USER_ERRORS + (CheckpointError, CommandError))


def _one_line(text: str) -> str:
    """Messages name paths and values, which may hold line breaks; the user gets one line."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line instead of the usage followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="rl-agents", description="Train and inspect compositions of RL agents.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train agents (from a config, a preset, or flags)")
    train.add_argument("config", nargs="?", help="YAML config file")
    train.add_argument("--agents", help="agents joined by '+', e.g. ppo+rnd")
    train.add_argument("--env", help="environment id; its preset is used when one ships")
    train.add_argument("--steps", type=_number, help="total environment steps (1e6 accepted)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=["cpu", "cuda", "auto"])
    train.add_argument("--num-envs", type=int)
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. ppo.ent_coef=0.02"
    )
    train.add_argument("--out", help="run directory (default runs/<env>_<agents>_s<seed>_<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    train.add_argument(
        "--checkpoints", type=int, help="number of periodic checkpoints over the run (default 10; kept on --resume)"
    )
    train.add_argument("--quiet", action="store_true", help="plain progress lines instead of a progress bar")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for small networks)")
    train.add_argument(
        "--workers",
        type=int,
        help="collect with N Ray workers of --num-envs envs each (needs rl-agents[ray]; 0: this process)",
    )
    train.add_argument(
        "--ray-address", help="join this Ray cluster (e.g. auto) instead of starting a local Ray instance"
    )
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a trained run")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--deterministic", action="store_true")
    evaluate.add_argument("--video", help="write env 0 as out.gif or out.mp4")
    evaluate.add_argument("--seed", type=int, default=12345)
    evaluate.set_defaults(handler=cmd_eval)

    plot = commands.add_parser("plot", help="plot learning curves of one or more runs")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--out", default="curves.png")
    plot.add_argument("--metric", default="episode/return_mean")
    plot.add_argument("--smooth", type=int, default=10, help="moving-average window in logged points (1: raw)")
    plot.set_defaults(handler=cmd_plot)

    describe = commands.add_parser("describe", help="show how a composition fits together")
    describe.add_argument("config", nargs="?")
    describe.add_argument("--agents")
    describe.add_argument("--env")
    describe.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    describe.set_defaults(handler=cmd_describe)

    listing = commands.add_parser("list", help="list agents, presets and installed environment families")
    listing.set_defaults(handler=cmd_list)
    for sub in (train, evaluate, plot, describe, listing):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def _number(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


# ---------------------------------------------------------------------------- configuration
def resolve_config(args: argparse.Namespace) -> RunConfig:
    """Config file, else the env's preset, then flags, then --set overrides."""
    if args.config:
        raw = load_yaml(args.config)
        source = args.config
    else:
        env_id = args.env or "CartPole-v1"
        learner = parse_agent_names(args.agents)[0] if getattr(args, "agents", None) else None
        raw = load_preset(env_id, learner)
        path = preset_path(env_id, learner)
        source = f"preset {path.stem}" if path else "defaults"
    if getattr(args, "env", None):
        raw["env"] = args.env
    if getattr(args, "agents", None):
        names = parse_agent_names(args.agents)
        if not args.config:  # a preset's sections for agents not requested are dropped
            raw = {key: value for key, value in raw.items() if key not in AGENTS or key in names}
        raw["agents"] = args.agents
    for flag, key in (("steps", "steps"), ("seed", "seed"), ("device", "device"), ("checkpoints", "checkpoints")):
        if getattr(args, flag, None) is not None:
            raw[key] = getattr(args, flag)
    if getattr(args, "num_envs", None) is not None:
        raw = apply_overrides(raw, [f"trainer.num_envs={args.num_envs}"])
    if getattr(args, "workers", None) is not None:
        raw = apply_overrides(raw, [f"distributed.workers={args.workers}"])
    raw = _with_ray_address(apply_overrides(raw, args.overrides), args)
    return config_from_dict(raw, source=source)


def _with_ray_address(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """--ray-address, taken as it is (not parsed as YAML like --set values)."""
    address = getattr(args, "ray_address", None)
    if address is None:
        return raw
    section = raw.get("distributed")
    return {**raw, "distributed": {**(section if isinstance(section, dict) else {}), "ray_address": address}}


def _flag_name(dest: str) -> str:
    return "the config file argument" if dest == "config" else "--" + dest.replace("_", "-")


def default_run_dir(config: RunConfig) -> Path:
    env = config.env.replace("/", "_")
    return Path("runs") / f"{env}_{config.agents}_s{config.seed}_{time.strftime('%Y%m%d-%H%M%S')}"


# ---------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from rl_agents.checkpointing import latest_checkpoint, recover_checkpoints_dir
    from rl_agents.logging import CSVLogger, TensorBoardLogger

    console = Console(stderr=True, markup=False, emoji=False)  # paths and names are printed as they are
    if not 1 <= args.threads <= MAX_THREADS:  # torch would start that many threads per parallel region
        raise CommandError(f"--threads must be between 1 and {MAX_THREADS}, got {args.threads}")
    torch.set_num_threads(args.threads)
    if args.resume:
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise CommandError(f"run directory {str(run_dir)!r} does not exist")
        fixed = [
            flag
            for flag in ("config", "env", "agents", "seed", "num_envs", "workers", "out")
            if getattr(args, flag, None) is not None
        ]
        if fixed:
            raise CommandError(
                f"--resume continues {run_dir} as its config.yaml says; drop {_flag_name(fixed[0])} "
                "(--steps, --device, --ray-address and --set KEY=VALUE may change)"
            )
        overrides = [
            f"{key}={getattr(args, key)}"
            for key in ("steps", "device", "checkpoints")
            if getattr(args, key) is not None
        ]
        raw = _with_ray_address(apply_overrides(load_yaml(run_dir / "config.yaml"), overrides + args.overrides), args)
        config = config_from_dict(raw, source=str(run_dir / "config.yaml"))
        recover_checkpoints_dir(run_dir / "checkpoints")  # what a process killed mid-save left behind
        checkpoint = latest_checkpoint(run_dir / "checkpoints")
        if checkpoint is None:  # stopped before its first checkpoint: start it again
            console.print(f"{run_dir}: no checkpoint yet; starting the run from the beginning")
    else:
        config = resolve_config(args)
        run_dir = Path(args.out) if args.out else default_run_dir(config)
        checkpoint = None
        if run_dir.exists() and not run_dir.is_dir():
            raise CommandError(f"--out {str(run_dir)!r} is a file, not a directory")
        if (run_dir / "checkpoints").is_dir() and latest_checkpoint(run_dir / "checkpoints") is not None:
            raise CommandError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    trainer = make_trainer(config)  # before touching the run directory: bad input leaves nothing behind
    if isinstance(trainer, DistributedTrainer):
        trainer.start_workers()  # a wrong --ray-address too
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"cannot create the run directory {str(run_dir)!r}: {error.strerror or error}") from error
    _write_atomically(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    loggers = [CSVLogger(run_dir / "metrics.csv"), TensorBoardLogger(run_dir / "tensorboard")]
    trainer.loggers = loggers
    if checkpoint is not None:
        trainer.load_state(checkpoint)
        console.print(f"resuming {run_dir} from {checkpoint.name} at step {trainer.global_step}")
    loggers[0].truncate(trainer.global_step)  # rows logged after the checkpoint are logged again
    interval = max(config.steps // config.checkpoints, 1)
    next_save = (trainer.global_step // interval + 1) * interval

    def save_periodically(t: Any) -> None:
        nonlocal next_save
        if t.global_step >= next_save:
            t.save(run_dir / "checkpoints")
            next_save = (t.global_step // interval + 1) * interval

    try:
        # On NaN/inf numbers or a failed env, train() saves the trainer as checkpoints/last_good first.
        trainer.train(
            config.steps,
            progress=True,
            quiet=args.quiet,
            on_update=save_periodically,
            save_on_error=run_dir / "checkpoints",
        )
    except (NonFiniteError, EnvError, WorkerFailureError) as error:
        raise CommandError(_training_stopped(error, trainer, run_dir)) from error
    except (MemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        raise CommandError(f"training stopped at step {trainer.global_step}: not enough memory: {error}") from error
    finally:
        for logger in loggers:
            logger.close()
        if isinstance(trainer, DistributedTrainer):
            trainer.close()
    final = trainer.save(run_dir / "checkpoints")
    plot = _plot_run(run_dir)
    _print_summary(console, trainer, run_dir, final, plot)
    print(f"run directory: {run_dir}")  # unwrapped, for copying and for scripts
    return 0


def _training_stopped(error: Exception, trainer: Any, run_dir: Path) -> str:
    """One line: why training stopped, where the last good state was saved, how to go on."""
    what = " ".join(str(error).split())
    saved = getattr(error, "checkpoint", None)
    if saved is not None:
        where = f"the last good state was saved to {saved} (continue with: rl-agents train --resume {run_dir})"
    else:
        notes = " ".join(" ".join(getattr(error, "__notes__", []) or []).split())
        where = f"no checkpoint was saved ({notes or 'nothing to save'})"
    hint = "; --set trainer.max_env_restarts=N restarts failed environments" if isinstance(error, EnvError) else ""
    return f"training stopped at step {trainer.global_step}: {what}; {where}{hint}"


def _write_atomically(path: Path, text: str) -> None:
    """Write a file so that a process killed meanwhile leaves the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _plot_run(run_dir: Path) -> Path | None:
    from rl_agents.plotting import plot_runs

    if not (run_dir / "metrics.csv").exists():
        return None
    return plot_runs([run_dir], run_dir / "learning_curve.png")


def _print_summary(console: Console, trainer: Any, run_dir: Path, checkpoint: Path, plot: Path | None) -> None:
    table = Table(title=f"run {run_dir}", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")  # paths wrap instead of being cut, so they can be copied
    returns = trainer.episodes.returns
    table.add_row("environment steps", f"{trainer.global_step:,}")
    table.add_row("updates", str(trainer.num_updates))
    table.add_row("episodes", str(len(returns)))
    table.add_row("mean return (last 20)", f"{trainer.recent_return():.2f}" if returns else "-")
    table.add_row("best episode return", f"{max(returns):.2f}" if returns else "-")
    table.add_row("steps/s", f"{trainer.metrics.get('charts/steps_per_second', float('nan')):,.0f}")
    table.add_row("config", str(run_dir / "config.yaml"))
    table.add_row("metrics", str(run_dir / "metrics.csv"))
    table.add_row("tensorboard", str(run_dir / "tensorboard"))
    table.add_row("checkpoint", str(checkpoint))
    table.add_row("learning curve", str(plot) if plot else "-")
    console.print(table)


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from rl_agents.checkpointing import latest_checkpoint
    from rl_agents.envs import make_envs
    from rl_agents.evaluation import save_video

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise CommandError(f"run directory {str(run_dir)!r} does not exist")
    if args.episodes < 1:
        raise CommandError("--episodes must be >= 1")
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    config = config_from_dict(load_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise CommandError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    trainer = make_trainer(config)
    trainer.load_state(checkpoint)
    frames: list | None = [] if args.video else None
    # A video records one rendering env; otherwise the trainer builds its evaluation envs itself.
    envs = make_envs(config.env, 1, config.trainer.vectorization, render_mode="rgb_array") if args.video else None
    result = trainer.evaluate(args.episodes, envs=envs, deterministic=args.deterministic, seed=args.seed, frames=frames)
    print(f"mean return over {args.episodes} episodes: {result.mean:.2f} +- {result.std:.2f}")
    if frames:
        try:
            print(f"video: {save_video(frames, args.video)}")
        except (ImportError, ValueError, RuntimeError, OSError) as error:
            raise CommandError(
                f"could not write {args.video} ({error}); .gif needs only Pillow, .mp4 needs imageio-ffmpeg"
            ) from error
    return 0


# ---------------------------------------------------------------------------- plot
def cmd_plot(args: argparse.Namespace) -> int:
    from rl_agents.plotting import plot_runs

    for run in args.run_dirs:
        if not (Path(run) / "metrics.csv").is_file():
            raise CommandError(f"{run}: no metrics.csv (is it a run directory?)")
        if (Path(run) / "config.yaml").is_file():
            load_yaml(Path(run) / "config.yaml")  # labels and groups come from it: refuse a broken one by name
    try:
        out = plot_runs([Path(run) for run in args.run_dirs], Path(args.out), metric=args.metric, smooth=args.smooth)
    except (ValueError, OSError) as error:  # an unknown image format, an unwritable --out, numbers that are not
        raise CommandError(f"cannot plot {', '.join(args.run_dirs)} to {args.out}: {error}") from error
    print(f"plot: {out}")
    return 0


# ---------------------------------------------------------------------------- describe
def cmd_describe(args: argparse.Namespace) -> int:
    from rl_agents.cli.describe import describe_trainer

    config = resolve_config(args)
    config.trainer.num_envs = min(config.trainer.num_envs, 2)
    Console(markup=False, emoji=False).print(describe_trainer(make_trainer(config), config))
    return 0


# ---------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    console = Console()
    agents = Table(title="agents")
    agents.add_column("name")
    agents.add_column("acts")
    agents.add_column("description")
    for name, cls in AGENTS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        agents.add_row(name, "yes" if cls.acts else "no", doc)
    console.print(agents)
    presets = Table(title="presets (rl-agents train --env ID [--agents NAMES])")
    presets.add_column("env")
    presets.add_column("agents")
    for name in list_presets():
        preset = load_yaml(preset_path(name))
        presets.add_row(str(preset.get("env", name)), str(preset.get("agents", "ppo")))
    console.print(presets)
    families = Table(title="environment families")
    families.add_column("family")
    families.add_column("installed")
    for family, module in (
        ("classic control (gymnasium)", "gymnasium"),
        ("MuJoCo", "mujoco"),
        ("MiniGrid", "minigrid"),
        ("Atari (ale-py)", "ale_py"),
    ):
        families.add_row(family, "yes" if importlib.util.find_spec(module) else "no")
    console.print(families)
    return 0
