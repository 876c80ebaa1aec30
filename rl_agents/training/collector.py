"""The Collector: steps the environments with the acting agent and produces batches of rollouts.

The environment loop is public::

    obs = collector.begin(seed)           # or envs.reset(...) in a loop of your own
    action = collector.act(obs)
    obs, reward, terminated, truncated, info = envs.step(action)
    batch = collector.observe(obs, reward, terminated, truncated, info)   # a full rollout, or None

``collect()`` runs that loop on the collector's own envs until a rollout is full, restarting failed
environments while ``max_env_restarts`` allows.

Gymnasium 1.x autoreset: with the default next-step mode, an env whose episode ended at step t
returns its final observation at t and resets at t+1, ignoring the action; that step t+1 is stored but
marked invalid and never trained on. With same-step mode the final observation comes in
``info["final_obs"]``. Either way ``next_obs`` holds the true next observation, so truncated
episodes bootstrap from the value of their real final state.

What the envs return is checked before anything is stored (:mod:`rl_agents.training.env_checks`): a
NaN or infinite observation or reward raises :class:`NonFiniteObservationError` naming the env index;
an env that raises, returns observations of another shape or dtype than the observation space's,
rewards that are not numbers, flags that are not bools, a finite value that overflows float32, or
whose worker process dies raises :class:`~rl_agents.envs.EnvError` naming the env when it can be
known. Nothing of the failed step is stored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.core.agent import (
    EPISODE_START,
    EXTRINSIC,
    NEXT_OBS,
    OBS,
    TERMINATED,
    TRUNCATED,
    VALID,
    Agent,
    Batch,
    ContractError,
    carried_key,
)
from rl_agents.core.memory import CarriedState, episode_starts_after_step
from rl_agents.core.state import Apply, StateError, count, entry, numbers
from rl_agents.core.tree import map_tree
from rl_agents.envs import EnvError, env_factory_of
from rl_agents.envs.failures import close_quietly, env_failure
from rl_agents.envs.spaces import observation_layout
from rl_agents.envs.state import EnvStateMismatch, EnvStateUnsupported, capture_env_state, prepare_restore
from rl_agents.training.env_checks import EnvOutputChecks
from rl_agents.training.episodes import EpisodeTracker
from rl_agents.training.storage import RolloutStorage

if TYPE_CHECKING:
    from rl_agents.training.learner import Learner

EXTRINSIC_REWARD = f"reward/{EXTRINSIC}"
EnvFactory = Callable[[], gym.vector.VectorEnv]


def require_vector_env(envs: Any) -> None:
    if not isinstance(envs, gym.vector.VectorEnv):
        raise TypeError(f"envs must be a gymnasium.vector.VectorEnv (use gym.make_vec), got {type(envs).__name__}")


def derived_seed(*entropy: int) -> int:
    """A seed for a restart or a resumed run, derived from the run's seed and where it is."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


class BatchSource(Protocol):
    """What the Trainer needs of a collector: this module's :class:`Collector`, or
    :class:`~rl_agents.training.distributed.RayCollectors` (Ray workers each running one)."""

    global_step: int
    step_in_rollout: int  # vector steps collected towards the next batch (0: at an update boundary)
    total_steps: int | None
    episodes: EpisodeTracker
    autoreset_mode: Any
    resume_obs: Any  # not None when begin() will continue restored episodes
    at_boundary: bool  # nothing collected towards the next batch: the state can be saved

    def begin(self, seed: int | None = None) -> Any: ...
    def collect(self) -> Batch: ...
    def counters(self) -> dict[str, float]: ...
    def random_observations(self, steps: int, seed: int) -> torch.Tensor: ...
    def state_dict(self) -> dict[str, Any]: ...
    def prepare_load(self, state: Any, where: str = ...) -> Apply: ...


class Collector:
    """Steps ``envs`` with ``acting`` and stores what the composition declared, one rollout at a time.

    Args:
        envs: a ``gymnasium.vector.VectorEnv``.
        acting: the agent choosing the actions.
        collected_keys: the keys stored per step (observations, flags and rewards from the env; the
            acting agent's declared act outputs).
        rollout_steps: vector steps per batch.
        random_steps: env steps during which ``acting.random_act`` chooses (a replay schedule's
            ``learning_starts``; 0 for on-policy).
        store_next_obs: store ``next_obs`` even when no agent reads it (a replay buffer bootstraps from it).
        seed: seeds resets after restarts and resumes.
        max_env_restarts: how many times :meth:`collect` may restart failed environments over this
            collector's life; ``env_factory`` rebuilds them (default: the recipe ``make_envs`` kept).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        acting: Agent,
        *,
        collected_keys: frozenset[str],
        rollout_steps: int,
        random_steps: int,
        store_next_obs: bool,
        device: torch.device,
        seed: int,
        max_env_restarts: int = 0,
        env_factory: EnvFactory | None = None,
    ):
        require_vector_env(envs)
        if isinstance(max_env_restarts, bool) or not isinstance(max_env_restarts, int) or max_env_restarts < 0:
            raise ValueError(f"max_env_restarts must be a whole number >= 0, got {max_env_restarts!r}")
        if env_factory is not None and not callable(env_factory):
            raise TypeError(f"env_factory must be a callable returning a vector env, got {type(env_factory).__name__}")
        self.autoreset_mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset mode {self.autoreset_mode} is not supported; use NEXT_STEP or SAME_STEP")
        self.envs = envs
        self.env_factory = env_factory if env_factory is not None else env_factory_of(envs)
        self.max_env_restarts = max_env_restarts
        self.num_env_restarts = 0  # this collector's life (not saved: a resumed run may restart as often again)
        self.acting = acting
        self.num_envs = envs.num_envs
        self.device = device
        self.seed = seed
        self.rollout_steps = rollout_steps
        self.random_steps = random_steps
        self.declared_act_outputs = acting.data_spec().act_outputs
        self.stored_act_outputs = collected_keys & self.declared_act_outputs
        self.total_steps: int | None = None  # for the acting agent's set_progress
        self.global_step = 0
        self.step_in_rollout = 0
        self.acted = False
        self.reset_pending = np.zeros(self.num_envs, dtype=bool)
        # Memory: the acting agent's carried state, reset for the envs whose next observation starts an episode.
        self.memory = CarriedState(acting, self.num_envs, device)
        self.episode_starting = np.ones(self.num_envs, dtype=bool)
        self.stored_carried = [name for name in self.memory.shapes if carried_key(name) in collected_keys]
        self.episodes = EpisodeTracker(self.num_envs)
        # The observation the env loop continues from (saved with the envs' state in checkpoints), and
        # the one begin() continues from after a load restored the envs instead of resetting them.
        self.last_obs: Any = None
        self.resume_obs: Any = None
        self.storage = self._build_storage(collected_keys, store_next_obs)
        self.checks = EnvOutputChecks(self.num_envs, envs.single_observation_space)

    @classmethod
    def for_learner(cls, envs: gym.vector.VectorEnv, learner: Learner, **options: Any) -> Collector:
        """The collector feeding ``learner``: its acting agent, collected keys and rollout length."""
        return cls(
            envs,
            learner.acting,
            collected_keys=learner.composition.collected_keys,
            rollout_steps=learner.rollout_steps,
            random_steps=learner.random_steps,
            store_next_obs=learner.off_policy,  # the replay buffer bootstraps from it
            device=learner.device,
            **options,
        )

    def _build_storage(self, keys: frozenset[str], store_next_obs: bool) -> RolloutStorage:
        storage = RolloutStorage(self.rollout_steps, self.num_envs, self.device)
        layout = observation_layout(self.envs.single_observation_space)  # one leaf, or a Dict/Tuple tree
        storage.allocate_host_tree(OBS, layout)
        if NEXT_OBS in keys or store_next_obs:
            storage.allocate_host_tree(NEXT_OBS, layout)
        for key in (TERMINATED, TRUNCATED, VALID):
            storage.allocate_host(key, (), torch.bool)
        if EPISODE_START in keys:
            storage.allocate_host(EPISODE_START, (), torch.bool)
        storage.allocate_host(EXTRINSIC_REWARD, (), torch.float32)
        return storage

    def counters(self) -> dict[str, float]:
        """Running totals to log: environment restarts, when restarts are allowed."""
        return {"trainer/env_restarts": float(self.num_env_restarts)} if self.max_env_restarts else {}

    @property
    def at_boundary(self) -> bool:
        """No partly collected rollout and no act() waiting for its observe(): a checkpoint may be saved."""
        return self.step_in_rollout == 0 and not self.acted

    # ------------------------------------------------------------------ the environment loop
    def act(self, obs: Any) -> np.ndarray:
        """Choose actions for a batch of observations and remember what the agents need of them."""
        obs = self.checks.observations(obs, "passed to act", self.global_step)
        step = self.step_in_rollout
        self.storage.write_host(step, OBS, obs)
        if EPISODE_START in self.storage.host:
            self.storage.write_host(step, EPISODE_START, self.episode_starting)
        obs_tensor = map_tree(lambda stored: stored[step].to(self.device, non_blocking=True), self.storage.host[OBS])
        self.acting.set_progress(self.global_step, self.total_steps)
        acted_from = self.memory.values  # the state this step acts from (act replaces, never mutates, it)
        with torch.inference_mode():
            if self.global_step < self.random_steps:
                method = "random_act"
                outputs = {key: value.to(self.device) for key, value in self.acting.random_act(self.num_envs).items()}
            else:
                method = "act"
                outputs = self.memory.act(obs_tensor)
            # A declared output that is missing would be silently not stored (or a KeyError later, elsewhere).
            missing = self.declared_act_outputs - outputs.keys()
            if missing:
                raise ContractError(
                    f"agent {self.acting.name!r} declared act output {min(missing)!r}, but its {method} did not "
                    f"return it (it returned: {', '.join(sorted(outputs))})"
                )
            env_action = self.acting.env_action(outputs)
        self.storage.write_device(step, {k: v for k, v in outputs.items() if k in self.stored_act_outputs})
        self.storage.write_device(step, {carried_key(name): acted_from[name] for name in self.stored_carried})
        self.acted = True
        return env_action.cpu().numpy()

    def observe(
        self,
        next_obs: Any,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
    ) -> Batch | None:
        """Store the outcome of ``envs.step``; returns the rollout when it is full, else None.

        Raises :class:`~rl_agents.envs.EnvError` (observations of another shape or dtype than the
        observation space's, rewards that are not numbers, flags that are not bools, values that
        overflow float32; see :mod:`rl_agents.training.env_checks`) or :class:`NonFiniteObservationError`
        (a NaN or infinite observation or reward) before storing anything: go on with :meth:`restart_envs`."""
        if not self.acted:
            raise RuntimeError("observe() was called without a preceding act(); call trainer.act(obs) before envs.step")
        next_obs = self.checks.observations(next_obs, "returned by step", self.global_step)
        reward, terminated, truncated = self.checks.step(reward, terminated, truncated, self.global_step)
        done = terminated | truncated
        true_next_obs = None
        if NEXT_OBS in self.storage.host:
            final = self.autoreset_mode == AutoresetMode.SAME_STEP and done.any()  # in info["final_obs"]
            true_next_obs = (
                self.checks.with_final_observations(next_obs, done, info, self.global_step) if final else next_obs
            )
        self.acted = False
        step = self.step_in_rollout
        valid = ~self.reset_pending
        write = self.storage.write_host
        write(step, VALID, valid)
        write(step, TERMINATED, terminated & valid)
        write(step, TRUNCATED, truncated & valid)
        write(step, EXTRINSIC_REWARD, np.where(valid, reward, 0.0))
        if true_next_obs is not None:
            write(step, NEXT_OBS, true_next_obs)
        self.episodes.track(reward, done, valid, info, end_step=self.global_step + self.num_envs)
        self.reset_pending = done if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
        self.episode_starting = episode_starts_after_step(self.autoreset_mode, done, ~valid)
        self.memory.reset(self.episode_starting)
        self.last_obs = next_obs
        self.step_in_rollout += 1
        self.global_step += self.num_envs
        if self.step_in_rollout < self.rollout_steps:
            return None
        self.step_in_rollout = 0
        return self.storage.batch()

    def begin(self, seed: int | None = None) -> Any:
        """Start collecting on the own envs; returns the first observation.

        Right after a load restored the envs' state (and ``seed`` is None) the saved episodes continue
        from the saved observation. Otherwise the envs are seeded (``seed``, else the collector's seed,
        or one derived from it and the step when resuming, so that a resumed run does not replay the
        initial states of the run it continues) and reset, and every env starts a new episode."""
        if self.resume_obs is not None and seed is None:
            self.last_obs, self.resume_obs = self.resume_obs, None
            return self.last_obs
        self.resume_obs = None
        if seed is None:
            seed = self.seed if self.global_step == 0 else derived_seed(self.seed, self.global_step)
        obs, _ = self.envs.reset(seed=seed)
        self._start_all_episodes()
        self.last_obs = obs
        return obs

    def _start_all_episodes(self) -> None:
        self.reset_pending[:] = False
        self.episode_starting[:] = True
        self.memory.values = self.memory.initial()
        self.episodes.restart_all()

    def collect(self) -> Batch:
        """Step the own envs from the last observation until the rollout is full; return it.

        An EnvError restarts the environments while ``max_env_restarts`` allows (the partly collected
        rollout is dropped); past that it is raised with the collector at an update boundary."""
        if self.last_obs is None:
            raise RuntimeError("collect() needs a first observation: call begin() first")
        while True:
            try:
                action = self.act(self.last_obs)
                step = self._step_envs(action)
                batch = self.observe(*step)
            except EnvError as error:
                self._recover(error)
                continue
            if batch is not None:
                return batch

    def random_observations(self, steps: int, seed: int) -> Any:
        """``[steps, num_envs, ...]`` next observations of seeded uniformly random actions (for the
        agents' warm-up; a tree of them for a Dict or Tuple space). Not counted in ``global_step``;
        collection starts from a reset afterwards."""
        self.envs.reset(seed=seed)
        self.envs.action_space.seed(seed)
        observations = []
        for _ in range(steps):
            next_obs, *_ = self.envs.step(self.envs.action_space.sample())
            observations.append(map_tree(lambda leaf: torch.as_tensor(np.asarray(leaf), device=self.device), next_obs))
        return map_tree(lambda *leaves: torch.stack(leaves), *observations)

    # ------------------------------------------------------------------ checks
    # ------------------------------------------------------------------ failures
    def _step_envs(self, action: np.ndarray) -> tuple:
        """``envs.step`` whose failures become an EnvError naming the env when it can be known."""
        try:
            return self.envs.step(action)
        except EnvError:
            raise
        except Exception as error:
            raise env_failure(self.envs, error, "step") from error

    def discard_partial_rollout(self) -> None:
        """Back to an update boundary: the steps stored since the last batch are dropped."""
        self.step_in_rollout = 0
        self.acted = False

    def restart_envs(self, seed: int | None = None) -> np.ndarray:
        """Start the environments afresh after a failure; returns their first observations.

        Builds new envs with ``env_factory`` and closes the old ones (quietly: they may be broken),
        or, without a factory, resets the existing ones. The partly collected rollout is discarded:
        it is never trained on, while its steps stay counted in ``global_step`` and the episodes it
        finished in the episode statistics. Every env starts a new episode. ``collect`` calls this on
        an EnvError while ``max_env_restarts`` allows; a hand-written loop may call it too and go on
        with ``act(obs)``. ``seed`` defaults to one derived from the seed, the step and the number of
        restarts. Raises EnvError if the envs cannot be started.
        """
        self.discard_partial_rollout()
        self.num_env_restarts += 1
        if self.env_factory is not None:
            close_quietly(self.envs)
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
            seed = derived_seed(self.seed, self.global_step, self.num_env_restarts)
        try:
            obs, _ = self.envs.reset(seed=seed)
        except EnvError:
            raise
        except Exception as error:
            raise env_failure(self.envs, error, "reset") from error
        self._start_all_episodes()
        self.last_obs = obs
        return obs

    def _recover(self, error: EnvError) -> None:
        """Restart the envs while ``max_env_restarts`` allows; else raise ``error`` at an update
        boundary, with no observation to continue from."""
        while self.num_env_restarts < self.max_env_restarts:
            warnings.warn(
                f"{error}; restarting the environments "
                f"(restart {self.num_env_restarts + 1} of at most {self.max_env_restarts})",
                RuntimeWarning,
                stacklevel=4,
            )
            try:
                self.restart_envs()
                return
            except EnvError as again:
                error = again
        self.discard_partial_rollout()
        self.last_obs = None  # the envs failed: there is no observation to continue from
        raise error

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Counters, episode statistics, the per-env autoreset and episode-start flags, the acting
        agent's carried state, and the envs' own state with the last observation (``{"captured": false,
        "reason": ...}`` where they cannot be captured, e.g. an AsyncVectorEnv; None before the first
        step). Only at an update boundary."""
        return {
            "global_step": self.global_step,
            "episodes": self.episodes.state_dict(),
            "reset_pending": [bool(x) for x in self.reset_pending],
            "episode_starting": [bool(x) for x in self.episode_starting],
            "carried": self.memory.state_dict(),
            "envs": self._capture_envs(),
        }

    def _capture_envs(self) -> dict[str, Any] | None:
        if self.last_obs is None:
            return None
        try:
            tensors, env_state = capture_env_state(self.envs, self.last_obs)
        except EnvStateUnsupported as error:
            reason = " ".join(str(error).split())
            warnings.warn(
                f"the environments' state cannot be saved in checkpoints ({reason}); "
                "a run resumed from them re-seeds and resets its environments",
                stacklevel=4,
            )
            return {"captured": False, "reason": reason}
        return {"captured": True, "state": env_state, "tensors": tensors}

    def prepare_load(self, state: Any, where: str = "collector") -> Apply:
        """Check a :meth:`state_dict`; the returned function applies it. When it holds the envs' state
        that fits these envs, they are restored and :meth:`begin` continues their episodes; otherwise
        (a warning says why) :meth:`begin` re-seeds and resets them."""
        global_step = count(state, "global_step", where)
        apply_episodes = self.episodes.prepare_load(entry(state, "episodes", dict, where), f"{where}.episodes")
        pending = numbers(state, "reset_pending", bool, self.num_envs, where, f"one bool per env ({self.num_envs})")
        # Checkpoints from before memory existed have neither entry; their agents carry no state.
        starting = (
            numbers(state, "episode_starting", bool, self.num_envs, where, f"one bool per env ({self.num_envs})")
            if "episode_starting" in state
            else [False] * self.num_envs
        )
        carried = self.memory.check(state.get("carried"), where)
        restore_envs, env_warning = self._prepare_env_restore(entry(state, "envs", (dict, type(None)), where), where)

        def apply() -> None:
            apply_episodes()
            self.global_step = global_step
            self.reset_pending = np.asarray(pending, dtype=bool)
            self.episode_starting = np.asarray(starting, dtype=bool)
            self.memory.load(carried)
            self.discard_partial_rollout()
            self.last_obs = self.resume_obs = None
            warning = env_warning
            if restore_envs is not None:
                try:
                    self.last_obs = self.resume_obs = restore_envs()
                except Exception as error:
                    warning = (
                        "the environments' state could not be restored "
                        f"({type(error).__name__}: {' '.join(str(error).split())})"
                    )
            if warning is not None:
                warnings.warn(f"{warning}; training re-seeds and resets the environments", stacklevel=4)

        return apply

    def _prepare_env_restore(
        self, saved: dict[str, Any] | None, where: str
    ) -> tuple[Callable[[], Any] | None, str | None]:
        """(a function restoring the envs and returning the saved observation, or None; a warning or None)."""
        if saved is None:  # saved before any step
            return None, None
        if not isinstance(saved.get("captured"), bool):
            raise StateError(f"{where}.envs must be an object with a boolean 'captured'")
        if not saved["captured"]:
            return None, f"the environments' state could not be saved ({saved.get('reason', 'no reason recorded')})"
        tensors = saved.get("tensors", {})
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise StateError(f"{where}.envs.tensors must map names to tensors")
        try:
            return prepare_restore(self.envs, tensors, saved.get("state")), None
        except EnvStateMismatch as error:
            return None, f"the saved environment state does not fit these environments ({' '.join(str(error).split())})"
