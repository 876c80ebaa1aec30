"""The Trainer: mediator between a Gymnasium vector environment and a composition of agents.

The environment loop is public::

    obs, info = envs.reset(seed=seed)
    while trainer.global_step < total_steps:
        action = trainer.act(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        trainer.observe(obs, reward, terminated, truncated, info)

``observe`` stores the transition and, when the rollout is full, runs the update. ``train`` is the
same loop with a progress bar.

Gymnasium 1.x autoreset: with the default next-step mode, an env whose episode ended at step t
returns its final observation at t and resets at t+1, ignoring the action; that step t+1 is stored but
marked invalid and never trained on. With same-step mode the final observation comes in
``info["final_obs"]``. Either way ``next_obs`` holds the true next observation, so truncated
episodes bootstrap from the value of their real final state.

Bad numbers and failing environments stop training with an error that says where: a NaN or infinite
loss term names the agent and the term (:class:`NonFiniteLossError`; a non-finite gradient names
the agent whose parameters hold it), a NaN or infinite observation or reward names the env index
(:class:`NonFiniteObservationError`), and an env that raises, returns observations of the wrong
shape or dtype, or whose worker process dies raises :class:`rl_agents.envs.EnvError` naming the env
when it can be known (envs from ``make_envs``, envs wrapped in ``rl_agents.envs.IndexedEnv``, and the
workers of an ``AsyncVectorEnv``). Nothing of the failed step is applied, so the trainer can still
be saved; ``train(..., save_on_error=dir)`` saves it as ``dir/last_good`` before raising.
``Trainer(skip_non_finite_updates=True)`` skips non-finite minibatch updates instead of stopping, and
``Trainer(max_env_restarts=N)`` lets ``train`` rebuild the environments after a failure (see
:meth:`Trainer.restart_envs`).
"""

from __future__ import annotations

import math
import os
import signal
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.agent import (
    EXTRINSIC,
    NEXT_OBS,
    OBS,
    REPLAY_KEYS,
    TERMINATED,
    TRUNCATED,
    VALID,
    Agent,
    Batch,
    CompositionError,
    EnvContext,
    ReplaySchedule,
    Schedule,
)
from rl_agents.composition import Composition, collect_streams, find_acting_agent, resolve
from rl_agents.envs import EnvError, env_factory_of
from rl_agents.logging import Logger
from rl_agents.replay import ReplayBuffer
from rl_agents.storage import RolloutStorage

if TYPE_CHECKING:
    from rl_agents.evaluation import EvaluationResult

EXTRINSIC_REWARD = f"reward/{EXTRINSIC}"


# The name under which train(..., save_on_error=dir) saves the trainer when training stops on an error.
LAST_GOOD_CHECKPOINT = "last_good"


class NonFiniteError(FloatingPointError):
    """A NaN or infinite number stopped training. ``checkpoint``: where ``train(..., save_on_error=...)``
    saved the trainer before raising (None otherwise)."""

    checkpoint: Any = None


class NonFiniteLossError(NonFiniteError):
    """A loss term or gradient became NaN or infinite; the message names the agent and the loss term
    (or the agent whose parameters hold the non-finite gradient)."""


class NonFiniteObservationError(NonFiniteError, EnvError):
    """An environment returned a NaN or infinite observation or reward; ``indices`` are the envs."""

    def __init__(self, message: Any, indices: Any = None):
        EnvError.__init__(self, message, indices)


@dataclass
class EpisodeStats:
    returns: list[float]
    lengths: list[int]
    end_steps: list[int]


def _split_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """Bounds of ``parts`` nearly equal, non-empty slices (like torch.tensor_split)."""
    edges = [length * index // parts for index in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]


def _metrics_of(agent_name: str, logged: dict[str, float]) -> dict[str, float]:
    prefix = agent_name + "/"
    return {key[len(prefix):]: value for key, value in logged.items() if key.startswith(prefix)}


def _non_finite_terms(values: dict[str, float], agents: list[Agent]) -> str:
    bad = []
    for key, value in values.items():
        if "/loss/" in key and not math.isfinite(value):
            agent, term = key.split("/loss/", 1)
            bad.append(f"agent {agent!r} loss term {term!r} is {value}")
    if bad:
        return "non-finite loss: " + "; ".join(bad)
    weights = ", ".join(f"{agent.name!r} {agent.loss_weight}" for agent in agents)
    return f"non-finite loss: every loss term is finite but their weighted sum is not (loss weights: {weights})"


def _describe_non_finite(row: np.ndarray) -> str:
    flat = np.ravel(row)
    positions = np.flatnonzero(~np.isfinite(flat))
    if flat.size == 1:
        return str(flat[0])
    shown = ", ".join(f"element {int(i)} is {flat[i]}" for i in positions[:3])
    return shown + (f" (and {len(positions) - 3} more)" if len(positions) > 3 else "")


def _failed_workers(envs: gym.vector.VectorEnv) -> dict[int, str]:
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


def _close_quietly(envs: gym.vector.VectorEnv) -> None:
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


def _check_schedule(schedule: Schedule | ReplaySchedule) -> None:
    if isinstance(schedule, Schedule):
        positive = ("num_steps", "num_epochs", "num_minibatches")
    else:
        positive = ("buffer_size", "batch_size", "train_frequency", "gradient_steps", "target_update_interval", "n_step")
        if not 0.0 < schedule.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {schedule.tau}")
        if schedule.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {schedule.learning_starts}")
    for name in positive:
        if getattr(schedule, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(schedule, name)}")
    if schedule.max_grad_norm is not None and not schedule.max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0 or None, got {schedule.max_grad_norm}")


@contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Treat subnormal floats as zero on the CPU while optimizing.

    Adam's moment estimates of weights whose gradient stays zero (e.g. behind a dead ReLU) decay into
    the subnormal range, where CPU arithmetic is many times slower: with them, Adam took 450 us per
    step instead of 46 us for DQN's (256, 256) network. The flag is process-wide, so it is switched
    off again afterwards; values below 1e-38 become 0, which changes nothing measurable.
    """
    if not torch.set_flush_denormal(True):  # not supported on this CPU
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False")
    return resolved


class Trainer:
    """Trains a composition of agents on a Gymnasium vector environment.

    Args:
        envs: a ``gymnasium.vector.VectorEnv`` (``gym.make_vec(...)``).
        agents: exactly one acting agent plus any number of others (e.g. ``[PPO(), RND()]``).
        seed: seeds network initialization, action sampling and minibatch order (not global RNGs).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        total_steps: needed by learning-rate annealing and exploration schedules; ``train(total_steps)``
            sets it too.
        loggers: sinks receiving one metrics dict per update (on-policy) or per ``log_interval`` steps.
        log_interval: env steps between logged metrics (means since the last log); ``None``: every
            update on-policy, every 1000 steps off-policy.
        skip_non_finite_updates: skip (no optimizer step) a minibatch whose loss or gradient is NaN or
            infinite, with a warning, counting it in ``skipped_updates`` (logged as
            ``trainer/skipped_updates``, the total so far), instead of raising NonFiniteLossError.
        max_env_restarts: how many times over this trainer's life ``train`` may restart the
            environments after an :class:`~rl_agents.envs.EnvError` (see :meth:`restart_envs`) before
            it raises; 0 (the default) raises on the first. Restarts are logged as ``trainer/env_restarts``.
        env_factory: builds a fresh vector env like ``envs`` for a restart; defaults to the recipe kept
            by ``rl_agents.envs.make_envs`` for envs it built. Without one, a restart resets ``envs``.
        **schedule: settings of the acting agent's schedule; ``None`` values take its suggestion.
            On-policy (:class:`Schedule`, e.g. PPO, A2C): num_steps, num_epochs, num_minibatches,
            max_grad_norm, anneal_lr. Off-policy (:class:`ReplaySchedule`, e.g. DQN, SAC): buffer_size,
            batch_size, learning_starts, train_frequency, gradient_steps, target_update_interval, tau,
            n_step, max_grad_norm.
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
        if not isinstance(envs, gym.vector.VectorEnv):
            raise TypeError(f"envs must be a gymnasium.vector.VectorEnv (use gym.make_vec), got {type(envs).__name__}")
        if isinstance(max_env_restarts, bool) or not isinstance(max_env_restarts, int) or max_env_restarts < 0:
            raise ValueError(f"max_env_restarts must be a whole number >= 0, got {max_env_restarts!r}")
        if env_factory is not None and not callable(env_factory):
            raise TypeError(f"env_factory must be a callable returning a vector env, got {type(env_factory).__name__}")
        self.skip_non_finite_updates = bool(skip_non_finite_updates)
        self.max_env_restarts = max_env_restarts
        self.env_factory = env_factory if env_factory is not None else env_factory_of(envs)
        self.skipped_updates = 0  # minibatch updates skipped for non-finite numbers (this trainer's life)
        self.num_env_restarts = 0
        self.envs = envs
        self.agents = list(agents)
        self.seed = seed
        self.device = resolve_device(device)
        self.num_envs = envs.num_envs
        self.total_steps = total_steps
        self.loggers = list(loggers)
        self.autoreset_mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {self.autoreset_mode} is not supported; use NEXT_STEP or SAME_STEP")

        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.acting = find_acting_agent(self.agents)
        self.streams = collect_streams(self.agents)
        self._bind_agents(self.streams)
        self.schedule: Schedule | ReplaySchedule = self._resolve_schedule(schedule)
        self.off_policy = isinstance(self.schedule, ReplaySchedule)
        self.composition: Composition = resolve(
            self.agents, self.acting, self.streams, extra_keys=REPLAY_KEYS if self.off_policy else frozenset()
        )
        self.optimizer = self._build_optimizer()
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.storage = self._build_storage()
        self._obs_batch_shape = (self.num_envs, *self.envs.single_observation_space.shape)
        self._obs_np_dtype = np.dtype(np.uint8) if self._obs_dtype == torch.uint8 else np.dtype(np.float32)
        self._obs_dtype_accepted = self._obs_np_dtype
        self.replay = self._build_replay()
        self._target_pairs = [pair for agent in self.agents for pair in agent.target_networks()]
        self._target_tensors: list[tuple[list[torch.Tensor], ...]] | None = None
        self.gradient_steps = 0
        self.log_interval = (1000 if self.off_policy else 0) if log_interval is None else log_interval
        self._stored_act_outputs = self.composition.collected_keys & self.composition.specs[self.acting.name].act_outputs

        self.global_step = 0
        self.num_updates = 0
        self._step_in_rollout = 0
        self._acted = False
        self._reset_pending = np.zeros(self.num_envs, dtype=bool)
        self._episode_return = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_length = np.zeros(self.num_envs, dtype=np.int64)
        self.episodes = EpisodeStats([], [], [])
        self._log_from_episode = 0
        self.metrics: dict[str, float] = {}
        self.num_logs = 0
        self._last_log_step = 0
        self._log_sums: dict[str, float] = {}
        self._log_counts: dict[str, int] = {}
        self.run_config: dict[str, Any] | None = None  # set when built from a RunConfig (rl_agents.config)
        # The observation the env loop continues from (saved with the envs' state in checkpoints), and
        # the one train() continues from after load_state restored the envs instead of resetting them.
        self._last_obs: Any = None
        self._resume_obs: Any = None
        self._start_step, self._start_time = 0, time.perf_counter()

    # ------------------------------------------------------------------ construction
    def _bind_agents(self, streams: tuple) -> None:
        for agent in sorted(self.agents, key=lambda a: a.name):
            ctx = EnvContext(
                observation_space=self.envs.single_observation_space,
                action_space=self.envs.single_action_space,
                num_envs=self.num_envs,
                device=self.device,
                streams=streams,
                generator=self.generator,
            )
            # Each agent's initialization depends on the seed and its own name only, never on the
            # other agents or the list order, and leaves the global RNG untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1_000_003 + zlib.crc32(agent.name.encode()))
                agent.bind(ctx)
            agent.to(self.device)

    def _resolve_schedule(self, overrides: dict[str, Any]) -> Schedule | ReplaySchedule:
        schedule = self.acting.suggested_schedule() or Schedule()
        names = {field.name for field in fields(schedule)}
        every_name = {field.name for kind in (Schedule, ReplaySchedule) for field in fields(kind)}
        for key, value in overrides.items():
            if key not in every_name:
                raise TypeError(f"Trainer got an unexpected keyword argument {key!r}")
            if value is None:
                continue
            if key not in names:
                how = "off-policy from a replay buffer" if isinstance(schedule, ReplaySchedule) else "on-policy from rollouts"
                raise CompositionError(
                    f"{key!r} does not apply: agent {self.acting.name!r} trains {how}, "
                    f"whose settings are {', '.join(sorted(names))}"
                )
            setattr(schedule, key, value)
        _check_schedule(schedule)
        return schedule

    def _build_optimizer(self) -> torch.optim.Optimizer:
        groups = []
        for agent in sorted(self.agents, key=lambda a: a.name):
            agent_groups = agent.param_groups()
            for index, group in enumerate(agent_groups):
                if group.get("lr") is None:
                    raise CompositionError(f"agent {agent.name!r} has trainable parameters but no learning rate")
                name = agent.name if len(agent_groups) == 1 else f"{agent.name}/{group.get('name', index)}"
                groups.append({**group, "name": name})
        if not groups:
            raise CompositionError("no agent has trainable parameters")
        try:  # the fused kernel is several times faster for the many small tensors of RL networks
            return torch.optim.Adam(groups, eps=1e-5, fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(groups, eps=1e-5, foreach=True)

    @property
    def rollout_steps(self) -> int:
        """Vector steps between updates: the rollout length, or the replay schedule's train frequency."""
        return self.schedule.train_frequency if isinstance(self.schedule, ReplaySchedule) else self.schedule.num_steps

    def _build_replay(self) -> ReplayBuffer | None:
        if not isinstance(self.schedule, ReplaySchedule):
            return None
        return ReplayBuffer(max(self.schedule.buffer_size // self.num_envs, 1), self.num_envs, self.device)

    def _build_storage(self) -> RolloutStorage:
        storage = RolloutStorage(self.rollout_steps, self.num_envs, self.device)
        keys = self.composition.collected_keys
        obs_space = self.envs.single_observation_space
        self._obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        storage.allocate_host(OBS, tuple(obs_space.shape), self._obs_dtype)
        if NEXT_OBS in keys or self.off_policy:  # the replay buffer bootstraps from it
            storage.allocate_host(NEXT_OBS, tuple(obs_space.shape), self._obs_dtype)
        for key in (TERMINATED, TRUNCATED, VALID):
            storage.allocate_host(key, (), torch.bool)
        storage.allocate_host(EXTRINSIC_REWARD, (), torch.float32)
        return storage

    # ------------------------------------------------------------------ environment loop
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Choose actions for a batch of observations and remember what the agents need of them."""
        obs = self._check_observations(obs, "passed to act")
        step = self._step_in_rollout
        self.storage.write_host(step, OBS, obs)
        obs_tensor = self.storage.host[OBS][step].to(self.device, non_blocking=True)
        self.acting.set_progress(self.global_step, self.total_steps)
        with torch.inference_mode():
            if self.off_policy and self.global_step < self.schedule.learning_starts:
                outputs = {key: value.to(self.device) for key, value in self.acting.random_act(self.num_envs).items()}
            else:
                outputs = self.acting.act(obs_tensor)
            env_action = self.acting.env_action(outputs)
        self.storage.write_device(step, {k: v for k, v in outputs.items() if k in self._stored_act_outputs})
        self._acted = True
        return env_action.cpu().numpy()

    def observe(
        self,
        next_obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
    ) -> None:
        """Store the outcome of ``envs.step`` and update when the rollout is full.

        Raises :class:`~rl_agents.envs.EnvError` (observations, rewards or flags of the wrong shape,
        observations of a dtype that cannot be stored) or :class:`NonFiniteObservationError` (a NaN or
        infinite observation or reward) before storing anything: go on with :meth:`restart_envs`."""
        if not self._acted:
            raise RuntimeError("observe() was called without a preceding act(); call trainer.act(obs) before envs.step")
        next_obs = self._check_observations(next_obs, "returned by step")
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        reward = np.asarray(reward, dtype=np.float32)
        expected = (self.num_envs,)
        if reward.shape != expected or terminated.shape != expected or truncated.shape != expected:
            raise EnvError(
                f"the vector env returned rewards, terminated and truncated of shapes {reward.shape}, "
                f"{terminated.shape} and {truncated.shape}; expected {expected} each"
            )
        if not math.isfinite(reward.sum()):  # one cheap reduction; NaN and inf propagate through it
            self._raise_if_non_finite(reward, "reward", "returned by step")
        done = terminated | truncated
        true_next_obs = self._true_next_obs(next_obs, done, info) if NEXT_OBS in self.storage.host else None
        self._acted = False
        step = self._step_in_rollout
        valid = ~self._reset_pending
        write = self.storage.write_host
        write(step, VALID, valid)
        write(step, TERMINATED, terminated & valid)
        write(step, TRUNCATED, truncated & valid)
        write(step, EXTRINSIC_REWARD, np.where(valid, reward, 0.0))
        if true_next_obs is not None:
            write(step, NEXT_OBS, true_next_obs)
        self._track_episodes(reward, done, valid, info)
        self._reset_pending = done if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
        self._last_obs = next_obs
        self._step_in_rollout += 1
        self.global_step += self.num_envs
        if self._step_in_rollout == self.rollout_steps:
            self._step_in_rollout = 0
            self.update()

    def _true_next_obs(self, next_obs: np.ndarray, done: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if self.autoreset_mode != AutoresetMode.SAME_STEP or not done.any():
            return np.asarray(next_obs)
        patched = np.array(next_obs, copy=True)
        final_mask = info.get("_final_obs", done)
        for index in np.flatnonzero(final_mask):
            patched[index] = info["final_obs"][index]
        if patched.dtype.kind == "f" and not math.isfinite(patched.sum()):
            self._raise_if_non_finite(patched, "final observation", "in info['final_obs']")
        return patched

    def _check_observations(self, obs: Any, source: str) -> np.ndarray:
        """``obs`` as an array, after cheap checks of its shape, dtype and (float data) finiteness."""
        obs = np.asarray(obs)
        if obs.shape != self._obs_batch_shape:
            raise EnvError(
                f"observations {source} have shape {obs.shape}; expected {self._obs_batch_shape} "
                f"({self.num_envs} envs x the observation space's shape {self._obs_batch_shape[1:]})"
            )
        if obs.dtype != self._obs_dtype_accepted:
            if not np.can_cast(obs.dtype, self._obs_np_dtype, "same_kind"):
                raise EnvError(
                    f"observations {source} have dtype {obs.dtype}, which cannot be stored as {self._obs_np_dtype} "
                    f"(the observation space's dtype is {self.envs.single_observation_space.dtype})"
                )
            self._obs_dtype_accepted = obs.dtype
        if obs.dtype.kind == "f" and not math.isfinite(obs.sum()):  # uint8 images are never checked
            self._raise_if_non_finite(obs, "observation", source)
        return obs

    def _raise_if_non_finite(self, values: np.ndarray, what: str, source: str) -> None:
        """NonFiniteObservationError naming the envs whose row of ``values`` holds NaN or inf (a
        finite sum that overflowed raises nothing)."""
        rows = values.reshape(len(values), -1)
        indices = np.flatnonzero(~np.isfinite(rows).all(axis=1)).tolist()
        if not indices:
            return
        if len(indices) == 1:
            details = _describe_non_finite(values[indices[0]])
        else:
            details = "; ".join(f"env {index}: {_describe_non_finite(values[index])}" for index in indices[:4])
        envs = "env" + ("s " if len(indices) > 1 else " ") + ", ".join(map(str, indices))
        raise NonFiniteObservationError(f"non-finite {what} of {envs} {source} at global step {self.global_step}: {details}", indices)

    def _step_envs(self, action: np.ndarray) -> tuple:
        """``envs.step`` whose failures become an EnvError naming the env when it can be known."""
        try:
            return self.envs.step(action)
        except EnvError:
            raise
        except Exception as error:
            raise self._env_failure(error, "step") from error

    def _env_failure(self, error: Exception, during: str) -> EnvError:
        failed = _failed_workers(self.envs)
        what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if failed:
            envs = "; ".join(f"env {index}: {how}" for index, how in failed.items())
            return EnvError(f"the vector env failed in {during} ({envs}): {what}", list(failed))
        return EnvError(
            f"the vector env failed in {during}: {what} (to have the failing env named, build the envs with "
            "rl_agents.envs.make_envs or wrap each in rl_agents.envs.IndexedEnv)"
        )

    def _discard_partial_rollout(self) -> None:
        """Back to an update boundary: the steps stored since the last update are dropped."""
        self._step_in_rollout = 0
        self._acted = False

    def restart_envs(self, seed: int | None = None) -> np.ndarray:
        """Start the environments afresh after a failure; returns their first observations.

        Builds new envs with ``env_factory`` and closes the old ones (quietly: they may be broken),
        or, without a factory, resets the existing ones. The partly collected rollout is discarded:
        it is never trained on, while its steps stay counted in ``global_step`` and the episodes it
        finished in the episode statistics. Every env starts a new episode. ``train`` calls this on
        an EnvError while ``max_env_restarts`` allows; a hand-written loop may call it too and go on
        with ``trainer.act(obs)``. ``seed`` defaults to one derived from the trainer's seed, the
        step and the number of restarts. Raises EnvError if the envs cannot be started.
        """
        self._discard_partial_rollout()
        self.num_env_restarts += 1
        if self.env_factory is not None:
            _close_quietly(self.envs)
            try:
                envs = self.env_factory()
            except Exception as error:
                raise EnvError(f"could not rebuild the environments: {type(error).__name__}: {error}") from error
            if (
                envs.num_envs != self.num_envs
                or envs.single_observation_space != self.envs.single_observation_space
                or envs.single_action_space != self.envs.single_action_space
            ):
                raise ValueError("env_factory built envs whose number or spaces differ from the trainer's envs")
            self.envs = envs
        if seed is None:
            seed = int(np.random.SeedSequence([self.seed, self.global_step, self.num_env_restarts]).generate_state(1)[0])
        try:
            obs, _ = self.envs.reset(seed=seed)
        except EnvError:
            raise
        except Exception as error:
            raise self._env_failure(error, "reset") from error
        self._reset_pending[:] = False
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        self._last_obs = obs
        return obs

    def _recover_from_env_error(self, error: EnvError, save_on_error: Any) -> np.ndarray:
        """Restart the envs while ``max_env_restarts`` allows; else save (if asked) and raise."""
        while self.num_env_restarts < self.max_env_restarts:
            warnings.warn(
                f"{error}; restarting the environments (restart {self.num_env_restarts + 1} of at most {self.max_env_restarts})",
                RuntimeWarning,
                stacklevel=3,
            )
            try:
                return self.restart_envs()
            except EnvError as again:
                error = again
        self._discard_partial_rollout()
        self._last_obs = None  # the envs failed: there is no observation to continue from
        self._save_after_error(error, save_on_error)
        raise error

    def _save_after_error(self, error: Exception, checkpoints_dir: Any) -> None:
        """Save the trainer as ``<checkpoints_dir>/last_good`` and note the path on ``error``."""
        if checkpoints_dir is None:
            return
        from rl_agents.checkpoint import save_checkpoint

        try:
            error.checkpoint = save_checkpoint(self, checkpoints_dir, name=LAST_GOOD_CHECKPOINT)  # type: ignore[attr-defined]
        except Exception as save_error:
            error.checkpoint = None  # type: ignore[attr-defined]
            error.add_note(f"saving the trainer to {checkpoints_dir} failed: {type(save_error).__name__}: {save_error}")

    def _track_episodes(self, reward: np.ndarray, done: np.ndarray, valid: np.ndarray, info: dict[str, Any]) -> None:
        """Episode returns from the rewards seen, or from ``info["episode"]`` when a
        RecordEpisodeStatistics wrapper reports them (its raw returns survive reward clipping)."""
        self._episode_return += np.where(valid, reward, 0.0)
        self._episode_length += valid
        recorded = info.get("episode") if "_episode" in info else None
        for index in np.flatnonzero(done & valid):
            if recorded is not None and info["_episode"][index]:
                self.episodes.returns.append(float(recorded["r"][index]))
                self.episodes.lengths.append(int(recorded["l"][index]))
            else:
                self.episodes.returns.append(float(self._episode_return[index]))
                self.episodes.lengths.append(int(self._episode_length[index]))
            self.episodes.end_steps.append(self.global_step + self.num_envs)
        self._episode_return[done] = 0.0
        self._episode_length[done] = 0

    def train(
        self,
        total_steps: int,
        *,
        seed: int | None = None,
        progress: bool = True,
        quiet: bool = False,
        on_update: Callable[["Trainer"], None] | None = None,
        stop_when: Callable[["Trainer"], bool] | None = None,
        save_on_error: str | os.PathLike | None = None,
    ) -> "Trainer":
        """Run the environment loop until ``total_steps`` environment steps have been taken (rounded
        up to a whole rollout).

        The envs are seeded and reset first, except right after ``load_state`` restored them from a
        checkpoint (and ``seed`` is None): then the saved episodes continue from the saved observation.

        ``progress`` shows a progress bar (plain lines when not on a terminal or when ``quiet``).
        ``on_update`` runs whenever metrics are logged (every update on-policy, every ``log_interval``
        steps off-policy); ``stop_when`` is checked then and ends training early when it returns True
        (e.g. once a target return is reached).

        When training stops on a :class:`NonFiniteError` or an :class:`~rl_agents.envs.EnvError`
        (after ``max_env_restarts`` restarts), the trainer is left at an update boundary with nothing
        of the failed step applied (a partly collected rollout is dropped), so it can be saved. With
        ``save_on_error`` (a checkpoints directory) it is saved there as ``last_good`` (which becomes
        the ``latest`` checkpoint) before the error is raised; the error's ``checkpoint`` attribute
        holds the path (None if saving failed, with a note on the error saying why).
        """
        self.total_steps = total_steps
        if self._resume_obs is not None and seed is None:
            # load_state restored the envs' state: continue their episodes exactly where they were.
            obs, self._resume_obs = self._resume_obs, None
        else:
            self._resume_obs = None
            if self.global_step == 0:
                self.warmup(seed=self.seed if seed is None else seed)
            if seed is None:  # a resumed run must not replay the initial states of the run it continues
                seed = self.seed if self.global_step == 0 else int(np.random.SeedSequence([self.seed, self.global_step]).generate_state(1)[0])
            obs, _ = self.envs.reset(seed=seed)
            # Every env starts a new episode: drop the per-env state of episodes the reset abandoned.
            self._reset_pending[:] = False
            self._episode_return[:] = 0.0
            self._episode_length[:] = 0
        self._start_step, self._start_time = self.global_step, time.perf_counter()
        from rl_agents.progress import TrainingProgress

        with TrainingProgress(total_steps, enabled=progress, plain=quiet) as bar:
            # Whole rollouts only: training ends on an update, where a checkpoint can be written.
            while self.global_step < total_steps or self._step_in_rollout != 0:
                logs_before = self.num_logs
                try:
                    action = self.act(obs)
                    obs, reward, terminated, truncated, info = self._step_envs(action)
                    self.observe(obs, reward, terminated, truncated, info)
                except EnvError as error:  # restarts the envs, or saves (if asked) and raises
                    obs = self._recover_from_env_error(error, save_on_error)
                    continue
                except NonFiniteError as error:  # raised by update(): at an update boundary
                    self._save_after_error(error, save_on_error)
                    raise
                if self.num_logs != logs_before:
                    bar.update(self.global_step, self.recent_return())
                    if on_update is not None:
                        on_update(self)
                    if stop_when is not None and stop_when(self):
                        break
            bar.update(self.global_step, self.recent_return())
        return self

    def warmup(self, seed: int | None = None) -> int:
        """Step the envs with seeded random actions for as long as any agent asked (``warmup_steps``)
        and hand the observations to those agents (e.g. RND initializing its observation statistics).

        Not counted in ``global_step``. ``train`` calls it before the first step; a hand-written loop
        calls it once before ``envs.reset``. Returns the number of vector steps taken.
        """
        wanting = [agent for agent in self.agents if agent.warmup_steps() > 0]
        if not wanting:
            return 0
        steps = max(agent.warmup_steps() for agent in wanting)
        self.envs.reset(seed=self.seed if seed is None else seed)
        self.envs.action_space.seed(self.seed if seed is None else seed)
        observations = []
        for _ in range(steps):
            next_obs, *_ = self.envs.step(self.envs.action_space.sample())
            observations.append(torch.as_tensor(np.asarray(next_obs), device=self.device))
        stacked = torch.stack(observations)
        for agent in wanting:
            agent.warmup(stacked[: agent.warmup_steps()])
        return steps

    def evaluate(
        self,
        episodes: int = 10,
        *,
        envs: gym.vector.VectorEnv | None = None,
        deterministic: bool = False,
        seed: int = 12345,
        frames: list[np.ndarray] | None = None,
    ) -> "EvaluationResult":
        """Mean and spread of the acting agent's return over ``episodes`` fresh episodes, without
        training or moving normalizer statistics. ``envs`` defaults to new envs from the run config;
        ``frames`` collects env 0's renders (envs made with ``render_mode="rgb_array"``)."""
        from rl_agents.evaluation import evaluate_agent

        if envs is None:
            if self.run_config is None:
                raise ValueError("pass envs=... to evaluate(): this trainer was not built from a run config")
            from rl_agents.envs import make_envs

            trainer_config = self.run_config.get("trainer", {})
            envs = make_envs(self.run_config["env"], min(trainer_config.get("num_envs", 1), episodes), trainer_config.get("vectorization", "sync"))
        return evaluate_agent(self.acting, envs, episodes, deterministic=deterministic, seed=seed, device=self.device, frames=frames)

    def recent_return(self, window: int = 20) -> float:
        recent = self.episodes.returns[-window:]
        return float(np.mean(recent)) if recent else math.nan

    # ------------------------------------------------------------------ update
    def update(self) -> dict[str, float]:
        """Preprocess the rollout in dependency order, then optimize every agent's summed loss:
        over the rollout itself (on-policy) or over minibatches sampled from the replay buffer, which
        the preprocessed rollout joins first (off-policy). Returns this update's metrics."""
        return self.update_from(self.storage.batch())

    def update_from(self, batch: Batch) -> dict[str, float]:
        """:meth:`update` on a batch collected elsewhere: ``[rollout_steps, num_envs, ...]`` tensors on
        the training device holding every collected key (rl_agents.distributed's learner uses it)."""
        metrics: dict[str, float] = {}
        for agent in self.composition.order:
            for key, value in agent.preprocess(batch).items():
                metrics[f"{agent.name}/{key}"] = value
        if self.replay is None:
            self._set_learning_rate()
            with subnormals_flushed():
                metrics.update(self._optimize(batch))
        else:
            self.replay.add({key: value for key, value in batch.items() if key in self._replay_keys})
            with subnormals_flushed():
                metrics.update(self._optimize_replay())
        for agent in self.agents:
            agent.after_update()
        self.num_updates += 1
        self._accumulate(metrics)
        if self.global_step - self._last_log_step >= self.log_interval:
            self._log()
        return metrics

    @property
    def _replay_keys(self) -> frozenset[str]:
        return self.composition.used_keys | {NEXT_OBS, VALID, TERMINATED, TRUNCATED} | {stream.key for stream in self.streams}

    def _accumulate(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            if isinstance(value, float) and math.isnan(value):
                continue
            self._log_sums[key] = self._log_sums.get(key, 0.0) + value
            self._log_counts[key] = self._log_counts.get(key, 0) + 1

    def _log(self) -> None:
        """Log the mean of every metric since the last log, with episode and speed statistics."""
        metrics = {key: total / self._log_counts[key] for key, total in self._log_sums.items()}
        self._log_sums, self._log_counts = {}, {}
        metrics.update(self._episode_metrics())
        metrics["charts/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        metrics["charts/wall_time"] = time.perf_counter() - self._start_time
        metrics["charts/steps_per_second"] = (self.global_step - self._start_step) / max(time.perf_counter() - self._start_time, 1e-9)
        if self.skip_non_finite_updates:
            metrics["trainer/skipped_updates"] = float(self.skipped_updates)
        if self.max_env_restarts:
            metrics["trainer/env_restarts"] = float(self.num_env_restarts)
        self.metrics = metrics
        self._last_log_step = self.global_step
        self.num_logs += 1
        for logger in self.loggers:
            logger.log(self.global_step, metrics)

    def _set_learning_rate(self) -> None:
        if not isinstance(self.schedule, Schedule) or not self.schedule.anneal_lr or not self.total_steps:
            return
        updates_total = max(self.total_steps // (self.schedule.num_steps * self.num_envs), 1)
        fraction = max(1.0 - self.num_updates / updates_total, 0.0)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = fraction * base

    def _optimize(self, batch: Batch) -> dict[str, float]:
        """Epochs x minibatches over the valid rows; returns the mean of every logged value."""
        used = self.composition.used_keys | {VALID}
        flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items() if k in used}
        valid_rows = flat[VALID].nonzero().squeeze(1)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        sums: dict[str, float] = {}
        count = 0
        for _ in range(self.schedule.num_epochs):
            order = valid_rows[torch.randperm(len(valid_rows), generator=self.generator, device=self.device)]
            # One gather per key and epoch; the minibatches are then contiguous slices (views).
            shuffled = {key: value[order] for key, value in flat.items()}
            last: dict[str, float] = {}
            for start, stop in _split_bounds(len(order), self.schedule.num_minibatches):
                minibatch = {key: value[start:stop] for key, value in shuffled.items()}
                step_values = self._minibatch_step(minibatch, params)
                if step_values is None:  # skipped: non-finite (skip_non_finite_updates)
                    continue
                last = step_values
                for key, value in last.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            if any(agent.stop_epochs(_metrics_of(agent.name, last)) for agent in self.agents):
                break
        return {key: value / max(count, 1) for key, value in sums.items()}

    def _optimize_replay(self) -> dict[str, float]:
        """``gradient_steps`` minibatches sampled from the replay buffer, with target updates."""
        schedule = self.schedule
        assert isinstance(schedule, ReplaySchedule) and self.replay is not None
        if self.global_step <= schedule.learning_starts:  # as SB3: train once more than learning_starts were seen
            return {}
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        sums: dict[str, float] = {}
        count = 0
        for _ in range(schedule.gradient_steps):
            minibatch = self.replay.sample(schedule.batch_size, self.generator, n_step=schedule.n_step, streams=self.streams)
            step_values = self._minibatch_step(minibatch, params)
            if step_values is not None:  # None: skipped as non-finite (skip_non_finite_updates)
                for key, value in step_values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
            self.gradient_steps += 1
            if self.gradient_steps % schedule.target_update_interval == 0:
                self._update_targets(schedule.tau)
        return {key: value / count for key, value in sums.items()}

    @torch.no_grad()
    def _update_targets(self, tau: float) -> None:
        if self._target_tensors is None:  # load_state_dict copies in place, so the tensors stay the same
            self._target_tensors = [
                ([*online.parameters()], [*target.parameters()], [*online.buffers()], [*target.buffers()])
                for online, target in self._target_pairs
            ]
        for online_params, target_params, online_buffers, target_buffers in self._target_tensors:
            if tau == 1.0:
                torch._foreach_copy_(target_params, online_params)
            else:
                torch._foreach_lerp_(target_params, online_params, tau)
            if online_buffers:
                torch._foreach_copy_(target_buffers, online_buffers)

    def _minibatch_step(self, minibatch: Batch, params: list[torch.nn.Parameter]) -> dict[str, float] | None:
        """One optimizer step on the agents' summed loss; returns the logged values, or None when the
        step was skipped because the loss or a gradient is not finite (skip_non_finite_updates)."""
        weighted: list[torch.Tensor] = []
        names: list[str] = []
        logged: list[torch.Tensor | float] = []
        for agent in self.composition.order:
            terms, agent_metrics = agent.loss(minibatch)
            for term_name, term in terms.items():
                weighted.append(term if agent.loss_weight == 1.0 else agent.loss_weight * term)
                names.append(f"{agent.name}/loss/{term_name}")
                logged.append(term.detach())
            names.extend(f"{agent.name}/{key}" for key in agent_metrics)
            logged.extend(agent_metrics.values())
        total = weighted[0] if len(weighted) == 1 else torch.stack(weighted).sum()
        # One conversion for every logged scalar instead of one host sync per value.
        values = dict(zip(names, torch.stack([torch.as_tensor(v, dtype=torch.float32, device=self.device) for v in logged]).tolist()))
        loss = float(total.detach())
        if not math.isfinite(loss):
            return self._non_finite_step(_non_finite_terms(values, self.composition.order))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        # Gradients are checked before clipping, which would spread one agent's NaN over every gradient
        # (get_total_norm + clip_grads_with_norm_ is what clip_grad_norm_ does); NaN and inf reach the norm.
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):
            culprits = self._non_finite_gradients(values)
            if culprits:  # else every gradient is finite and only their sum or norm overflowed
                return self._non_finite_step(f"non-finite gradient although every loss term is finite: {culprits}")
        if self.schedule.max_grad_norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.schedule.max_grad_norm, norm)
        values["trainer/grad_norm"] = grad_norm
        self.optimizer.step()
        values["trainer/loss"] = loss
        return values

    def _non_finite_gradients(self, values: dict[str, float]) -> str:
        """Which agents' parameters hold a NaN or infinite gradient, with those agents' loss terms."""
        parts = []
        for agent in self.composition.order:
            names = [name for name, p in agent.named_parameters() if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            if names:
                shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
                prefix = f"{agent.name}/loss/"
                terms = ", ".join(f"{key[len(prefix):]!r} = {value:.6g}" for key, value in values.items() if key.startswith(prefix))
                parts.append(f"agent {agent.name!r} in {shown} (its loss terms: {terms or 'none'})")
        return "; ".join(parts)

    def _non_finite_step(self, message: str) -> None:
        """Raise NonFiniteLossError, or skip the step with a warning when skip_non_finite_updates."""
        message = f"{message} (update {self.num_updates + 1}, step {self.global_step})"
        if not self.skip_non_finite_updates:
            raise NonFiniteLossError(message + "; skip_non_finite_updates=True (--set trainer.skip_non_finite_updates=true) skips such updates instead")
        self.optimizer.zero_grad(set_to_none=True)
        self.skipped_updates += 1
        warnings.warn(f"skipped a minibatch update: {message}", RuntimeWarning, stacklevel=4)

    def _episode_metrics(self) -> dict[str, float]:
        new_returns = self.episodes.returns[self._log_from_episode:]
        new_lengths = self.episodes.lengths[self._log_from_episode:]
        self._log_from_episode = len(self.episodes.returns)
        if not new_returns:
            return {}
        return {
            "episode/return_mean": float(np.mean(new_returns)),
            "episode/return_std": float(np.std(new_returns)),
            "episode/return_min": float(np.min(new_returns)),
            "episode/return_max": float(np.max(new_returns)),
            "episode/length_mean": float(np.mean(new_lengths)),
            "episode/count": float(len(new_returns)),
        }

    # ------------------------------------------------------------------ checkpoints
    def save(self, checkpoints_dir: Any, *, config: dict[str, Any] | None = None) -> Any:
        """Save a checkpoint to ``<checkpoints_dir>/step_<global_step>/`` atomically and return its ``Path``.

        Only at an update boundary. ``config`` defaults to ``self.run_config``. See rl_agents.checkpoint.
        """
        from rl_agents.checkpoint import save_checkpoint

        return save_checkpoint(self, checkpoints_dir, config=config)

    def load_state(self, path: Any) -> Any:
        """Restore a checkpoint (or a run's latest one) into this trainer, which has the same agents.

        Raises rl_agents.checkpoint.CheckpointError, leaving the trainer untouched, if it cannot.
        """
        from rl_agents.checkpoint import load_state

        return load_state(self, path)

    @classmethod
    def load(cls, path: Any, envs: gym.vector.VectorEnv | None = None, **kwargs: Any) -> "Trainer":
        """Rebuild a trainer from a checkpoint's run config and restore its state.

        ``envs`` defaults to the config's environments; ``device=`` and ``loggers=`` are passed on.
        """
        from rl_agents.checkpoint import load_trainer

        return load_trainer(path, envs, trainer_cls=cls, **kwargs)
