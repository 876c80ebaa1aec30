"""Training progress display: a rich progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """Shows steps, steps/s, recent mean return and ETA.

    On a TTY it draws a rich bar; otherwise (CI, pipes, ``quiet``) it prints a plain line about every
    ``plain_interval`` seconds so logs stay readable.
    """

    def __init__(
        self,
        total_steps: int,
        enabled: bool = True,
        plain: bool = False,
        plain_interval: float = 10.0,
        console: Console | None = None,
    ):
        self.total_steps = total_steps
        self.enabled = enabled
        self.console = console or Console(file=sys.stderr)
        self.rich = enabled and not plain and self.console.is_terminal
        self.plain_interval = plain_interval
        self._start = time.perf_counter()
        self._last_plain = -math.inf
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> TrainingProgress:
        self._start = time.perf_counter()
        if self.rich:
            self._progress = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]} steps/s"),
                TextColumn("return {task.fields[ret]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("train", total=self.total_steps, speed="-", ret="-")
        return self

    def update(self, step: int, recent_return: float) -> None:
        if not self.enabled:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        speed = f"{step / elapsed:,.0f}"
        ret = "-" if math.isnan(recent_return) else f"{recent_return:.2f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=min(step, self.total_steps), speed=speed, ret=ret)
        elif time.perf_counter() - self._last_plain >= self.plain_interval or step >= self.total_steps:
            self._last_plain = time.perf_counter()
            print(
                f"step {step}/{self.total_steps}  {speed} steps/s  return {ret}  elapsed {elapsed:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
