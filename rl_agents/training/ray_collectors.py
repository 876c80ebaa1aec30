"""Collection on Ray workers: the collector a DistributedTrainer wires to its Learner.

Each round (one :meth:`RayCollectors.collect`) the learner's agents are broadcast, every worker
collects one rollout with its own :class:`~rl_agents.training.collector.Collector`, and the results are
merged: batches side by side along the env axis, running statistics with Chan et al.'s formulas,
steps and finished episodes into this collector's counters. A failed worker sits out until Ray has
restarted it; past ``max_worker_restarts`` failures :class:`WorkerFailureError` stops training.
Ray is imported only when workers start.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import socket
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import torch

from rl_agents.core.agent import Batch
from rl_agents.core.state import Apply, count, entry
from rl_agents.core.tree import map_tree
from rl_agents.training.episodes import EpisodeTracker
from rl_agents.training.errors import CollectionError
from rl_agents.training.learner import Learner
from rl_agents.training.workers import (
    AgentFactory,
    EnvFactory,
    Moments,
    RolloutWorker,
    as_tensor,
    assign_moments,
    concatenate_columns,
    entry_bytes,
    merge_worker_moments,
    moments_of,
    portable_entry,
    running_statistics,
)

INSTALL_HINT = "pip install 'rl-agents[ray]'"
INLINE_STATE_BYTES = 1 << 20  # agent states up to this size travel inside each worker's call


class DistributedError(CollectionError):
    """Distributed training cannot start or go on. ``checkpoint``: where ``train(..., save_on_error=...)``
    saved the learner before raising (None otherwise)."""

    checkpoint: Any = None


class RayUnavailableError(DistributedError):
    """Ray is not installed, or the Ray cluster cannot be joined."""


class WorkerFailureError(DistributedError):
    """Workers failed more often than ``max_worker_restarts`` allows; the message names the last one."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or RayUnavailableError saying how to install it."""
    if importlib.util.find_spec("ray") is None:
        raise RayUnavailableError(f"distributed training (--workers, distributed.workers) needs Ray: {INSTALL_HINT}")
    return importlib.import_module("ray")


# ---------------------------------------------------------------------------- collection on workers
class RayCollectors:
    """The Trainer's collector when Ray workers step the environments: each :meth:`collect` is one
    round (broadcast the learner's agents, every worker collects one rollout, the results are merged).

    ``global_step`` counts every worker's env steps and the workers' finished episodes feed
    ``episodes``, so logging, the progress bar and checkpoints work as for one process.
    """

    step_in_rollout = 0  # rounds are whole rollouts: always at an update boundary
    at_boundary = True
    resume_obs = None

    def __init__(
        self,
        env_factory: EnvFactory,
        agent_factory: AgentFactory,
        learner: Learner,
        *,
        workers: int,
        envs_per_worker: int,
        autoreset_mode: Any,
        ray_address: str | None,
        max_worker_restarts: int,
    ):
        self.env_factory = env_factory
        self.agent_factory = agent_factory
        self.learner = learner
        self.num_workers = workers
        self.envs_per_worker = envs_per_worker
        self.num_envs = workers * envs_per_worker
        self.autoreset_mode = autoreset_mode
        self.ray_address = ray_address
        self.max_worker_restarts = max_worker_restarts
        self.num_worker_failures = 0
        self.global_step = 0
        self.total_steps: int | None = None
        self.episodes = EpisodeTracker(self.num_envs)
        self.envs = None  # the envs live on the workers
        self._pool: _WorkerPool | None = None

    # ------------------------------------------------------------------ workers
    @property
    def worker_handles(self) -> list[Any]:
        """The workers' Ray actor handles (empty before they start)."""
        return list(self._pool.handles) if self._pool is not None else []

    def start_workers(self) -> list[Any]:
        """Start Ray (unless this process already joined a cluster) and the workers; returns their handles."""
        if self._pool is not None:
            return self._pool.handles
        ray = require_ray()
        owns_ray = not ray.is_initialized()
        if owns_ray:
            where = f"the Ray cluster at {self.ray_address!r}" if self.ray_address else "a local Ray instance"
            try:
                if self.ray_address is not None:
                    check_reachable(self.ray_address)
                ray.init(address=self.ray_address, include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise RayUnavailableError(f"could not start or join {where}: {' '.join(str(error).split())}") from error
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        per_worker = 1.0 if cpus >= self.num_workers else cpus / self.num_workers
        if per_worker < 1.0:
            warnings.warn(
                f"{self.num_workers} workers share the Ray cluster's {cpus:g} CPUs ({per_worker:.2f} each)",
                RuntimeWarning,
                stacklevel=2,
            )
        actor = ray.remote(RolloutWorker).options(num_cpus=per_worker, max_restarts=self.max_worker_restarts)
        schedule = dict(vars(self.learner.schedule))
        handles = [
            actor.remote(
                self.env_factory,
                self.agent_factory,
                index=index,
                seed=self.learner.seed,
                schedule=schedule,
                learner_num_envs=self.num_envs,
            )
            for index in range(self.num_workers)
        ]
        self._pool = _WorkerPool(handles, owns_ray, [0] * self.num_workers, [None] * self.num_workers)
        return handles

    def close(self) -> None:
        """Stop the workers, and Ray when this collector started it. Collecting again restarts them."""
        if self._pool is None:
            return
        ray = require_ray()
        if ray.is_initialized():  # else Ray was shut down already, and the workers with it
            for handle in self._pool.handles:
                ray.kill(handle)
            if self._pool.owns_ray:
                ray.shutdown()
        self._pool = None

    def _gather(self, calls: list[Any]) -> list[Any]:
        """Each call's result; None for a worker left out (None call) or whose call failed (counted,
        warned about: it sits out until Ray has restarted it)."""
        ray = require_ray()
        results: list[Any] = []
        for index, call in enumerate(calls):
            try:
                results.append(None if call is None else ray.get(call))
            except ray.exceptions.RayError as error:
                results.append(None)
                self._worker_failed(index, error)
        return results

    def _taking_part(self) -> list[bool]:
        """Which workers take part in this round: all but those that failed and have not answered a
        ``ready`` call since (Ray is restarting them). A ready call failing again while Ray restarts the
        actor is not another failure; one failing otherwise (e.g. the actor cannot be restarted) is."""
        ray = require_ray()
        assert self._pool is not None
        pool = self._pool
        if all(ping is not None for ping in pool.pings):  # nobody to collect with: wait for one to be back
            ray.wait(list(pool.pings), num_returns=1)
        for index, ping in enumerate(pool.pings):
            if ping is None or not ray.wait([ping], timeout=0)[0]:
                continue
            try:
                ray.get(ping)
                pool.pings[index] = None
            except ray.exceptions.ActorUnavailableError:
                pool.pings[index] = pool.handles[index].ready.remote()
            except ray.exceptions.RayError as error:
                self._worker_failed(index, error)
        return [ping is None for ping in pool.pings]

    def _worker_failed(self, index: int, error: BaseException) -> None:
        assert self._pool is not None
        self.num_worker_failures += 1
        self._pool.failures[index] += 1  # its next round rebuilds its envs with a new seed
        self._pool.pings[index] = self._pool.handles[index].ready.remote()
        reason = _failure_reason(error)
        if self.num_worker_failures > self.max_worker_restarts:
            raise WorkerFailureError(
                f"worker {index} failed ({reason}); that is {self.num_worker_failures} worker failures in this run "
                f"(worker {index}: {self._pool.failures[index]}), "
                f"more than max_worker_restarts={self.max_worker_restarts} "
                "(--set distributed.max_worker_restarts=N allows more)"
            ) from error
        warnings.warn(
            f"worker {index} failed at step {self.global_step} ({reason}); training goes on without its "
            f"{self.envs_per_worker} envs until Ray has restarted it, then it rejoins with fresh envs "
            f"(failure {self.num_worker_failures} of at most {self.max_worker_restarts})",
            RuntimeWarning,
            stacklevel=4,
        )

    def counters(self) -> dict[str, float]:
        """Nothing extra is logged: worker failures are warned about and counted in ``num_worker_failures``."""
        return {}

    # ------------------------------------------------------------------ rounds
    def begin(self, seed: int | None = None) -> None:
        """Start the workers; ``seed`` must be None (each worker seeds from the trainer's seed)."""
        if seed is not None:
            raise ValueError(
                "DistributedTrainer.train: the workers seed from the trainer's seed; "
                "pass seed= to the constructor instead"
            )
        self.start_workers()

    def _broadcast_state(self) -> Any:
        """Every agent's state_dict (tensors as portable() arrays; extra state, such as
        ``state_attributes``, as copies with CPU tensors); put into Ray's object store once when large
        (small ones travel inside each call, which is faster)."""
        states = {
            agent.name: {key: portable_entry(value) for key, value in agent.state_dict().items()}
            for agent in self.learner.agents
        }
        size = sum(entry_bytes(value) for state in states.values() for value in state.values())
        return require_ray().put(states) if size > INLINE_STATE_BYTES and self.num_workers > 1 else states

    def collect(self) -> Batch:
        """One round per call until some worker's data arrives: broadcast the agents, let every worker
        collect one rollout, merge the running statistics, return all columns (a missing worker's
        are invalid rows, never trained on)."""
        while True:
            statistics = running_statistics(self.learner.agents)
            bases = {key: moments_of(stats) for key, stats in statistics.items()}
            rollouts = self._collect_round()
            arrived = [rollout for rollout in rollouts if rollout is not None]
            if arrived:
                break
        device = self.learner.device
        for key, stats in statistics.items():
            finals = [Moments(*(as_tensor(value, device) for value in rollout.statistics[key])) for rollout in arrived]
            assign_moments(stats, merge_worker_moments(bases[key], finals))
        self.global_step += sum(rollout.steps for rollout in arrived)
        for rollout in arrived:
            self.episodes.finished.add(rollout.episode_returns, rollout.episode_lengths, self.global_step)
        columns = concatenate_columns([None if rollout is None else rollout.batch for rollout in rollouts])
        return {key: map_tree(lambda leaf: as_tensor(leaf, device), value) for key, value in columns.items()}

    def _collect_round(self) -> list[Any]:
        handles = self.start_workers()
        assert self._pool is not None
        taking_part = self._taking_part()
        states = self._broadcast_state()
        failures = self._pool.failures
        calls = [
            handle.collect.remote(states, failures[index], self.global_step, self.total_steps)
            if taking_part[index]
            else None
            for index, handle in enumerate(handles)
        ]
        return self._gather(calls)

    def random_observations(self, steps: int, seed: int) -> Any:
        """The workers' random-action observations, side by side (``seed`` is unused: each worker
        seeds from its own seed)."""
        handles = self.start_workers()
        assert self._pool is not None
        failures, taking_part = self._pool.failures, self._taking_part()
        calls = [
            handle.warmup_observations.remote(steps, failures[index], self.global_step) if taking_part[index] else None
            for index, handle in enumerate(handles)
        ]
        arrived = [piece for piece in self._gather(calls) if piece is not None]
        if not arrived:
            raise WorkerFailureError("no worker returned its warm-up observations")
        joined = map_tree(lambda *leaves: np.concatenate(leaves, axis=1), *arrived)
        return map_tree(lambda leaf: torch.from_numpy(leaf).to(self.learner.device), joined)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The step counter and the episode statistics (the workers' envs are not saved: a resumed
        run starts fresh episodes on fresh workers)."""
        return {"global_step": self.global_step, "episodes": self.episodes.state_dict()}

    def prepare_load(self, state: Any, where: str = "collector") -> Apply:
        global_step = count(state, "global_step", where)
        apply_episodes = self.episodes.prepare_load(entry(state, "episodes", dict, where), f"{where}.episodes")

        def apply() -> None:
            apply_episodes()
            self.global_step = global_step

        return apply


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError when nothing answers at a ``host:port`` address (``ray.init`` would
    retry forever); other forms (``auto``, ``ray://...``) are left to Ray, which fails fast on them."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(
            f"nothing answers at {address} ({error.strerror or error}); start the head node with 'ray start --head'"
        ) from error


def _failure_reason(error: BaseException) -> str:
    """One line: what went wrong in a worker's round."""
    cause = getattr(error, "cause", None)  # a RayTaskError carries the worker's exception
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {' '.join(str(cause).split())}"[:300]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no details'}"[:300]


@dataclass
class _WorkerPool:
    handles: list[Any]
    owns_ray: bool  # Ray was started for these workers (close() shuts it down)
    failures: list[int]  # per worker: its envs are rebuilt, with seeds derived from the count, when it changes
    pings: list[Any]  # per worker: None when it takes part in rounds, else a pending ready() call (it failed)
