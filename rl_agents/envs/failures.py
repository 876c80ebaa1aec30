"""What went wrong with a vector env that failed, and closing one that may be broken."""

from __future__ import annotations

import signal
import time

import gymnasium as gym

from rl_agents.envs.errors import EnvError


def failed_workers(envs: gym.vector.VectorEnv) -> dict[int, str]:
    """For an AsyncVectorEnv (possibly wrapped): ``{env index: what happened}`` for each worker that
    raised (its pipe was closed by gymnasium) or whose process died; empty for other vector envs."""
    vector = envs.unwrapped
    if not isinstance(vector, gym.vector.AsyncVectorEnv):
        return {}
    pipes = list(getattr(vector, "parent_pipes", []) or [])
    processes = list(getattr(vector, "processes", []) or [])
    deadline = time.monotonic() + 1.0
    while True:  # a killed worker's pipe can report EOF a moment before its exit code is known
        failed: dict[int, str] = {index: "its worker raised" for index, pipe in enumerate(pipes) if pipe is None}
        for index, process in enumerate(processes):
            code = process.exitcode
            if code is not None and code < 0:
                try:
                    name = signal.Signals(-code).name
                except ValueError:
                    name = f"signal {-code}"
                failed[index] = f"its worker process (pid {process.pid}) was killed by {name}"
            elif code is not None and index not in failed:
                failed[index] = f"its worker process (pid {process.pid}) exited with code {code}"
        if failed or time.monotonic() > deadline:
            return dict(sorted(failed.items()))
        time.sleep(0.01)


def env_failure(envs: gym.vector.VectorEnv, error: Exception, during: str) -> EnvError:
    """An EnvError for ``error``, raised by ``envs`` in ``during`` ("step", "reset"), naming the
    failed envs when they can be known."""
    failed = failed_workers(envs)
    what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if failed:
        where = "; ".join(f"env {index}: {how}" for index, how in failed.items())
        return EnvError(f"the vector env failed in {during} ({where}): {what}", list(failed))
    return EnvError(
        f"the vector env failed in {during}: {what} (to have the failing env named, build the envs with "
        "rl_agents.envs.make_envs or wrap each in rl_agents.envs.IndexedEnv)"
    )


def close_quietly(envs: gym.vector.VectorEnv) -> None:
    """Close envs that may be broken (e.g. a dead async worker), never raising."""
    vector = envs.unwrapped
    is_async = isinstance(vector, gym.vector.AsyncVectorEnv)
    try:
        envs.close(terminate=True) if is_async else envs.close()
        return
    except Exception:
        pass
    for process in getattr(vector, "processes", []) or []:
        if process.is_alive():
            process.terminate()
        process.join(timeout=5)
    for pipe in getattr(vector, "parent_pipes", []) or []:
        if pipe is not None:
            pipe.close()
    vector.closed = True  # closed by hand: keep gymnasium from closing it again when collected
