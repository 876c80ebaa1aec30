"""Digests of seeded runs, held fixed so that a refactor cannot change behaviour by accident.

Each digest covers a run made through the command line: the final parameters and buffers of every
agent (read back from the run's last checkpoint) and ``metrics.csv`` without its wall-clock columns.
``python -m tests.digests`` prints the current digests; ``tests/test_digests.py`` compares them with
the stored ones, which were recorded on the commit before the architecture refactor (issue 13).
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import tempfile
from pathlib import Path

import torch

# Columns that measure the machine, not the run.
TIMING_COLUMNS = frozenset({"charts/wall_time", "charts/steps_per_second"})

# name -> command-line arguments of `rl-agents train` (each run gets its own --out)
RUNS: dict[str, list[str]] = {
    "ppo+rnd-cartpole-20k": ["--env", "CartPole-v1", "--agents", "ppo+rnd", "--steps", "20000", "--seed", "3"],
    "dqn+rnd-cartpole-10k": ["--env", "CartPole-v1", "--agents", "dqn+rnd", "--steps", "10000", "--seed", "3"],
    "sac-pendulum-5k": ["--env", "Pendulum-v1", "--agents", "sac", "--steps", "5000", "--seed", "3"],
}


def parameters_digest(agents: list[torch.nn.Module]) -> str:
    """SHA-256 over every agent's state_dict: names, dtypes, shapes and bytes, in a fixed order."""
    digest = hashlib.sha256()
    for agent in sorted(agents, key=lambda a: a.name):
        for key, value in sorted(agent.state_dict().items()):
            if not isinstance(value, torch.Tensor):
                continue
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{agent.name}/{key}:{tensor.dtype}:{list(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def metrics_digest(path: Path) -> str:
    """SHA-256 of metrics.csv as written, with the wall-clock columns left out."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [index for index, column in enumerate(rows[0]) if column not in TIMING_COLUMNS]
    out = io.StringIO()
    writer = csv.writer(out)
    for row in rows:
        writer.writerow([row[index] for index in keep])
    return hashlib.sha256(out.getvalue().encode()).hexdigest()


def run_digests(name: str, workdir: Path) -> tuple[str, str]:
    """(parameters digest, metrics digest) of one of :data:`RUNS`, trained in ``workdir``."""
    from rl_agents import Trainer
    from rl_agents.cli import main

    run_dir = workdir / name
    code = main(["train", *RUNS[name], "--out", str(run_dir), "--quiet"])
    if code != 0:
        raise RuntimeError(f"rl-agents train {' '.join(RUNS[name])} exited with {code}")
    trainer = Trainer.load(run_dir / "checkpoints")
    try:
        return parameters_digest(trainer.agents), metrics_digest(run_dir / "metrics.csv")
    finally:
        trainer.envs.close()


if __name__ == "__main__":
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(RUNS)
    with tempfile.TemporaryDirectory() as tmp:
        for run in names:
            print(run, *run_digests(run, Path(tmp)))
