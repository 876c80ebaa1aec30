"""``python -m benchmarks.zoo``: every shipped preset trained for its rl-zoo3 budget, then a final
evaluation, in a table against rl-zoo3's published scores (``benchmarks/zoo_scores.py``).

    python -m benchmarks.zoo                                  # every preset, seeds 1-3, full budget (long)
    python -m benchmarks.zoo --presets CartPole-v1 CartPole-v1.dqn --seeds 1 --budget-fraction 0.1
    python -m benchmarks.zoo --jobs 2 --write BENCHMARKS.md   # two runs at once; the table into BENCHMARKS.md

Each run trains the preset for ``steps * --budget-fraction`` env steps (rounded up to whole rollouts by
the Trainer) with seed 1..N, then evaluates ``trainer.evaluate(--eval-episodes)`` on fresh envs, as
rl-zoo3 evaluates: deterministic actions, sampled ones on MiniGrid and Atari (``samples_when_evaluated``).
Every finished run is appended at once to the results file (one JSON line); a rerun skips the (preset,
seed, budget fraction) runs already there, so an interrupted run loses only the runs in progress.
Presets whose env family is not installed are skipped with one line saying why.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from benchmarks.zoo_scores import ZooScore, published_score

RESULTS = Path(__file__).parent / "results" / "zoo.jsonl"
BEGIN, END = "<!-- zoo:begin -->", "<!-- zoo:end -->"
SECTION = "### rl-zoo3 presets (python -m benchmarks.zoo)"
NOT_ZOO_PREFIX = "MinAtar/"  # presets whose env rl-zoo3 never trained on: only when named


@dataclass(frozen=True)
class Preset:
    name: str  # <env> or <env>.<agent>, the file name without .yaml
    env: str
    agents: str
    steps: int  # the preset's budget: rl-zoo3's


@dataclass(frozen=True)
class RunSpec:
    preset: str
    seed: int
    budget_fraction: float
    eval_episodes: int


def preset_file(name: str) -> Path:
    return Path(str(resources.files("rl_agents.config") / "presets" / f"{name}.yaml"))


def shipped_presets() -> list[Preset]:
    from rl_agents.config import RunConfig, list_presets, load_yaml

    presets = []
    for name in list_presets():
        raw = load_yaml(preset_file(name))
        steps = int(raw.get("steps", RunConfig.steps))
        presets.append(
            Preset(name, str(raw.get("env", RunConfig.env)), str(raw.get("agents", RunConfig.agents)), steps)
        )
    return presets


def unavailable_reason(env_id: str) -> str | None:
    """Why ``env_id`` cannot be built here (its family not installed, an unknown id), or None."""
    from rl_agents.envs import EnvCreationError, make_envs

    try:
        make_envs(env_id, 1).close()
    except EnvCreationError as error:
        return str(error)
    return None


def budget_steps(preset_steps: int, fraction: float) -> int:
    return max(1, math.ceil(preset_steps * fraction))


def train_one(spec: RunSpec) -> dict[str, Any]:
    """Train one preset with one seed and evaluate it: the run's JSON record."""
    from rl_agents.config import RunConfig, config_from_dict, load_yaml
    from rl_agents.envs import samples_when_evaluated
    from rl_agents.training import make_trainer

    torch.set_num_threads(1)
    path = preset_file(spec.preset)
    raw = load_yaml(path)
    preset_steps = int(raw.get("steps", RunConfig.steps))
    raw.update(steps=budget_steps(preset_steps, spec.budget_fraction), seed=spec.seed)
    config = config_from_dict(raw, source=str(path))
    trainer = make_trainer(config)
    start = time.perf_counter()
    trainer.train(config.steps, progress=False)
    seconds = time.perf_counter() - start
    trainer.envs.close()
    start = time.perf_counter()
    deterministic = not samples_when_evaluated(config.env)  # as rl-zoo3 evaluates
    evaluation = trainer.evaluate(spec.eval_episodes, deterministic=deterministic)  # on fresh envs
    last20 = trainer.recent_return(20)
    return {
        "preset": spec.preset,
        "env": config.env,
        "agents": config.agents,
        "seed": spec.seed,
        "budget_fraction": spec.budget_fraction,
        "budget_steps": preset_steps,
        "steps": trainer.global_step,
        "eval_mean": evaluation.mean,
        "eval_std": evaluation.std,
        "eval_episodes": spec.eval_episodes,
        "last20": None if math.isnan(last20) else last20,
        "train_episodes": trainer.episodes.num_episodes,
        "seconds": round(seconds, 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def attempt(spec: RunSpec) -> tuple[RunSpec, dict[str, Any] | None, str | None]:
    """``train_one``, a failure returned as its message (one failed run does not stop the others)."""
    try:
        return spec, train_one(spec), None
    except Exception as error:
        return spec, None, f"{type(error).__name__}: {error}"


def read_records(path: Path) -> list[dict[str, Any]]:
    """The results file's records; a line cut short by a killed process is ignored."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_short = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a") as handle:
        handle.write(("\n" if cut_short else "") + json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def same_run(record: dict[str, Any], preset: str, seed: int, fraction: float) -> bool:
    return (
        record.get("preset") == preset
        and record.get("seed") == seed
        and math.isclose(float(record.get("budget_fraction", -1)), fraction, rel_tol=1e-9)
    )


def pending(specs: Iterable[RunSpec], records: list[dict[str, Any]]) -> list[RunSpec]:
    return [s for s in specs if not any(same_run(r, s.preset, s.seed, s.budget_fraction) for r in records)]


def finished_runs(specs: list[RunSpec], jobs: int) -> Iterator[tuple[RunSpec, dict[str, Any] | None, str | None]]:
    """Each run's outcome as it finishes: here when ``jobs`` is 1, else in ``jobs`` spawned processes
    (a fresh one per run)."""
    if jobs == 1:
        yield from map(attempt, specs)
        return
    with multiprocessing.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
        yield from pool.imap_unordered(attempt, specs)


def run_line(record: dict[str, Any]) -> str:
    last20 = "-" if record["last20"] is None else f"{record['last20']:.1f}"
    return (
        f"{record['preset']:<32} seed {record['seed']}  eval {record['eval_mean']:10.2f}  last-20 {last20:>9}  "
        f"steps {record['steps']:>10,}  {record['seconds']:8.1f} s"
    )


def run_all(specs: list[RunSpec], jobs: int, results: Path) -> None:
    for spec, record, error in finished_runs(specs, jobs):
        if record is None:
            print(f"{spec.preset:<32} seed {spec.seed}  FAILED: {error}", flush=True)
            continue
        append_record(results, record)
        print(run_line(record), flush=True)


# ---------------------------------------------------------------------------- the table
def short_steps(steps: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if steps >= size:
            return f"{steps / size:g}{suffix}"
    return str(steps)


def zoo_cell(score: ZooScore | None, env: str) -> str:
    if score is None:
        return "-"
    renamed = f"{score.zoo_env}, " if score.zoo_env != env else ""
    return f"{score.mean:.1f} ± {score.std:.1f} ({renamed}{short_steps(score.n_timesteps)})"


def seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}"


def table_row(preset: Preset, records: list[dict[str, Any]], seeds: int) -> str:
    zoo = zoo_cell(published_score(preset.agents, preset.env), preset.env)
    if not records:
        return f"| {preset.env} | {preset.agents} | not run | 0 of {seeds} | - | - | {zoo} | - |"
    steps = max(r["steps"] for r in records)
    share = f"{steps / preset.steps:.0%}" if steps / preset.steps >= 0.01 else f"{steps / preset.steps:.2%}"
    last20 = [r["last20"] for r in records if r["last20"] is not None]
    return (
        f"| {preset.env} | {preset.agents} | {steps:,} ({share} of {preset.steps:,}) | "
        f"{len(records) if len(records) == seeds else f'{len(records)} of {seeds}'} | "
        f"{mean_std([r['eval_mean'] for r in records])} | {mean_std(last20) if last20 else '-'} | {zoo} | "
        f"{seconds(statistics.mean(r['seconds'] for r in records))} |"
    )


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores"


def table(
    presets: list[Preset],
    records: list[dict[str, Any]],
    *,
    seeds: int,
    fraction: float,
    eval_episodes: int,
    command: str,
    skipped: list[str],
) -> str:
    """The markdown block: the note (date, machine, command, skipped presets) and one row per preset."""
    rows = []
    for preset in presets:
        runs = [r for r in records if any(same_run(r, preset.name, seed, fraction) for seed in range(1, seeds + 1))]
        rows.append(table_row(preset, runs, seeds))
    note = [
        f"{datetime.date.today().isoformat()}, {machine()}, torch threads 1 per run: `{command}`.",
        f"Eval: {eval_episodes} episodes per seed on fresh envs, deterministic actions (sampled on MiniGrid and "
        "Atari, as rl-zoo3 evaluates them) "
        "after training; mean ± std over seeds (std of the seeds' means). Last-20: the mean return of the last 20 "
        "training episodes. s / run: seconds of the training call, mean over seeds.",
        "rl-zoo3: the published mean ± std of one trained agent (DLR-RM/rl-baselines3-zoo `benchmark.md`; its env id "
        'where it is an older version of ours, and its training budget); "-": no published score for that env and '
        "algorithm (compositions such as ppo+rnd, envs the zoo did not train on such as MiniGrid-DoorKey-8x8-v0).",
        "Skipped: " + ("; ".join(skipped) if skipped else "none") + ".",
    ]
    if any(p.env.endswith("NoFrameskip-v4") or p.env.startswith("ALE/") for p in presets):
        note.append(
            "Atari: eval returns sum the sign-clipped rewards the agent trains on, last-20 the game score (as "
            "rl-zoo3's, which are game scores from stochastic actions)."
        )
    header = [
        "| env | agents | steps (of the preset's) | seeds | eval mean ± std | last-20 | rl-zoo3 | s / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join([*note, "", *header, *rows])


def with_block(text: str, block: str) -> str:
    """``text`` with ``block`` between the zoo markers: replacing what was there, else in a new section at
    the end of the ``## Results`` section (at the end of the file when there is none)."""
    marked = f"{BEGIN}\n{block}\n{END}"
    start = text.find(BEGIN)
    end = text.find(END, start) if start >= 0 else -1
    if end >= 0:
        return text[:start] + marked + text[end + len(END) :]
    section = f"{SECTION}\n\n{marked}\n"
    lines = text.splitlines(keepends=True)
    headings, fenced = [], False
    for index, line in enumerate(lines):
        fenced = fenced != line.startswith("```")
        if not fenced and line.startswith("## "):
            headings.append((index, line.strip()))
    results = [index for index, heading in headings if heading == "## Results"]
    if not results:
        return text.rstrip("\n") + f"\n\n## Results\n\n{section}"
    after = [index for index, _ in headings if index > results[0]]
    if not after:
        return text.rstrip("\n") + f"\n\n{section}"
    head = "".join(lines[: after[0]]).rstrip("\n")
    return f"{head}\n\n{section}\n{''.join(lines[after[0] :])}"


def write_table(path: Path, block: str) -> None:
    path.write_text(with_block(path.read_text() if path.is_file() else "", block))


# ---------------------------------------------------------------------------- the command
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", metavar="ID", help="only presets of these env ids")
    parser.add_argument("--presets", nargs="+", metavar="NAME", help="only these presets (<env> or <env>.<agent>)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N (default 3)")
    parser.add_argument("--budget-fraction", type=float, default=1.0, help="of each preset's steps (default 1.0)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="final evaluation episodes (default 10)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at once, each in its own process")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"JSON lines of finished runs ({RESULTS.name})")
    parser.add_argument("--write", type=Path, metavar="MARKDOWN", help="write the table there (e.g. BENCHMARKS.md)")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="train nothing: the table of the runs already recorded (a row says how many of the seeds ran)",
    )
    args = parser.parse_args(argv)
    for name in ("seeds", "eval_episodes", "jobs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not (math.isfinite(args.budget_fraction) and args.budget_fraction > 0):
        parser.error("--budget-fraction must be a number > 0")
    return args


def select(presets: list[Preset], envs: list[str] | None, names: list[str] | None) -> list[Preset]:
    unknown = sorted(set(names or []) - {p.name for p in presets})
    if unknown:
        raise SystemExit(f"unknown presets: {', '.join(unknown)} (shipped: {', '.join(p.name for p in presets)})")
    chosen = [p for p in presets if (envs is None or p.env in envs) and (names is None or p.name in names)]
    if envs is None and names is None:  # MinAtar is not an rl-zoo3 benchmark, and its presets train 10M frames
        minatar = [p.name for p in chosen if p.env.startswith(NOT_ZOO_PREFIX)]
        if minatar:
            print(f"not trained by default (no rl-zoo3 score; name them with --presets): {', '.join(minatar)}")
        chosen = [p for p in chosen if not p.env.startswith(NOT_ZOO_PREFIX)]
    if not chosen:
        raise SystemExit("no preset matches --envs / --presets")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.zoo", *(sys.argv[1:] if argv is None else argv)])
    presets, skipped, reasons = [], [], {}
    for preset in select(shipped_presets(), args.envs, args.presets):
        reason = reasons.setdefault(preset.env, unavailable_reason(preset.env))
        if reason is None:
            presets.append(preset)
        else:
            print(f"skipping {preset.name}: {reason}", flush=True)
            skipped.append(f"{preset.name} ({reason})")
    specs = [
        RunSpec(p.name, seed, args.budget_fraction, args.eval_episodes)
        for seed in range(1, args.seeds + 1)
        for p in presets
    ]
    todo = pending(specs, read_records(args.results))
    if len(todo) < len(specs):
        print(f"{len(specs) - len(todo)} of {len(specs)} runs already in {args.results}: skipped", flush=True)
    if args.table_only:
        print(f"--table-only: {len(todo)} runs not trained", flush=True)
    else:
        run_all(todo, args.jobs, args.results)
    block = table(
        presets,
        read_records(args.results),
        seeds=args.seeds,
        fraction=args.budget_fraction,
        eval_episodes=args.eval_episodes,
        command=command,
        skipped=skipped,
    )
    print(block)
    if args.write is not None:
        write_table(args.write, block)
        print(f"table written to {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
