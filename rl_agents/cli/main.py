"""The ``rl-agents`` command: train, eval, export, plot, describe, list."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from rl_agents.checkpointing import CheckpointError
from rl_agents.cli.errors import CommandError
from rl_agents.cli.policy_commands import add_eval_command, add_export_command
from rl_agents.cli.run_config import resolve_config
from rl_agents.cli.run_lock import RunLockedError
from rl_agents.cli.train import cmd_train
from rl_agents.config import ConfigError, list_presets, load_yaml, preset_path
from rl_agents.config.compositions import COMPOSITIONS
from rl_agents.config.registry import AgentLookupError, registered_agents, resolve_agent_class
from rl_agents.core.agent import CompositionError, ContractError
from rl_agents.core.agent_state import UnsavedStateError
from rl_agents.envs import EnvCreationError
from rl_agents.training import make_trainer
from rl_agents.training.distributed import RayUnavailableError
from rl_agents.training.interrupts import Interrupted
from rl_agents.training.run_records import UnrecordableAgentError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CompositionError,
    ContractError,
    EnvCreationError,
    FileNotFoundError,
    RayUnavailableError,
    CheckpointError,
    CommandError,
    RunLockedError,
    UnsavedStateError,
    UnrecordableAgentError,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _import_from_working_directory()
    try:
        with warnings_once(show_all=args.debug):
            return int(args.handler(args) or 0)
    except Interrupted as interrupted:  # a second Ctrl-C / SIGTERM while stopping: leave without saving
        print(f"{interrupted}: exiting without saving", file=sys.stderr)
        return interrupted.exit_status
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
        print(f"rl-agents: error: {_one_line(_user_message(error))}", file=sys.stderr)
        return 2


def _import_from_working_directory() -> None:
    """As ``python -m`` does: the modules a command line names (``--agents ppo+my_agents:Bonus``,
    ``--env my_envs:Corridor-v0``) are found in the current directory too, where the user keeps them."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


@contextlib.contextmanager
def warnings_once(show_all: bool = False) -> Iterator[None]:
    """Library warnings (gymnasium's "out of date" env ids, deprecations) as one plain line each on
    stderr, each text once per command; ``show_all`` (--debug) leaves Python's own display alone."""
    if show_all:
        yield
        return
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        text = _one_line(ANSI_ESCAPE.sub("", str(message))).removeprefix("WARN: ")
        if text not in shown:
            shown.add(text)
            print(f"rl-agents: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # gymnasium colours its warnings


def _is_user_error(error: Exception) -> bool:
    """Errors the user can act on: bad input, a damaged or unwritable file, a locked run."""
    return isinstance(error, USER_ERRORS) or (isinstance(error, OSError) and error.filename is not None)


def _user_message(error: Exception) -> str:
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"  # a full disk, no permission, a read-only file system
    return str(error)


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
    train.add_argument(
        "--agents", help="agents joined by '+': names (ppo+rnd) or your own classes (ppo+my_pkg.bonus:CountBonus)"
    )
    train.add_argument("--env", help="environment id (or my_module:EnvId); its preset is used when one ships")
    _add_env_kwarg(train)
    train.add_argument("--steps", type=_number, help="total environment steps (1e6 accepted)")
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=["cpu", "cuda", "auto"])
    train.add_argument("--num-envs", type=int)
    train.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="e.g. ppo.ent_coef=0.02"
    )
    train.add_argument("--out", help="run directory (default runs/<env>_<agents>_s<seed>_<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its newest checkpoint")
    train.add_argument(
        "--skip-damaged",
        action="store_true",
        help="with --resume: when the newest checkpoints are damaged, resume from the newest intact one",
    )
    _add_trust_code(train, "with --resume: ")
    train.add_argument(
        "--checkpoints", type=int, help="number of periodic checkpoints over the run (default 10; kept on --resume)"
    )
    train.add_argument(
        "--video-every",
        type=_number,
        metavar="STEPS",
        help="every STEPS env steps, record one deterministic episode as RUN/videos/step_<STEP>.mp4 (kept on --resume)",
    )
    train.add_argument(
        "--stop-at-return",
        type=float,
        metavar="RETURN",
        help="stop once the mean return of the last 20 episodes reaches RETURN, saying when (kept on --resume)",
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

    add_eval_command(commands, _add_trust_code)
    add_export_command(commands, _add_trust_code)

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
    _add_env_kwarg(describe)
    describe.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    describe.set_defaults(handler=cmd_describe)

    listing = commands.add_parser("list", help="list agents, presets and installed environment families")
    listing.set_defaults(handler=cmd_list)
    for sub in (train, plot, describe, listing, *(commands.choices[name] for name in ("eval", "export"))):
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return parser


def _add_env_kwarg(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--env-kwarg",
        dest="env_kwargs",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument of the env's constructor (value parsed as YAML), e.g. max_episode_steps=200",
    )


def _add_trust_code(command: argparse.ArgumentParser, when: str) -> None:
    command.add_argument(
        "--trust-code",
        "--trust-agents",
        dest="trust_code",
        action="store_true",
        help=f"{when}import the agent classes and env modules the run names by import path "
        "(module:Class); importing runs their code, so only for runs you trust",
    )


def _number(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


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
    Console(markup=False, emoji=False).print(describe_trainer(make_trainer(config), config))
    return 0


# ---------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    console = Console()
    agents = Table(title="agents (--agents NAME+NAME, or your own: --agents ppo+my_pkg.module:Class)")
    for column in ("name", "acts", "from", "class", "description"):
        agents.add_column(column)
    for registered in registered_agents():
        try:
            cls = resolve_agent_class(registered.name)
        except AgentLookupError as error:  # a broken plugin is listed with the reason, not fatal
            agents.add_row(registered.name, "?", registered.origin, registered.target, f"cannot be loaded: {error}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        agents.add_row(registered.name, "yes" if cls.acts else "no", registered.origin, registered.target, doc)
    console.print(agents)
    compositions = Table(title="named compositions (--agents NAME, combinable: --agents rainbow+rnd)")
    for column in ("name", "agents", "settings"):
        compositions.add_column(column)
    for name, composition in COMPOSITIONS.items():
        compositions.add_row(name, composition.agents, composition.source)
    console.print(compositions)
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
        ("Box2D (LunarLander, BipedalWalker)", "Box2D"),
        ("MinAtar (MinAtar/Breakout-v1, ...)", "minatar"),
        ("POPGym (popgym-*)", "popgym"),
        ("BitFlip (rl_agents/BitFlip-v0, goal-conditioned, for HER)", "rl_agents.envs.bit_flip"),
        ("Gymnasium-Robotics (FetchReach-v4, ...; goal-conditioned)", "gymnasium_robotics"),
    ):
        families.add_row(family, "yes" if importlib.util.find_spec(module) else "no")
    console.print(families)
    return 0
