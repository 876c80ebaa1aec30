"""Metric sinks: CSV, TensorBoard, and an in-memory history. Each receives one flat dict per update."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TextIO


class Logger(Protocol):
    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class CSVLogger:
    """Writes ``metrics.csv`` a line per row, keeping only its columns and a few counts in memory, so a
    run of any length needs the same memory. When a new metric appears the file is rewritten once
    with the wider header, streamed from the old file into a temporary one that then replaces it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns: list[str] = []
        self.num_rows = 0
        self._max_step = -math.inf  # the largest global_step in the file (NaN as +inf): what truncate drops
        # How many leading rows an earlier process wrote. A rewrite writes those from their numbers as
        # read back (an integer "5" becomes "5.0") and the rows logged here as they were written: the
        # bytes of a logger that kept every row in memory since it was created.
        self._earlier_rows = 0
        if self.path.exists():  # resuming: keep what earlier runs wrote
            self.columns, self._earlier_rows, self._max_step, damaged = _scan(self.path)
            self.num_rows = self._earlier_rows
            if damaged:  # e.g. a line cut short by a killed process: rewrite the file without it
                try:
                    self._rewrite()
                except OSError as error:
                    raise _naming(error, self.path) from error

    def log(self, step: int, metrics: dict[str, float]) -> None:
        try:
            self._log(step, metrics)
        except OSError as error:  # a full disk, no permission: say which file (a write error may not)
            raise _naming(error, self.path) from error

    def _log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"global_step": float(step), **metrics}
        new_columns = [key for key in row if key not in self.columns]
        if new_columns:
            self.columns += new_columns
            self._rewrite(new_row=row)
        else:
            with self.path.open("a", newline="") as handle:
                csv.DictWriter(handle, self.columns).writerow(_formatted(row))
            self.num_rows += 1
            self._max_step = max(self._max_step, _step_value(row["global_step"]))

    def truncate(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a resumed run logs those steps again)."""
        if not self._max_step <= step:
            try:
                self._rewrite(keep_to=step)
            except OSError as error:
                raise _naming(error, self.path) from error

    def _rewrite(self, keep_to: float | None = None, new_row: dict[str, Any] | None = None) -> None:
        """Rewrite the file with the current columns, without damaged rows (and those after
        ``keep_to``), with ``new_row`` at the end; streamed, so memory does not grow with the file."""
        tmp = self.path.with_suffix(".csv.tmp")
        try:
            self._rewrite_into(tmp, keep_to, new_row)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no partial file left behind; metrics.csv is as it was
            raise

    def _rewrite_into(self, tmp: Path, keep_to: float | None, new_row: dict[str, Any] | None) -> None:
        kept = earlier = 0
        max_step = -math.inf
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writeheader()
            for index, row in enumerate(self._stored_rows()):
                if index < self._earlier_rows:
                    parsed = _parsed(row)
                    if parsed is None:
                        continue
                    step, written = parsed["global_step"], _formatted(parsed)
                else:  # logged by this process: always whole, global_step a number
                    step, written = _step_value(row["global_step"]), row
                if keep_to is not None and not step <= keep_to:
                    continue
                writer.writerow(written)
                kept, earlier = kept + 1, earlier + (index < self._earlier_rows)
                max_step = max(max_step, _step_value(step))
            if new_row is not None:
                writer.writerow(_formatted(new_row))
                kept, max_step = kept + 1, max(max_step, _step_value(new_row["global_step"]))
        tmp.replace(self.path)  # atomic: a killed process leaves the old file or the new one
        self.num_rows, self._earlier_rows, self._max_step = kept, earlier, max_step

    def _stored_rows(self) -> Iterator[dict[str, Any]]:
        """The rows of the file as it is (the fields as strings), read as they are used."""
        if not self.path.exists():
            return
        with _open(self.path) as handle:
            yield from csv.DictReader(_WholeLines(handle))

    def close(self) -> None:
        pass


def _naming(error: OSError, path: Path) -> OSError:
    return OSError(error.errno, error.strerror or str(error), str(path))


def read_rows(path: str | Path) -> Iterator[dict[str, float]]:
    """The numbers of each row of a metrics.csv that parses, read as they are used (a last line cut
    short and rows with missing or extra fields or text that is no number are left out)."""
    with _open(Path(path)) as handle:
        for row in csv.DictReader(_WholeLines(handle)):
            parsed = _parsed(row)
            if parsed is not None:
                yield parsed


def _scan(path: Path) -> tuple[list[str], int, float, bool]:
    """(columns, number of rows, the largest global_step, whether damaged rows or a line cut short
    must be dropped) of a metrics.csv, read a line at a time."""
    rows, max_step, damaged = 0, -math.inf, False
    with _open(path) as handle:
        lines = _WholeLines(handle)
        reader = csv.DictReader(lines)
        columns = list(reader.fieldnames or [])
        for row in reader:
            rows += 1
            parsed = _parsed(row)
            if parsed is None:
                damaged = True
            else:
                max_step = max(max_step, _step_value(parsed["global_step"]))
        damaged = damaged or lines.cut
    return columns, rows, max_step, damaged


class _WholeLines:
    """The lines of ``handle`` up to its last newline; ``cut`` tells whether a last line without one
    (being written when the process died) was left out."""

    def __init__(self, handle: TextIO):
        self.handle, self.cut = handle, False

    def __iter__(self) -> Iterator[str]:
        for line in self.handle:
            if line.endswith("\n"):
                yield line
            else:  # only the last line can lack its newline
                self.cut = True


def _open(path: Path) -> TextIO:
    # Universal newlines, as the file has always been read back: "\r", "\n" and "\r\n" end a line.
    return path.open(encoding="utf-8", errors="replace")


def _parsed(row: dict[str, Any]) -> dict[str, float] | None:
    """A row's numbers (empty fields left out), or None when it does not parse: more fields than
    columns, no global_step, or text that is no number."""
    if None in row or "global_step" not in row or row["global_step"] in ("", None):
        return None
    try:
        return {key: float(value) for key, value in row.items() if value not in ("", None)}
    except (TypeError, ValueError):
        return None


def _step_value(step: Any) -> float:
    """A global_step for comparisons: NaN (or no number) counts as +inf: ``step <= x`` fails for both."""
    try:
        value = float(step)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(value) else value


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
