"""Bit flipping: DQN alone against DQN + HER as the number of bits grows (Andrychowicz et al. 2017, Fig. 1).

Every run uses the shipped preset ``rl_agents_BitFlip-v0.yaml`` (DQN after the HER paper's bit-flipping
setup; see its comments) with ``n_bits`` set, for ``--episodes-per-bit`` x n steps (the same number of
episode lengths at every n: 1500 x 15 = 22,500 steps at 15 bits). DQN alone is the same config with
``agents: dqn`` (no relabeling), everything else equal. Runs go ``--jobs`` at a time in separate
processes (one torch thread each); each writes one JSON line to ``--out``, and a rerun skips the runs
already there.

Measured per run:
* the success rate of the training episodes (an episode succeeds when it ends by reaching the goal,
  i.e. its return is above -n) in ``--bins`` consecutive bins of equal length, the paper's curve;
* the final success rate of 100 greedy evaluation episodes (epsilon 0) on fresh seeded envs.

The table gives, per n and composition, the mean (and each seed's) final evaluation success and the
last training bin's success; ``--plot`` draws success vs training episodes.

    python -m benchmarks.bit_flip --bits 8 15 25 40 --seeds 3 --jobs 2
    python -m benchmarks.bit_flip --table-only --plot benchmarks/results/bit_flip.png
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

COMPOSITIONS = ("dqn", "dqn+her")
DEFAULT_OUT = Path("benchmarks/results/bit_flip.jsonl")


def run_one(bits: int, agents: str, seed: int, episodes_per_bit: int, bins: int) -> dict[str, Any]:
    """Train one composition on ``bits`` bits (in this process) and measure it."""
    import torch

    torch.set_num_threads(1)
    from rl_agents.config import config_from_dict, load_preset, with_num_envs
    from rl_agents.envs import make_envs
    from rl_agents.evaluation import evaluate_agent
    from rl_agents.training import make_trainer

    raw = load_preset("rl_agents/BitFlip-v0")
    raw.update(agents=agents, seed=seed, steps=episodes_per_bit * bits, env_kwargs={"n_bits": bits})
    if agents == "dqn":
        raw.pop("her", None)
    config = with_num_envs(config_from_dict(raw))
    trainer = make_trainer(config)
    trainer.episodes.window = None  # keep every episode's return
    start = time.perf_counter()
    trainer.train(config.steps, progress=False)
    seconds = time.perf_counter() - start
    successes = np.asarray(trainer.episodes.returns) > -bits
    curve = [float(part.mean()) for part in np.array_split(successes, bins) if len(part)]
    evaluation = evaluate_agent(
        trainer.acting, make_envs("rl_agents/BitFlip-v0", 1, n_bits=bits), 100, seed=10_000 + seed
    )
    return {
        "bits": bits,
        "agents": agents,
        "seed": seed,
        "steps": config.steps,
        "episodes": int(len(successes)),
        "train_success_bins": curve,
        "eval_success": float(np.mean(np.asarray(evaluation.returns) > -bits)),
        "seconds": round(seconds, 1),
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def table(records: list[dict[str, Any]]) -> str:
    """Markdown: per n, each composition's final greedy success (mean, per seed) and last training bin."""
    lines = [
        "| bits | DQN eval success (seeds) | DQN+HER eval success (seeds) | DQN / DQN+HER last training bin | steps |",
        "|---|---|---|---|---|",
    ]
    for bits in sorted({record["bits"] for record in records}):
        cells, last_bins, steps = [], [], ""
        for agents in COMPOSITIONS:
            runs = sorted((r for r in records if r["bits"] == bits and r["agents"] == agents), key=lambda r: r["seed"])
            if not runs:
                cells.append("not run")
                last_bins.append("-")
                continue
            evals = [r["eval_success"] for r in runs]
            cells.append(f"{np.mean(evals):.2f} ({', '.join(f'{value:.2f}' for value in evals)})")
            last_bins.append(f"{np.mean([r['train_success_bins'][-1] for r in runs]):.2f}")
            steps = f"{runs[0]['steps']:,}"
        lines.append(f"| {bits} | {cells[0]} | {cells[1]} | {' / '.join(last_bins)} | {steps} |")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bit_counts = sorted({record["bits"] for record in records})
    figure, axes = plt.subplots(1, len(bit_counts), figsize=(4 * len(bit_counts), 3.2), squeeze=False)
    for axis, bits in zip(axes[0], bit_counts):
        for agents in COMPOSITIONS:
            runs = [r for r in records if r["bits"] == bits and r["agents"] == agents]
            if not runs:
                continue
            curves = np.array([r["train_success_bins"] for r in runs])
            episodes = np.linspace(0, np.mean([r["episodes"] for r in runs]), curves.shape[1] + 1)[1:]
            mean = curves.mean(axis=0)
            axis.plot(episodes, mean, label=f"{agents.upper()} ({len(runs)} seeds)")
            axis.fill_between(episodes, curves.min(axis=0), curves.max(axis=0), alpha=0.2)
        axis.set_title(f"{bits} bits")
        axis.set_xlabel("training episodes")
        axis.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("success rate (training)")
    axes[0][-1].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 15, 25, 40])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    parser.add_argument("--agents", nargs="+", default=list(COMPOSITIONS), choices=COMPOSITIONS)
    parser.add_argument("--episodes-per-bit", type=int, default=1500)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--one", nargs=3, metavar=("BITS", "AGENTS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:  # a worker process: one run, its record on stdout
        record = run_one(int(args.one[0]), args.one[1], int(args.one[2]), args.episodes_per_bit, args.bins)
        print("RECORD " + json.dumps(record), flush=True)
        return 0
    if not args.table_only:
        _run_missing(args)
    records = read_records(args.out)
    print(table(records))
    if args.plot is not None:
        plot(records, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _run_missing(args: argparse.Namespace) -> None:
    done = {(r["bits"], r["agents"], r["seed"]) for r in read_records(args.out)}
    todo = [
        (bits, agents, seed)
        for bits in sorted(args.bits, reverse=True)  # the longest first, so the jobs end together
        for seed in range(1, args.seeds + 1)
        for agents in args.agents
        if (bits, agents, seed) not in done
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def launch(run: tuple[int, str, int]) -> None:
        bits, agents, seed = run
        command = [sys.executable, "-m", "benchmarks.bit_flip", "--one", str(bits), agents, str(seed)]
        command += ["--episodes-per-bit", str(args.episodes_per_bit), "--bins", str(args.bins)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [line for line in result.stdout.splitlines() if line.startswith("RECORD ")]
        if result.returncode != 0 or not lines:
            print(f"run {run} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}", file=sys.stderr)
            return
        record = json.loads(lines[-1].removeprefix("RECORD "))
        with args.out.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(f"{bits} bits {agents} seed {seed}: eval success {record['eval_success']:.2f} ({record['seconds']} s)")

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(launch, todo))


if __name__ == "__main__":
    raise SystemExit(main())
