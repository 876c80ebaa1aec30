"""Metric sinks: CSV, TensorBoard, and an in-memory history. Each receives one flat dict per update."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Protocol


class Logger(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """Writes ``metrics.csv``; when a new metric appears the file is rewritten with the wider header."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] = []
        self.rows: list[dict[str, float]] = []
        if self.path.exists():  # resuming: keep what earlier runs wrote
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or [])
                self.rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in reader]

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"global_step": float(step), **metrics}
        self.rows.append(row)
        new_columns = [key for key in row if key not in self.columns]
        if new_columns:
            self.columns += new_columns
            self._rewrite()
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, self.columns).writerow(_formatted(row))

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(_formatted(row) for row in self.rows)
        tmp.replace(self.path)

    def close(self) -> None:
        pass


def _formatted(row: dict[str, float]) -> dict[str, str]:
    return {key: ("" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)) for key, value in row.items()}


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()
