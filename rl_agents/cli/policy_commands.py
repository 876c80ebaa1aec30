"""``rl-agents eval`` and ``rl-agents export``: what a trained run's policy does, and the policy as a file.

Both load only the acting agent (:class:`rl_agents.Policy`) from the run's newest checkpoint: no
training environments are made and no replay buffer is allocated. ``eval`` then makes fresh
environments like the run's (its run config, or how ``make_envs`` built them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from rl_agents.checkpointing import DamagedCheckpointError
from rl_agents.cli.errors import CommandError
from rl_agents.envs import samples_when_evaluated
from rl_agents.policy import Policy
from rl_agents.policy.export import FORMATS, ExportError

AddTrustCode = Callable[[argparse.ArgumentParser, str], None]  # main's --trust-code, shared by the commands


def add_eval_command(commands: argparse._SubParsersAction, add_trust_code: AddTrustCode) -> None:
    evaluate = commands.add_parser("eval", help="evaluate a trained run")
    evaluate.add_argument("run_dir", help="a run directory, a checkpoints directory or one checkpoint")
    evaluate.add_argument("--episodes", type=int, default=10)
    how = evaluate.add_mutually_exclusive_group()
    how.add_argument(
        "--deterministic",
        action="store_true",
        help="greedy / mean actions (the default, as SB3's evaluate_policy, except on MiniGrid and Atari)",
    )
    how.add_argument(
        "--stochastic",
        action="store_true",
        help="sample actions from the policy (the default on MiniGrid and Atari, as rl-zoo3 evaluates them)",
    )
    evaluate.add_argument("--video", help="write env 0 as out.gif or out.mp4")
    evaluate.add_argument("--seed", type=int, default=12345)
    _add_skip_damaged(evaluate, "evaluates")
    add_trust_code(evaluate, "")
    evaluate.set_defaults(handler=cmd_eval)


def add_export_command(commands: argparse._SubParsersAction, add_trust_code: AddTrustCode) -> None:
    export = commands.add_parser(
        "export", help="write a run's deterministic policy as ONNX or TorchScript, checked against the policy"
    )
    export.add_argument("run_dir", help="a run directory, a checkpoints directory or one checkpoint")
    export.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    export.add_argument("--out", help="the file to write (default RUN/policy.onnx or RUN/policy.pt)")
    export.add_argument(
        "--check",
        type=int,
        default=1000,
        metavar="N",
        help="random observations on which the file must act as the policy does (default 1000; 0: no check)",
    )
    _add_skip_damaged(export, "exports")
    add_trust_code(export, "")
    export.set_defaults(handler=cmd_export)


def _add_skip_damaged(command: argparse.ArgumentParser, verb: str) -> None:
    command.add_argument(
        "--skip-damaged",
        action="store_true",
        help=f"when the newest checkpoint is damaged, {verb} the newest intact one",
    )


# ---------------------------------------------------------------------------- eval
def cmd_eval(args: argparse.Namespace) -> int:
    from rl_agents.evaluation import evaluate_agent

    if args.episodes < 1:
        raise CommandError("--episodes must be >= 1")
    if args.seed < 0:
        raise CommandError(f"--seed must be >= 0, got {args.seed}")
    policy = _load_policy(args, "evaluates")
    # A video records one rendering env; otherwise as many envs as the run had, up to one per episode.
    recipe = policy.env_recipe()
    envs = (
        policy.make_env(1, render_mode="rgb_array")
        if args.video
        else policy.make_env(min(recipe.num_envs, args.episodes))
    )
    frames: list | None = [] if args.video else None
    deterministic = args.deterministic or not (args.stochastic or samples_when_evaluated(recipe.env_id))
    try:
        result = evaluate_agent(
            policy.agent,
            envs,
            args.episodes,
            deterministic=deterministic,
            seed=args.seed,
            device=policy.device,
            frames=frames,
        )
    finally:
        envs.close()
    how = (
        "deterministic actions; --stochastic samples"
        if deterministic
        else "sampled actions, --stochastic"
        if args.stochastic
        else "sampled actions, as rl-zoo3 evaluates MiniGrid and Atari policies; --deterministic for greedy ones"
    )
    print(f"mean return over {args.episodes} episodes: {result.mean:.2f} +- {result.std:.2f} ({how})")
    print(f"checkpoint: {policy.checkpoint} (step {policy.global_step})")
    if frames:
        from rl_agents.video import save_video

        try:
            print(f"video: {save_video(frames, args.video)}")
        except (ImportError, ValueError, RuntimeError, OSError) as error:
            raise CommandError(
                f"could not write {args.video} ({error}); .gif needs only Pillow, .mp4 needs imageio-ffmpeg"
            ) from error
    return 0


# ---------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    if args.check < 0:
        raise CommandError(f"--check must be >= 0, got {args.check}")
    policy = _load_policy(args, "exports")
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / f"policy{FORMATS[args.format]}"
    try:
        result = policy.export(out, args.format, check=args.check)
    except ExportError as error:
        raise CommandError(str(error)) from error
    print(f"exported agent {policy.agent.name!r} of {policy.checkpoint} (step {policy.global_step})")
    print(f"to {result.summary()}")
    return 0


# ---------------------------------------------------------------------------- loading
def _load_policy(args: argparse.Namespace, verb: str) -> Policy:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise CommandError(f"run directory {str(run_dir)!r} does not exist")

    def note_skip(path: Path, reason: str) -> None:
        print(f"skipping damaged checkpoint {path.name}: {reason}", file=sys.stderr)

    try:
        return Policy.load(
            run_dir,
            torch.device("cpu"),
            trust_code=args.trust_code,
            skip_damaged=args.skip_damaged,
            on_skip=note_skip,
        )
    except DamagedCheckpointError as error:
        hint = f"; --skip-damaged {verb} the newest intact one" if error.older else ""
        raise CommandError(f"the newest checkpoint is damaged: {error}{hint}") from None
