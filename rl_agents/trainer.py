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
"""

from __future__ import annotations

import math
import time
import zlib
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
from rl_agents.logging import Logger
from rl_agents.replay import ReplayBuffer
from rl_agents.storage import RolloutStorage

if TYPE_CHECKING:
    from rl_agents.evaluation import EvaluationResult

EXTRINSIC_REWARD = f"reward/{EXTRINSIC}"


class NonFiniteLossError(FloatingPointError):
    """A loss term or gradient became NaN or infinite."""


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


def _non_finite_terms(values: dict[str, float]) -> str:
    bad = [f"{key.replace('/loss/', ' loss term ')!r} is {value}" for key, value in values.items() if "/loss/" in key and not math.isfinite(value)]
    return "non-finite loss: " + "; ".join(bad) if bad else "the summed loss is not finite"


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
        **schedule: Any,
    ):
        if not isinstance(envs, gym.vector.VectorEnv):
            raise TypeError(f"envs must be a gymnasium.vector.VectorEnv (use gym.make_vec), got {type(envs).__name__}")
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
        self.replay = self._build_replay()
        self._target_pairs = [pair for agent in self.agents for pair in agent.target_networks()]
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
        """Store the outcome of ``envs.step`` and update when the rollout is full."""
        if not self._acted:
            raise RuntimeError("observe() was called without a preceding act(); call trainer.act(obs) before envs.step")
        self._acted = False
        step = self._step_in_rollout
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        reward = np.asarray(reward, dtype=np.float32)
        valid = ~self._reset_pending
        done = terminated | truncated
        write = self.storage.write_host
        write(step, VALID, valid)
        write(step, TERMINATED, terminated & valid)
        write(step, TRUNCATED, truncated & valid)
        write(step, EXTRINSIC_REWARD, np.where(valid, reward, 0.0))
        if NEXT_OBS in self.storage.host:
            write(step, NEXT_OBS, self._true_next_obs(next_obs, done, info))
        self._track_episodes(reward, done, valid, info)
        self._reset_pending = done if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
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
        return patched

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
    ) -> "Trainer":
        """Run the environment loop until ``total_steps`` environment steps have been taken (rounded
        up to a whole rollout).

        ``progress`` shows a progress bar (plain lines when not on a terminal or when ``quiet``).
        ``on_update`` runs whenever metrics are logged (every update on-policy, every ``log_interval``
        steps off-policy); ``stop_when`` is checked then and ends training early when it returns True
        (e.g. once a target return is reached).
        """
        self.total_steps = total_steps
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
                action = self.act(obs)
                obs, reward, terminated, truncated, info = self.envs.step(action)
                logs_before = self.num_logs
                self.observe(obs, reward, terminated, truncated, info)
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
        batch = self.storage.batch()
        metrics: dict[str, float] = {}
        for agent in self.composition.order:
            for key, value in agent.preprocess(batch).items():
                metrics[f"{agent.name}/{key}"] = value
        if self.replay is None:
            self._set_learning_rate()
            metrics.update(self._optimize(batch))
        else:
            self.replay.add({key: value for key, value in batch.items() if key in self._replay_keys})
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
                last = self._minibatch_step(minibatch, params)
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
        for _ in range(schedule.gradient_steps):
            minibatch = self.replay.sample(schedule.batch_size, self.generator, n_step=schedule.n_step, streams=self.streams)
            for key, value in self._minibatch_step(minibatch, params).items():
                sums[key] = sums.get(key, 0.0) + value
            self.gradient_steps += 1
            if self.gradient_steps % schedule.target_update_interval == 0:
                self._update_targets(schedule.tau)
        return {key: value / schedule.gradient_steps for key, value in sums.items()}

    @torch.no_grad()
    def _update_targets(self, tau: float) -> None:
        for online, target in self._target_pairs:
            online_params, target_params = list(online.parameters()), list(target.parameters())
            if tau == 1.0:
                torch._foreach_copy_(target_params, online_params)
            else:
                torch._foreach_lerp_(target_params, online_params, tau)
            for online_buffer, target_buffer in zip(online.buffers(), target.buffers()):
                target_buffer.copy_(online_buffer)

    def _minibatch_step(self, minibatch: Batch, params: list[torch.nn.Parameter]) -> dict[str, float]:
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
        if not math.isfinite(float(total.detach())):
            raise NonFiniteLossError(_non_finite_terms(values))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.schedule.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.schedule.max_grad_norm))
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError(f"the gradient norm is {grad_norm} although every loss term is finite (agents: {[a.name for a in self.agents]})")
            values["trainer/grad_norm"] = grad_norm
        self.optimizer.step()
        values["trainer/loss"] = float(total.detach())
        return values

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
