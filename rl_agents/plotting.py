"""Learning-curve plots from ``metrics.csv`` files."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def read_curve(csv_path: str | Path, column: str = "episode/return_mean") -> tuple[list[float], list[float]]:
    steps: list[float] = []
    values: list[float] = []
    with Path(csv_path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(column):
                steps.append(float(row["global_step"]))
                values.append(float(row[column]))
    return steps, values


def _run_label_and_group(run_dir: Path) -> tuple[str, str]:
    """Runs whose configs differ only by seed share a group key."""
    import yaml

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return run_dir.name, str(run_dir)
    config = yaml.safe_load(config_path.read_text()) or {}
    label = f"{config.get('env', '?')} {config.get('agents', '?')}"
    config.pop("seed", None)
    return label, yaml.safe_dump(config, sort_keys=True)


def smoothed(values: list[float], window: int) -> list[float]:
    """Trailing moving average over up to ``window`` points (the first points average fewer)."""
    import numpy as np

    if window <= 1 or not values:
        return list(values)
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return list((cumulative[1:] - cumulative[starts]) / (np.arange(1, len(values) + 1) - starts))


def plot_runs(run_dirs: list[Path], out: str | Path, metric: str = "episode/return_mean", smooth: int = 10) -> Path:
    """Overlay runs; runs that differ only by seed are drawn as their mean with a min-max band.
    Each curve is a trailing moving average over ``smooth`` logged points."""
    import numpy as np

    groups: dict[str, tuple[str, list[tuple[list[float], list[float]]]]] = {}
    for run_dir in run_dirs:
        label, key = _run_label_and_group(Path(run_dir))
        steps, values = read_curve(Path(run_dir) / "metrics.csv", metric)
        groups.setdefault(key, (label, []))[1].append((steps, smoothed(values, smooth)))
    figure, axes = plt.subplots(figsize=(7, 4))
    labels_seen: dict[str, int] = {}
    for label, curves in groups.values():
        curves = [curve for curve in curves if curve[0]]
        if not curves:
            continue
        labels_seen[label] = labels_seen.get(label, 0) + 1
        shown = label if labels_seen[label] == 1 else f"{label} ({labels_seen[label]})"
        if len(curves) == 1:
            axes.plot(curves[0][0], curves[0][1], label=shown)
            continue
        end = min(steps[-1] for steps, _ in curves)
        start = max(steps[0] for steps, _ in curves)
        grid = np.linspace(start, end, 200)
        stacked = np.stack([np.interp(grid, steps, values) for steps, values in curves])
        line = axes.plot(grid, stacked.mean(axis=0), label=f"{shown} (mean of {len(curves)} seeds)")[0]
        axes.fill_between(grid, stacked.min(axis=0), stacked.max(axis=0), color=line.get_color(), alpha=0.2)
    axes.set_xlabel("environment steps")
    axes.set_ylabel(metric)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
