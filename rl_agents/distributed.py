"""Distributed rollouts on Ray: worker actors step the environments, one learner trains.

::

    from functools import partial
    from rl_agents import PPO, RND
    from rl_agents.distributed import DistributedTrainer
    from rl_agents.envs import make_envs

    with DistributedTrainer(
        partial(make_envs, "CartPole-v1", 4),  # each worker's vector env (4 envs per worker)
        lambda: [PPO(), RND()],                # the composition, built afresh for the learner and each worker
        workers=2,
        seed=1,
    ) as trainer:
        trainer.train(100_000)

Each round the learner puts the ``state_dict`` of every agent (weights and buffers such as normalizer
statistics) into Ray's object store once; every worker loads it into its own copy of the agents,
collects exactly ``rollout_steps`` vector steps with the Trainer's own ``act``/``observe`` on its own
envs (:class:`CollectorTrainer`, whose ``update`` hands the rollout over instead of training) and
returns the raw collected batch (every key the composition declared: the observations, flags and
rewards, plus the acting agent's stored outputs) with the episodes it finished. The learner, a
:class:`~rl_agents.trainer.Trainer` whose agents are bound to ``workers x envs_per_worker`` envs,
concatenates the batches along the env dimension and runs the normal update on them
(:meth:`~rl_agents.trainer.Trainer.update_from`): every agent's preprocessing in dependency order
(GAE, RND's rewards and statistics), then the summed-loss optimization. Agents never know they are
distributed, so ``ppo+rnd`` and every other composition work unchanged.

* **On-policy** (PPO, A2C): strictly synchronous; every update trains on data collected with the
  weights it broadcast. **Off-policy** (DQN, SAC): synchronous rounds of ``train_frequency`` vector
  steps per worker, appended to the learner's replay buffer (one column per env of every worker), then
  ``gradient_steps`` minibatches: the same update-to-data ratio as one process with as many envs.
* **Running statistics** that acting moves (PPO's observation normalizer): every worker starts the
  round from the learner's statistics; the learner recovers each worker's part from its result and
  merges all parts into its own :class:`~rl_agents.normalize.RunningMeanStd` modules (Chan et al.'s
  parallel formulas, float64), so the statistics equal those of one module fed every observation.
* **Seeding**: worker ``i`` seeds its envs and its action sampling from ``(seed, i, restarts, step)``
  (``np.random.SeedSequence``); the same seed gives the same run.
* **Faults**: workers are Ray actors created with ``max_restarts``. When a worker's round fails (its
  process died, or its env raised) the update goes on with the data that arrived: the missing worker's
  columns are invalid rows, which the Trainer never trains on. A warning names the worker; Ray restarts
  it, and once it answers again it rejoins with fresh envs (until then the rounds go on without it).
  After more than ``max_worker_restarts`` failures in all, :class:`WorkerFailureError` names the worker
  and the count; the learner is left at an update boundary and can be saved
  (``train(save_on_error=...)`` does).
* **Logging**: ``global_step`` counts every worker's env steps and the workers' finished episodes feed
  the learner's episode statistics, so metrics, TensorBoard, the progress bar and checkpoints work as
  for a single process.

Ray is an optional dependency (``pip install 'rl-agents[ray]'``); this module imports it only when
workers start.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from rl_agents.agent import Agent, Batch
from rl_agents.normalize import RunningMeanStd
from rl_agents.storage import RolloutStorage
from rl_agents.trainer import EpisodeStats, NonFiniteError, Trainer, _close_quietly

EnvFactory = Callable[[], gym.vector.VectorEnv]
AgentFactory = Callable[[], list[Agent]]
AgentStates = dict[str, dict[str, Any]]  # agent name -> state_dict, as portable() values

INSTALL_HINT = "pip install 'rl-agents[ray]'"
INLINE_STATE_BYTES = 1 << 20  # agent states up to this size travel inside each worker's call


class DistributedError(RuntimeError):
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


# ---------------------------------------------------------------------------- running statistics
class Moments(NamedTuple):
    """Mean, (population) variance and count of a set of samples, in float64."""

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor


def combine_moments(first: Moments, second: Moments) -> Moments:
    """The moments of the union of two sample sets (Chan et al.'s parallel algorithm)."""
    total = first.count + second.count
    delta = second.mean - first.mean
    mean = first.mean + delta * (second.count / total)
    m2 = first.var * first.count + second.var * second.count + delta.square() * (first.count * second.count / total)
    return Moments(mean, m2 / total, total)


def subtract_moments(total: Moments, base: Moments) -> Moments:
    """The moments of the samples that ``combine_moments(base, added)`` merged into ``total``."""
    count = total.count - base.count
    mean = base.mean + (total.mean - base.mean) * (total.count / count)
    delta = mean - base.mean
    m2 = total.var * total.count - base.var * base.count - delta.square() * (base.count * count / total.count)
    return Moments(mean, (m2 / count).clamp_min(0.0), count)


def moments_of(stats: RunningMeanStd) -> Moments:
    return Moments(stats.mean.detach().clone(), stats.var.detach().clone(), stats.count.detach().clone())


def running_statistics(agents: list[Agent]) -> dict[str, RunningMeanStd]:
    """Every RunningMeanStd inside the agents, keyed ``"<agent>/<module path>"``."""
    return {
        f"{agent.name}/{path}": module
        for agent in agents
        for path, module in agent.named_modules()
        if isinstance(module, RunningMeanStd)
    }


def merge_worker_moments(base: Moments, worker_finals: list[Moments]) -> Moments:
    """The moments of ``base``'s samples plus every worker's new ones, where each worker started from
    ``base`` and ended at its entry of ``worker_finals``."""
    merged = base
    for final in worker_finals:
        if float(final.count - base.count) > 0.5:  # counts are whole numbers of samples (plus epsilon)
            merged = combine_moments(merged, subtract_moments(final, base))
    return merged


@torch.no_grad()
def assign_moments(stats: RunningMeanStd, moments: Moments) -> None:
    stats.mean.copy_(moments.mean)
    stats.var.copy_(moments.var)
    stats.count.copy_(moments.count)


# ---------------------------------------------------------------------------- batches
def concatenate_columns(pieces: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray]:
    """Join the workers' ``[T, envs, ...]`` batches along the env axis; a missing worker's (None)
    columns are zeros with ``valid`` False, rows the Trainer never trains on."""
    arrived = [piece for piece in pieces if piece is not None]
    if not arrived:
        raise ValueError("no worker's batch arrived: nothing to concatenate")
    keys = sorted(arrived[0])
    if any(sorted(piece) != keys for piece in arrived):
        raise ValueError(f"the workers' batches hold different keys: {[sorted(piece) for piece in arrived]}")
    filler = {key: np.zeros_like(value) for key, value in arrived[0].items()}  # zeros: valid is False
    return {key: np.concatenate([(filler if piece is None else piece)[key] for piece in pieces], axis=1) for key in keys}


def portable(tensor: torch.Tensor) -> np.ndarray | torch.Tensor:
    """A CPU tensor as a NumPy array, which Ray serializes several times faster than a torch tensor
    (and without copies through its object store); a dtype NumPy lacks (bfloat16) stays a tensor."""
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:
        return tensor


def as_tensor(value: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """The inverse of :func:`portable` (arrays Ray hands out read-only are copied)."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return torch.from_numpy(value if value.flags.writeable else value.copy()).to(device)


# ---------------------------------------------------------------------------- workers
@dataclass
class Rollout:
    """What a worker returns for one round."""

    batch: dict[str, Any]  # every collected key, [rollout_steps, envs_per_worker, ...], as portable() arrays
    episode_returns: list[float]
    episode_lengths: list[int]
    statistics: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # running_statistics key: (mean, var, count)
    steps: int  # env steps taken


class CollectorTrainer(Trainer):
    """A Trainer that collects and never trains: when a rollout is full, ``update`` keeps it in
    ``completed`` (views of the rollout storage, valid until the next rollout starts)."""

    completed: Batch | None = None

    def update(self) -> dict[str, float]:
        self.completed = self.storage.batch()
        return {}


def worker_seed(seed: int, index: int, restarts: int, start_step: int) -> int:
    """The seed of worker ``index``'s envs and action sampling, after ``restarts`` restarts, when
    (re)started at learner step ``start_step``."""
    return int(np.random.SeedSequence([seed, index, restarts, start_step]).generate_state(1)[0])


def fit_learner_state(own: dict[str, torch.Tensor], learner: dict[str, torch.Tensor], agent: str, envs: int, learner_envs: int) -> dict[str, torch.Tensor]:
    """The learner's state_dict for a worker's copy of ``agent``: every tensor, except per-env state
    (leading dimension ``learner_envs`` there, ``envs`` here, e.g. a return normalizer's running
    return), which each side keeps for its own envs."""
    if own.keys() != learner.keys():
        difference = sorted(own.keys() ^ learner.keys())
        raise ValueError(f"agent {agent!r} differs between the learner and the worker in state {difference[:4]}: build both from one recipe")
    fitted = {}
    for key, mine in own.items():
        theirs = learner[key]
        per_env = mine.dim() > 0 and mine.shape[0] == envs and theirs.shape == (learner_envs, *mine.shape[1:])
        if theirs.shape != mine.shape and not per_env:
            raise ValueError(f"agent {agent!r} state {key!r} has shape {list(theirs.shape)} on the learner, {list(mine.shape)} on the worker")
        fitted[key] = mine if theirs.shape != mine.shape else theirs
    return fitted


class RolloutWorker:
    """Collects rounds of experience with its own envs and its own copy of the agents.

    Ray runs it as an actor (``ray.remote(RolloutWorker)``); it is a plain class, so it also runs in
    the learner's process (tests do). The envs and agents are built on the first round, and again
    (with a new seed) when the learner reports that this worker failed (``restarts`` changed).
    """

    def __init__(self, env_factory: EnvFactory, agent_factory: AgentFactory, *, index: int, seed: int, schedule: dict[str, Any], learner_num_envs: int):
        torch.set_num_threads(1)  # one core per worker; small networks are fastest on one thread
        self.env_factory = env_factory
        self.agent_factory = agent_factory
        self.index = index
        self.base_seed = seed
        self.schedule = schedule
        self.learner_num_envs = learner_num_envs
        self.restarts = -1
        self.seed = 0
        self.trainer: CollectorTrainer | None = None
        self.obs: np.ndarray | None = None

    def _prepare(self, restarts: int, global_step: int) -> CollectorTrainer:
        if self.trainer is None or restarts != self.restarts:
            if self.trainer is not None:
                _close_quietly(self.trainer.envs)  # they may be broken
            self.seed = worker_seed(self.base_seed, self.index, restarts, global_step)
            self.trainer = CollectorTrainer(self.env_factory(), self.agent_factory(), seed=self.seed, **self.schedule)
            self.restarts, self.obs = restarts, None
        return self.trainer

    def _load(self, trainer: CollectorTrainer, states: AgentStates) -> None:
        for agent in trainer.agents:
            if agent.name not in states:
                raise ValueError(f"the learner has no agent {agent.name!r} (it has {sorted(states)}): build both from one recipe")
            learner_state = {key: as_tensor(value) for key, value in states[agent.name].items()}
            fitted = fit_learner_state(agent.state_dict(), learner_state, agent.name, trainer.num_envs, self.learner_num_envs)
            agent.load_state_dict(fitted)
            agent.after_update()  # refresh anything derived from the parameters (e.g. fused inference weights)

    def collect(self, states: AgentStates, restarts: int, global_step: int, total_steps: int | None) -> Rollout:
        """Load the learner's agent states, then collect one rollout (``rollout_steps`` vector steps)."""
        trainer = self._prepare(restarts, global_step)
        self._load(trainer, states)
        if self.obs is None:
            self.obs, _ = trainer.envs.reset(seed=self.seed)
        trainer.global_step, trainer.total_steps, trainer.completed = global_step, total_steps, None
        obs = self.obs
        while trainer.completed is None:
            action = trainer.act(obs)
            obs, reward, terminated, truncated, info = trainer.envs.step(action)
            trainer.observe(obs, reward, terminated, truncated, info)
        self.obs = obs
        episodes, trainer.episodes = trainer.episodes, EpisodeStats([], [], [])
        statistics = {key: tuple(portable(moment) for moment in moments_of(stats)) for key, stats in running_statistics(trainer.agents).items()}
        batch = {key: portable(value) for key, value in trainer.completed.items()}  # views: Ray copies them on return
        return Rollout(batch, episodes.returns, episodes.lengths, statistics, trainer.rollout_steps * trainer.num_envs)

    def ready(self) -> bool:
        """Answers once the actor runs (the learner asks a restarted worker before it rejoins)."""
        return True

    def warmup_observations(self, steps: int, restarts: int, global_step: int) -> np.ndarray:
        """``[steps, envs, ...]`` observations of seeded random actions (agents' ``warmup``); the
        next round starts from a reset."""
        envs = self._prepare(restarts, global_step).envs
        envs.reset(seed=self.seed)
        envs.action_space.seed(self.seed)
        observations = [np.asarray(envs.step(envs.action_space.sample())[0]) for _ in range(steps)]
        self.obs = None
        return np.stack(observations)


# ---------------------------------------------------------------------------- learner
class EnvsOnWorkers(gym.vector.VectorEnv):
    """The learner's stand-in for the workers' ``num_envs`` envs, which it never steps: spaces and metadata."""

    def __init__(self, like: gym.vector.VectorEnv, num_envs: int):
        self.num_envs = num_envs
        self.single_observation_space = like.single_observation_space
        self.single_action_space = like.single_action_space
        self.observation_space = gym.vector.utils.batch_space(like.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(like.single_action_space, num_envs)
        self.metadata = dict(like.metadata)

    def reset(self, *, seed: Any = None, options: Any = None) -> tuple:
        raise RuntimeError("a DistributedTrainer's learner has no environments of its own: its workers step them")

    def step(self, actions: Any) -> tuple:
        raise RuntimeError("a DistributedTrainer's learner has no environments of its own: its workers step them")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError when nothing answers at a ``host:port`` address (``ray.init`` would
    retry forever); other forms (``auto``, ``ray://...``) are left to Ray, which fails fast on them."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ConnectionError(f"nothing answers at {address} ({error.strerror or error}); start the head node with 'ray start --head'") from error


def _probe_envs(env_factory: EnvFactory) -> gym.vector.VectorEnv:
    """One vector env from the factory, closed: its spaces, metadata and number of envs."""
    envs = env_factory()
    if not isinstance(envs, gym.vector.VectorEnv):
        raise TypeError(f"env_factory must return a gymnasium.vector.VectorEnv, got {type(envs).__name__}")
    envs.close()
    return envs


def _check_count(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


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


class DistributedTrainer(Trainer):
    """A Trainer whose experience is collected by ``workers`` Ray actors (see the module docstring).

    Args:
        env_factory: builds one worker's vector env (e.g. ``functools.partial(make_envs, env_id, 8)``);
            the learner calls it once to read the spaces. Must be picklable by cloudpickle (lambdas
            and ``functools.partial`` are).
        agent_factory: returns a fresh list of agents, the same composition every call (e.g.
            ``lambda: [PPO(), RND()]``); called for the learner and for every worker.
        workers: number of Ray actors; the learner's agents are bound to ``workers x`` the factory's
            ``num_envs`` envs, and ``global_step`` counts all of them.
        ray_address: join the Ray cluster at this address (``"auto"``, ``"host:6379"``,
            ``"ray://host:10001"``); None starts a local Ray instance. A process already connected to
            Ray (``ray.init`` called before) keeps that connection either way.
        max_worker_restarts: worker failures (in all, over the trainer's life) survived before
            :class:`WorkerFailureError`; also each actor's Ray ``max_restarts``.
        seed, device, total_steps, loggers, log_interval, skip_non_finite_updates, **schedule: as for
            :class:`~rl_agents.trainer.Trainer` (the learner's; workers act on the CPU).

    Workers start (and Ray, if needed) on the first ``train``/``warmup``; :meth:`close` stops them
    (the trainer is a context manager). Checkpoints are the learner's: ``save``, ``load_state`` and
    ``Trainer.load`` work as for a Trainer with ``workers x num_envs`` envs.
    """

    def __init__(
        self,
        env_factory: EnvFactory,
        agent_factory: AgentFactory,
        *,
        workers: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        total_steps: int | None = None,
        loggers: list | tuple = (),
        log_interval: int | None = None,
        skip_non_finite_updates: bool = False,
        ray_address: str | None = None,
        max_worker_restarts: int = 3,
        **schedule: Any,
    ):
        require_ray()
        _check_count("workers", workers, 1)
        _check_count("max_worker_restarts", max_worker_restarts, 0)
        if not callable(env_factory) or not callable(agent_factory):
            raise TypeError("env_factory and agent_factory must be callables (a vector env's recipe, a list of agents' recipe)")
        if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
            raise ValueError(f"ray_address must be a non-empty string or None, got {ray_address!r}")
        probe = _probe_envs(env_factory)
        super().__init__(
            EnvsOnWorkers(probe, workers * probe.num_envs),
            agent_factory(),
            seed=seed,
            device=device,
            total_steps=total_steps,
            loggers=loggers,
            log_interval=log_interval,
            skip_non_finite_updates=skip_non_finite_updates,
            **schedule,
        )
        # The learner never steps envs itself: release the rollout storage the Trainer allocated.
        self.storage = RolloutStorage(self.rollout_steps, self.num_envs, self.device)
        self.num_workers = workers
        self.envs_per_worker = probe.num_envs
        self.worker_env_factory = env_factory
        self.agent_factory = agent_factory
        self.ray_address = ray_address
        self.max_worker_restarts = max_worker_restarts
        self.num_worker_failures = 0
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
            warnings.warn(f"{self.num_workers} workers share the Ray cluster's {cpus:g} CPUs ({per_worker:.2f} each)", RuntimeWarning, stacklevel=2)
        actor = ray.remote(RolloutWorker).options(num_cpus=per_worker, max_restarts=self.max_worker_restarts)
        schedule = dict(vars(self.schedule))
        handles = [
            actor.remote(self.worker_env_factory, self.agent_factory, index=index, seed=self.seed, schedule=schedule, learner_num_envs=self.num_envs)
            for index in range(self.num_workers)
        ]
        self._pool = _WorkerPool(handles, owns_ray, [0] * self.num_workers, [None] * self.num_workers)
        return handles

    def close(self) -> None:
        """Stop the workers, and Ray when this trainer started it. Training again restarts them."""
        if self._pool is None:
            return
        ray = require_ray()
        if ray.is_initialized():  # else Ray was shut down already, and the workers with it
            for handle in self._pool.handles:
                ray.kill(handle)
            if self._pool.owns_ray:
                ray.shutdown()
        self._pool = None

    def __enter__(self) -> DistributedTrainer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

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
                f"(worker {index}: {self._pool.failures[index]}), more than max_worker_restarts={self.max_worker_restarts} "
                "(--set distributed.max_worker_restarts=N allows more)"
            ) from error
        warnings.warn(
            f"worker {index} failed at step {self.global_step} ({reason}); training goes on without its "
            f"{self.envs_per_worker} envs until Ray has restarted it, then it rejoins with fresh envs "
            f"(failure {self.num_worker_failures} of at most {self.max_worker_restarts})",
            RuntimeWarning,
            stacklevel=4,
        )

    # ------------------------------------------------------------------ rounds
    def _broadcast_state(self) -> Any:
        """Every agent's state_dict; put into Ray's object store once when large (small ones travel
        inside each call, which is faster)."""
        states = {agent.name: {key: portable(value) for key, value in agent.state_dict().items()} for agent in self.agents}
        size = sum(value.nbytes for state in states.values() for value in state.values())
        return require_ray().put(states) if size > INLINE_STATE_BYTES and self.num_workers > 1 else states

    def run_round(self) -> dict[str, float]:
        """Broadcast the agents, let every worker collect one rollout, then update on all of it.
        Returns the update's metrics ({} when no worker's data arrived)."""
        statistics = running_statistics(self.agents)
        bases = {key: moments_of(stats) for key, stats in statistics.items()}
        rollouts = self._collect_round()
        arrived = [rollout for rollout in rollouts if rollout is not None]
        if not arrived:
            return {}
        for key, stats in statistics.items():
            finals = [Moments(*(as_tensor(value, self.device) for value in rollout.statistics[key])) for rollout in arrived]
            assign_moments(stats, merge_worker_moments(bases[key], finals))
        self._record_steps_and_episodes(arrived)
        columns = concatenate_columns([None if rollout is None else rollout.batch for rollout in rollouts])
        return self.update_from({key: as_tensor(value, self.device) for key, value in columns.items()})

    def _collect_round(self) -> list[Rollout | None]:
        handles = self.start_workers()
        assert self._pool is not None
        taking_part = self._taking_part()
        states = self._broadcast_state()
        failures = self._pool.failures
        calls = [
            handle.collect.remote(states, failures[index], self.global_step, self.total_steps) if taking_part[index] else None
            for index, handle in enumerate(handles)
        ]
        return self._gather(calls)

    def _record_steps_and_episodes(self, arrived: list[Rollout]) -> None:
        self.global_step += sum(rollout.steps for rollout in arrived)
        for rollout in arrived:
            self.episodes.returns.extend(rollout.episode_returns)
            self.episodes.lengths.extend(rollout.episode_lengths)
            self.episodes.end_steps.extend([self.global_step] * len(rollout.episode_returns))

    def warmup(self, seed: int | None = None) -> int:
        """Random-action warm-up (agents' ``warmup_steps``) on the workers' envs; ``seed`` is unused
        (each worker seeds from its own seed)."""
        wanting = [agent for agent in self.agents if agent.warmup_steps() > 0]
        if not wanting:
            return 0
        steps = max(agent.warmup_steps() for agent in wanting)
        handles = self.start_workers()
        assert self._pool is not None
        failures, taking_part = self._pool.failures, self._taking_part()
        calls = [handle.warmup_observations.remote(steps, failures[index], self.global_step) if taking_part[index] else None for index, handle in enumerate(handles)]
        pieces = self._gather(calls)
        arrived = [piece for piece in pieces if piece is not None]
        if arrived:
            stacked = torch.from_numpy(np.concatenate(arrived, axis=1)).to(self.device)
            for agent in wanting:
                agent.warmup(stacked[: agent.warmup_steps()])
        return steps

    def train(
        self,
        total_steps: int,
        *,
        seed: int | None = None,
        progress: bool = True,
        quiet: bool = False,
        on_update: Callable[[Trainer], None] | None = None,
        stop_when: Callable[[Trainer], bool] | None = None,
        save_on_error: Any = None,
    ) -> DistributedTrainer:
        """Run rounds until ``total_steps`` env steps (over all workers) were taken; the arguments are
        :meth:`Trainer.train`'s, except ``seed``: the workers seed from the trainer's seed, so it must
        be None. A :class:`WorkerFailureError` or NonFiniteError leaves the learner at an update
        boundary (saved as ``last_good`` under ``save_on_error`` when given)."""
        if seed is not None:
            raise ValueError("DistributedTrainer.train: the workers seed from the trainer's seed; pass seed= to the constructor instead")
        from rl_agents.progress import TrainingProgress

        self.total_steps = total_steps
        self.start_workers()
        self._start_step, self._start_time = self.global_step, time.perf_counter()
        with TrainingProgress(total_steps, enabled=progress, plain=quiet) as bar:
            try:
                if self.global_step == 0:
                    self.warmup()
                while self.global_step < total_steps:
                    logs_before = self.num_logs
                    self.run_round()
                    if self.num_logs != logs_before:
                        bar.update(self.global_step, self.recent_return())
                        if on_update is not None:
                            on_update(self)
                        if stop_when is not None and stop_when(self):
                            break
            except (NonFiniteError, WorkerFailureError) as error:  # raised before the update it stopped
                self._save_after_error(error, save_on_error)
                raise
            bar.update(self.global_step, self.recent_return())
        return self
