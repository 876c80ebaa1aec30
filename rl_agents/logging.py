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
            self.columns, self.rows, damaged = _read_rows(self.path)
            if damaged:  # e.g. a line cut short by a killed process: rewrite the file without it
                self._rewrite()

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

    def truncate(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a resumed run logs those steps again)."""
        kept = [row for row in self.rows if row.get("global_step", 0.0) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            writer.writerows(_formatted(row) for row in self.rows)
        tmp.replace(self.path)  # atomic: a killed process leaves the old file or the new one

    def close(self) -> None:
        pass


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, float]], bool]:
    """(columns, rows, whether damaged lines were dropped) of a metrics.csv, tolerating a last line
    cut short and rows that do not parse."""
    text = path.read_text(encoding="utf-8", errors="replace")
    damaged = bool(text) and not text.endswith("\n")
    if damaged:  # the last line was being written when the process died
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(text.splitlines())
    columns = list(reader.fieldnames or [])
    rows = []
    for row in reader:
        try:
            if None in row or "global_step" not in row or row["global_step"] in ("", None):
                raise ValueError("wrong number of fields")
            rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
        except (TypeError, ValueError):
            damaged = True
    return columns, rows, damaged


def _formatted(row: dict[str, float]) -> dict[str, str]:
    return {
        key: ("" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value))
        for key, value in row.items()
    }


class TensorBoardLogger:
    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()
