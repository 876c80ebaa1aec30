"""One process at a time per run directory: an exclusive ``flock`` on ``<run>/.lock``.

The kernel releases the lock when its process ends, however it ends, so a lock left by a killed
process is simply taken over; the file also holds the holder's pid and host, to name it to whoever
finds the run locked. The file itself stays (removing it would let two processes lock two different
files of the same name).
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from types import TracebackType

LOCK_FILE = ".lock"


class RunLockedError(ValueError):
    """Another process is training in this run directory."""


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None
        self.previous_holder = ""  # what a process that did not release the lock (it was killed) left

    def acquire(self) -> RunLock:
        import fcntl  # POSIX; imported here so that the rest of the command line works elsewhere

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunLockedError(f"{self.path}: cannot create the run's lock file ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd) or "another process"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by {holder}; wait for it to finish or stop it "
                "(Ctrl-C or kill saves a checkpoint first)"
            ) from None
        self.previous_holder = _read(fd)
        os.ftruncate(fd, 0)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)  # an empty file: released in order, not left by a killed process
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
