"""The Trainer: wires one Collector (the environments and the acting agent) to one Learner (the
composition, its optimizer and replay), and keeps the run's logging and checkpoints.

The environment loop is public::

    obs, info = envs.reset(seed=seed)
    while trainer.global_step < total_steps:
        action = trainer.act(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        trainer.observe(obs, reward, terminated, truncated, info)

``observe`` stores the transition and, when the rollout is full, runs the update. ``train`` is the
same loop with a progress bar, restarts of failed environments and saving on errors.

Bad numbers and failing environments stop training with an error that says where (see
:mod:`rl_agents.training.collector` and :mod:`rl_agents.training.optimization`). Nothing of the failed
step is applied, so the trainer can still be saved; ``train(..., save_on_error=dir)`` saves it as
``dir/last_good`` before raising.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from rl_agents.checkpointing import STATE_FILE, CheckpointError, read_checkpoint, save_checkpoint, step_dir_name
from rl_agents.config.registry import AgentImports
from rl_agents.config.schema import RunConfig, config_to_dict
from rl_agents.core.agent import Agent, Batch, ContractError
from rl_agents.core.state import StateError
from rl_agents.envs import EnvError
from rl_agents.logging import Logger
from rl_agents.training.collector import BatchSource, Collector, require_vector_env
from rl_agents.training.errors import CollectionError, NonFiniteError
from rl_agents.training.learner import EnvSpaces, Learner, resolve_device
from rl_agents.training.metrics import MetricsLog
from rl_agents.training.recipes import build_from_config, load_with_class
from rl_agents.training.state_tree import prepare_tree_load, state_tree

if TYPE_CHECKING:
    from rl_agents.evaluation import EvaluationResult

# The name under which train(..., save_on_error=dir) saves the trainer when training stops on an error.
LAST_GOOD_CHECKPOINT = "last_good"


class Trainer:
    """Trains a composition of agents on a Gymnasium vector environment.

    Args:
        envs: a ``gymnasium.vector.VectorEnv`` (``gym.make_vec(...)``).
        agents: exactly one acting agent plus any number of others (e.g. ``[PPO(), RND()]``).
        seed: seeds network initialization, action sampling and minibatch order (not global RNGs).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        total_steps: needed by learning-rate annealing and exploration schedules; ``train(total_steps)`` sets it too.
        loggers: sinks receiving one metrics dict per update (on-policy) or per ``log_interval`` steps.
        log_interval: env steps between logged metrics (means since the last log); ``None``: every
            update on-policy, every 1000 steps off-policy.
        skip_non_finite_updates: skip (no optimizer step) a minibatch whose loss or gradient is NaN or
            infinite, with a warning, counting it in ``trainer/skipped_updates``, instead of raising.
        max_env_restarts: how many times ``train`` may restart failed environments (see
            :meth:`Collector.restart_envs`) before it raises; restarts are logged as ``trainer/env_restarts``.
        env_factory: builds a fresh vector env like ``envs`` for a restart (default: ``make_envs``' recipe).
        **schedule: settings of the acting agent's schedule (:mod:`rl_agents.core.schedules`); ``None``
            values take its suggestion.
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        agents: list[Agent],
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        total_steps: int | None = None,
        loggers: list[Logger] | tuple[Logger, ...] = (),
        log_interval: int | None = None,
        skip_non_finite_updates: bool = False,
        max_env_restarts: int = 0,
        env_factory: Callable[[], gym.vector.VectorEnv] | None = None,
        **schedule: Any,
    ):
        require_vector_env(envs)
        learner = Learner(
            EnvSpaces.of(envs),
            agents,
            seed=seed,
            device=resolve_device(device),
            skip_non_finite_updates=skip_non_finite_updates,
            **schedule,
        )
        collector = Collector.for_learner(
            envs, learner, seed=seed, max_env_restarts=max_env_restarts, env_factory=env_factory
        )
        self._wire(learner, collector, total_steps=total_steps, loggers=loggers, log_interval=log_interval)

    def _wire(
        self,
        learner: Learner,
        collector: BatchSource,
        *,
        total_steps: int | None,
        loggers: Any,
        log_interval: int | None,
    ) -> None:
        """Connect a Learner and a collector (subclasses build their own collector, then call this)."""
        self.learner = learner
        self.collector = collector
        self.seed = learner.seed
        self.total_steps = total_steps
        interval = (1000 if learner.off_policy else 0) if log_interval is None else log_interval
        self.metrics_log = MetricsLog(list(loggers), interval)
        self.run_config: dict[str, Any] | None = None  # the run config it was built from, saved in checkpoints

    # ------------------------------------------------------------------ what users read
    agents = property(lambda self: self.learner.agents, doc="The composition's agents.")
    composition = property(
        lambda self: self.learner.composition, doc="Who provides and needs which keys, in which order."
    )
    optimizer = property(lambda self: self.learner.optimizer, doc="The one optimizer over every agent's parameters.")
    replay = property(lambda self: self.learner.replay, doc="The replay buffer (off-policy schedules), else None.")
    generator = property(lambda self: self.learner.generator, doc="Drives action sampling and minibatch order.")
    acting = property(lambda self: self.learner.acting, doc="The agent that chooses actions.")
    schedule = property(lambda self: self.learner.schedule, doc="The resolved update schedule.")
    device = property(lambda self: self.learner.device, doc="Where the networks live.")
    num_envs = property(lambda self: self.learner.num_envs, doc="Envs feeding each batch.")
    num_updates = property(lambda self: self.learner.num_updates, doc="Updates so far.")
    envs = property(lambda self: self.collector.envs, doc="The vector env (after restarts, the new one).")
    episodes: property = property(lambda self: self.collector.episodes.finished, doc="Finished episodes.")
    metrics = property(lambda self: self.metrics_log.metrics, doc="The last logged metrics.")
    loggers = property(
        lambda self: self.metrics_log.loggers, lambda self, value: setattr(self.metrics_log, "loggers", list(value))
    )

    @property
    def global_step(self) -> int:
        """Environment steps taken (over all envs)."""
        return self.collector.global_step

    @global_step.setter
    def global_step(self, value: int) -> None:
        self.collector.global_step = value

    @property
    def total_steps(self) -> int | None:
        """The run's step budget (the collector holds it: the acting agent's schedules read it there)."""
        return self.collector.total_steps

    @total_steps.setter
    def total_steps(self, value: int | None) -> None:
        self.collector.total_steps = value

    def recent_return(self, window: int = 20) -> float:
        return self.episodes.recent_return(window)

    # ------------------------------------------------------------------ the environment loop
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Choose actions for a batch of observations and remember what the agents need of them."""
        return self.collector.act(obs)

    def observe(
        self,
        next_obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """Store the outcome of ``envs.step``; update when the rollout is full (see :meth:`Collector.observe`)."""
        batch = self.collector.observe(next_obs, reward, terminated, truncated, info)
        if batch is not None:
            self.learn(batch)

    def restart_envs(self, seed: int | None = None) -> np.ndarray:
        """Start the environments afresh after a failure (see :meth:`Collector.restart_envs`)."""
        return self.collector.restart_envs(seed)

    def learn(self, batch: Batch) -> dict[str, float]:
        """Update on one collected batch (``[rollout_steps, num_envs, ...]`` tensors of every collected
        key, on the training device) and log when due; returns the update's metrics."""
        metrics = self.learner.update(batch, global_step=self.global_step, total_steps=self.total_steps)
        self.metrics_log.accumulate(metrics)
        if self.metrics_log.due(self.global_step):
            counters = {**self.learner.counters(), **self.collector.counters()}
            learning_rate = self.learner.optimizer.param_groups[0]["lr"]
            self.metrics_log.log(self.global_step, self.episodes, learning_rate, counters)
        return metrics

    def warmup(self, seed: int | None = None) -> int:
        """Step the envs with seeded random actions for as long as any agent asked (``warmup_steps``)
        and hand the observations to those agents (e.g. RND initializing its observation statistics).
        Not counted in ``global_step``; ``train`` calls it before the first step. Returns the steps taken."""
        wanting = [agent for agent in self.agents if agent.warmup_steps > 0]
        if not wanting:
            return 0
        steps = max(agent.warmup_steps for agent in wanting)
        observations = self.collector.random_observations(steps, self.seed if seed is None else seed)
        for agent in wanting:
            agent.warmup(observations[: agent.warmup_steps])
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
        stop_requested: Callable[[], bool] | None = None,
        save_on_error: str | os.PathLike | None = None,
    ) -> Trainer:
        """Collect and learn until ``total_steps`` environment steps were taken (rounded up to a whole rollout).

        The envs are seeded and reset first, except right after ``load_state`` restored them (and
        ``seed`` is None): then the saved episodes continue. ``progress`` shows a progress bar (plain
        lines when not on a terminal or when ``quiet``). ``on_update`` runs whenever metrics are
        logged; ``stop_when`` is checked then and ends training early when it returns True.
        ``stop_requested`` is checked after every update (e.g. :class:`~rl_agents.training.interrupts.StopSignals`
        after a Ctrl-C): training then ends there, at an update boundary, where it can be saved.

        When training stops on a NaN/inf, a failed environment (past ``max_env_restarts``) or failed
        workers, the trainer is left at an update boundary with nothing of the failed step applied.
        With ``save_on_error`` (a checkpoints directory) it is saved there as ``last_good`` before the
        error is raised; the error's ``checkpoint`` attribute holds the path (None if saving failed).
        """
        from rl_agents.progress import TrainingProgress

        self.total_steps = total_steps
        resuming = self.collector.resume_obs is not None and seed is None  # continuing restored episodes
        if not resuming and self.global_step == 0:
            self.warmup(seed=self.seed if seed is None else seed)
        self.collector.begin(seed)
        self.metrics_log.start(self.global_step)
        with TrainingProgress(total_steps, enabled=progress, plain=quiet) as bar:
            # Whole rollouts only: training ends on an update, where a checkpoint can be written.
            while self.global_step < total_steps or self.collector.step_in_rollout != 0:
                logs_before = self.metrics_log.num_logs
                try:
                    self.learn(self.collector.collect())
                except (EnvError, NonFiniteError, CollectionError, ContractError) as error:  # at an update boundary
                    self._save_after_error(error, save_on_error)
                    raise
                if self.metrics_log.num_logs != logs_before:
                    bar.update(self.global_step, self.recent_return())
                    if on_update is not None:
                        on_update(self)
                    if stop_when is not None and stop_when(self):
                        break
                if stop_requested is not None and stop_requested():
                    break
            bar.update(self.global_step, self.recent_return())
        return self

    def _save_after_error(self, error: Exception, checkpoints_dir: Any) -> None:
        """Save the trainer as ``<checkpoints_dir>/last_good`` and note the path on ``error``."""
        if checkpoints_dir is None:
            return
        try:
            error.checkpoint = self.save(checkpoints_dir, name=LAST_GOOD_CHECKPOINT)  # type: ignore[attr-defined]
        except Exception as save_error:
            error.checkpoint = None  # type: ignore[attr-defined]
            error.add_note(f"saving the trainer to {checkpoints_dir} failed: {type(save_error).__name__}: {save_error}")

    def evaluate(
        self,
        episodes: int = 10,
        *,
        envs: gym.vector.VectorEnv | None = None,
        deterministic: bool = True,
        seed: int = 12345,
        frames: list[np.ndarray] | None = None,
    ) -> EvaluationResult:
        """Mean and spread of the acting agent's return over ``episodes`` fresh episodes, without
        training or moving normalizer statistics. Actions are greedy / the mean, as Stable-Baselines3's
        ``evaluate_policy`` takes them (``deterministic=False`` samples, e.g. DQN's epsilon-greedy; ``rl-agents
        eval`` samples on MiniGrid and Atari, as rl-zoo3 does: ``rl_agents.envs.samples_when_evaluated``).
        ``envs`` defaults to new envs from the run config; ``frames`` collects env 0's renders (envs
        made with ``render_mode="rgb_array"``)."""
        from rl_agents.evaluation import evaluate_agent

        if envs is None:
            envs = self._evaluation_envs(episodes)
        # Where training is (a loaded trainer has not acted yet): DQN's epsilon, for stochastic evaluation.
        self.acting.set_progress(self.global_step, self.total_steps)
        return evaluate_agent(
            self.acting, envs, episodes, deterministic=deterministic, seed=seed, device=self.device, frames=frames
        )

    def _evaluation_envs(self, episodes: int) -> gym.vector.VectorEnv:
        """Fresh envs like the training envs: the run config's, else how make_envs built them."""
        from rl_agents.envs import make_envs
        from rl_agents.envs.make import env_factory_of

        if self.run_config is not None:
            trainer_config = self.run_config.get("trainer", {})
            num_envs = min(trainer_config.get("num_envs", 1), episodes)
            vectorization = trainer_config.get("vectorization", "sync")
            keys = self.run_config.get("observation_keys")
            kwargs = self.run_config.get("env_kwargs", {})
            return make_envs(self.run_config["env"], num_envs, vectorization, observation_keys=keys, **kwargs)
        factory = env_factory_of(self.envs) if self.envs is not None else None
        if factory is None:
            raise ValueError("pass envs=... to evaluate(): this trainer's envs were not built by make_envs")
        return factory()

    # ------------------------------------------------------------------ state and checkpoints
    def state_dict(self, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole training state as a tree of the components' state dicts (see
        :mod:`rl_agents.training.state_tree`), with ``config`` (default ``run_config``). Only at an
        update boundary."""
        return state_tree(
            learner=self.learner,
            collector=self.collector,
            metrics_log=self.metrics_log,
            seed=self.seed,
            total_steps=self.total_steps,
            config=self.run_config if config is None else config,
        )

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Restore a :meth:`state_dict` of a trainer with the same agents. Everything is checked
        before anything changes: on StateError this trainer is untouched. Returns warnings (state
        that could not be restored here, e.g. a generator saved on another device type)."""
        apply, notes = prepare_tree_load(
            state, learner=self.learner, collector=self.collector, metrics_log=self.metrics_log, set_run=self._set_run
        )
        apply()
        return notes

    def _set_run(self, seed: int, total_steps: int | None, config: dict[str, Any] | None) -> None:
        self.seed, self.total_steps = seed, total_steps
        if config is not None and self.run_config is None:
            self.run_config = config

    def save(self, checkpoints_dir: Any, *, config: Any = None, name: str | None = None) -> Any:
        """Save a checkpoint to ``<checkpoints_dir>/<name>`` (default ``step_<global_step>``) atomically
        and return its ``Path`` (see :mod:`rl_agents.checkpointing`). Only at an update boundary.
        ``config`` (a RunConfig or its dict) is stored instead of ``run_config``."""
        if config is not None and not isinstance(config, dict):
            config = config_to_dict(config)
        tree = self.state_dict(config)
        return save_checkpoint(tree, checkpoints_dir, name=name or step_dir_name(self.global_step))

    def load_state(
        self, path: Any, *, skip_damaged: bool = False, on_skip: Callable[[Any, str], None] | None = None
    ) -> Any:
        """Restore a checkpoint (or a run's newest one) into this trainer, which has the same agents.
        Raises CheckpointError, leaving the trainer untouched, if it cannot; a run whose newest
        checkpoint is damaged raises DamagedCheckpointError unless ``skip_damaged`` (then the newest
        intact one is loaded and ``on_skip(path, reason)`` hears of each skipped). Returns the
        checkpoint's directory."""
        directory, tree = read_checkpoint(path, skip_damaged=skip_damaged, on_skip=on_skip)
        for note in self.restore_checkpoint(directory, tree):
            warnings.warn(f"{directory}: {note}", stacklevel=2)
        return directory

    def restore_checkpoint(self, directory: Any, tree: dict[str, Any]) -> list[str]:
        """Restore the state ``tree`` already read from the checkpoint at ``directory`` (no second
        read); a state that does not fit is a CheckpointError naming its file. Returns the notes of
        :meth:`load_state_dict` (state that could not be restored here)."""
        try:
            return self.load_state_dict(tree)
        except StateError as error:
            raise CheckpointError(f"{directory / STATE_FILE}: {error}") from None

    @classmethod
    def from_config(
        cls, config: RunConfig, *, envs: gym.vector.VectorEnv | None = None, loggers: Any = (), **overrides: Any
    ) -> Trainer:
        """The environments (unless ``envs`` are given), agents and trainer a run config describes."""
        return build_from_config(cls, config, envs=envs, loggers=loggers, overrides=overrides)

    @classmethod
    def load(
        cls,
        path: Any,
        envs: gym.vector.VectorEnv | None = None,
        *,
        device: str | torch.device | None = None,
        loggers: Any = (),
        trust_code: bool = False,
        agent_classes: Iterable[type[Agent]] = (),
    ) -> Trainer:
        """Rebuild a trainer from a checkpoint and restore its state: from its run config when it was
        built from one, else from what it recorded of its agents (class and constructor options), its
        settings and its envs. ``envs`` default to the recorded environments; ``device`` overrides the
        recorded one.

        Shipped and registered (entry-point) agents are rebuilt as recorded. A class the checkpoint
        names by import path is code from elsewhere: it is imported only with ``trust_code=True``, or
        taken from ``agent_classes`` when one of them has that import path (no import)."""
        imports = AgentImports.of(trust=trust_code, classes=agent_classes)
        return load_with_class(cls, path, envs, device=device, loggers=loggers, imports=imports)
