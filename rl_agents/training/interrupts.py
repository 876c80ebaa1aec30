"""Stopping on SIGINT/SIGTERM at an update boundary, so that a checkpoint can be saved.

The first Ctrl-C (or ``kill``) only asks: training stops after the update in progress, where the
caller saves. A second one does not wait: it raises :class:`Interrupted` at once (an atomic
checkpoint write in progress then removes its temporary files and leaves the previous checkpoint).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A second stop signal: leave now. ``exit_status`` is the shell's 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted again by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_status = 128 + signum


class StopSignals:
    """While entered, SIGINT and SIGTERM request a stop instead of ending the process.

    ``stop.requested()`` tells the training loop to stop at the next update boundary; ``stop.signum``
    is the first signal received (None if none). Outside the main thread signal handlers cannot be
    installed, and the signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_status(self) -> int:
        return 0 if self.signum is None else 128 + self.signum

    @property
    def name(self) -> str:
        return "" if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this update to save a checkpoint "
            "(press Ctrl-C again to exit at once, without saving)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
