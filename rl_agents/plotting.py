"""Learning-curve plots from ``metrics.csv`` files."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(csv_path: str | Path, column: str = "episode/return_mean") -> tuple[list[float], list[float]]:
    steps: list[float] = []
    values: list[float] = []
    with Path(csv_path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get(column):
                steps.append(float(row["global_step"]))
                values.append(float(row[column]))
    return steps, values


def plot_learning_curves(runs: dict[str, str | Path], out: str | Path, column: str = "episode/return_mean", title: str = "") -> Path:
    """Plot ``column`` against environment steps for each labelled ``metrics.csv``; returns the PNG path."""
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, csv_path in runs.items():
        steps, values = read_curve(csv_path, column)
        axes.plot(steps, values, label=label)
    axes.set_xlabel("environment steps")
    axes.set_ylabel(column)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if len(runs) > 1:
        axes.legend()
    figure.tight_layout()
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
