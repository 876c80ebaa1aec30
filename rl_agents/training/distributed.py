"""Distributed rollouts on Ray: worker actors step the environments, one learner trains.

::

    from functools import partial
    from rl_agents import PPO, RND
    from rl_agents.training.distributed import DistributedTrainer
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
collects exactly ``rollout_steps`` vector steps with a :class:`~rl_agents.training.collector.Collector`
on its own envs (:mod:`rl_agents.training.workers`) and returns the raw collected batch
(every key the composition declared: the observations, flags and
rewards, plus the acting agent's stored outputs) with the episodes it finished. The learner, a
:class:`~rl_agents.training.learner.Learner` whose agents are bound to ``workers x envs_per_worker``
envs, gets the batches concatenated along the env dimension from :class:`RayCollectors` and runs the
normal update on them (the Trainer's one ``train`` loop drives both): every agent's preprocessing in dependency order
(GAE, RND's rewards and statistics), then the summed-loss optimization. Agents never know they are
distributed, so ``ppo+rnd`` and every other composition work unchanged.

* **On-policy** (PPO, A2C): strictly synchronous; every update trains on data collected with the
  weights it broadcast. **Off-policy** (DQN, SAC): synchronous rounds of ``train_frequency`` vector
  steps per worker, appended to the learner's replay buffer (one column per env of every worker), then
  ``gradient_steps`` minibatches: the same update-to-data ratio as one process with as many envs.
* **Running statistics** that acting moves (PPO's observation normalizer): every worker starts the
  round from the learner's statistics; the learner recovers each worker's part from its result and
  merges all parts into its own :class:`~rl_agents.core.normalize.RunningMeanStd` modules (Chan et al.'s
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

import functools
from types import TracebackType
from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.config.defaults import with_num_envs
from rl_agents.config.schema import build_agents, make_config_envs, translated_build_errors
from rl_agents.core.agent import Batch
from rl_agents.training.learner import EnvSpaces, Learner, resolve_device
from rl_agents.training.ray_collectors import (
    DistributedError,
    RayCollectors,
    RayUnavailableError,
    WorkerFailureError,
    require_ray,
)
from rl_agents.training.trainer import Trainer
from rl_agents.training.workers import AgentFactory, EnvFactory

__all__ = ["DistributedError", "DistributedTrainer", "RayCollectors", "RayUnavailableError", "WorkerFailureError"]


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
            :class:`~rl_agents.training.trainer.Trainer` (the learner's; workers act on the CPU).

    Workers start (and Ray, if needed) on the first ``train``/``warmup``; :meth:`close` stops them
    (the trainer is a context manager). Checkpoints are the learner's: ``save``, ``load_state`` and
    ``DistributedTrainer.load`` work as for a Trainer with ``workers x num_envs`` envs.
    """

    collector: RayCollectors

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
            raise TypeError(
                "env_factory and agent_factory must be callables (a vector env's recipe, a list of agents' recipe)"
            )
        if ray_address is not None and (not isinstance(ray_address, str) or not ray_address.strip()):
            raise ValueError(f"ray_address must be a non-empty string or None, got {ray_address!r}")
        probe = _probe_envs(env_factory)
        autoreset_mode = probe.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {autoreset_mode} is not supported; use NEXT_STEP or SAME_STEP")
        spaces = EnvSpaces.of(probe, workers * probe.num_envs)
        learner = Learner(
            spaces,
            agent_factory(),
            seed=seed,
            device=resolve_device(device),
            skip_non_finite_updates=skip_non_finite_updates,
            **schedule,
        )
        collector = RayCollectors(
            env_factory,
            agent_factory,
            learner,
            workers=workers,
            envs_per_worker=probe.num_envs,
            autoreset_mode=autoreset_mode,
            ray_address=ray_address,
            max_worker_restarts=max_worker_restarts,
        )
        self._wire(learner, collector, total_steps=total_steps, loggers=loggers, log_interval=log_interval)

    @classmethod
    def from_config(
        cls, config: Any, *, envs: gym.vector.VectorEnv | None = None, loggers: Any = (), **overrides: Any
    ) -> Trainer:
        """The distributed trainer a run config with ``distributed.workers`` > 0 describes: every
        worker builds the config's envs and agents (Ray starts on the first ``train``)."""
        if envs is not None:
            raise ValueError("a DistributedTrainer's workers build their own envs; envs= cannot be given")
        config = with_num_envs(config, build_agents(config))  # refuse a bad agent option here, before Ray starts
        with translated_build_errors():
            return cls(
                functools.partial(make_config_envs, config),
                functools.partial(build_agents, config),
                workers=config.distributed.workers,
                ray_address=config.distributed.ray_address,
                max_worker_restarts=config.distributed.max_worker_restarts,
                skip_non_finite_updates=config.trainer.skip_non_finite_updates,
                seed=config.seed,
                device=config.device,
                total_steps=config.steps,
                loggers=loggers,
                log_interval=config.trainer.log_interval,
                **config.trainer.schedule_settings(),
                **overrides,
            )

    # ------------------------------------------------------------------ workers
    num_workers = property(lambda self: self.collector.num_workers)
    envs_per_worker = property(lambda self: self.collector.envs_per_worker)
    num_worker_failures = property(lambda self: self.collector.num_worker_failures)
    worker_handles = property(lambda self: self.collector.worker_handles)

    def learn(self, batch: Batch) -> dict[str, float]:
        # Only the workers' copies act, so the learner's acting agent hears where the run stands here:
        # a loss may read it (PPO's annealed clip range), as the acting agent of one process does.
        self.learner.acting.set_progress(self.global_step, self.total_steps)
        return super().learn(batch)

    def start_workers(self) -> list[Any]:
        """Start Ray (unless this process already joined a cluster) and the workers; returns their handles."""
        return self.collector.start_workers()

    def close(self) -> None:
        """Stop the workers, and Ray when this trainer started it. Training again restarts them."""
        self.collector.close()

    def __enter__(self) -> DistributedTrainer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


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
