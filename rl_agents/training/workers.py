"""Ray workers for distributed collection, and the arithmetic that merges their results.

Each :class:`RolloutWorker` has its own vector env and its own copy of the composition (bound to its
envs by a :class:`~rl_agents.training.learner.Learner` of its own, which never trains), and collects
with a :class:`~rl_agents.training.collector.Collector`, exactly as one process does. Running
statistics that acting moves (PPO's observation normalizer) are merged back with Chan et al.'s
parallel formulas (:func:`merge_worker_moments`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch

from rl_agents.core.agent import Agent
from rl_agents.core.normalize import RunningMeanStd
from rl_agents.core.tree import map_tree
from rl_agents.envs.failures import close_quietly
from rl_agents.training.collector import Collector
from rl_agents.training.episodes import EpisodeStats
from rl_agents.training.learner import EnvSpaces, Learner

EnvFactory = Callable[[], gym.vector.VectorEnv]
AgentFactory = Callable[[], list[Agent]]
AgentStates = dict[str, dict[str, Any]]  # agent name -> state_dict, as portable_entry() values


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
    filler = {key: map_tree(np.zeros_like, value) for key, value in arrived[0].items()}  # zeros: valid is False
    return {
        key: map_tree(
            lambda *leaves: np.concatenate(leaves, axis=1),
            *[(filler if piece is None else piece)[key] for piece in pieces],
        )
        for key in keys
    }


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


def portable_entry(value: Any) -> Any:
    """A ``state_dict`` entry ready to send to the workers: a tensor as :func:`portable` (the fast path
    for weights and buffers); anything else, an agent's extra state (its ``state_attributes``, or what
    its own ``get_extra_state`` returns: JSON values and tensors, nested), as a copy whose tensors are
    detached CPU copies, loaded as it is by the agent's ``set_extra_state``."""
    if isinstance(value, torch.Tensor):
        return portable(value)
    return _copy_to_cpu(value)


def _copy_to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if type(value) is dict:
        return {key: _copy_to_cpu(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_copy_to_cpu(item) for item in value)
    return copy.deepcopy(value)  # JSON scalars (immutable: themselves), or whatever a get_extra_state returns


def entry_from_learner(value: Any) -> Any:
    """The inverse of :func:`portable_entry`: tensors back as tensors, extra state as it came."""
    return as_tensor(value) if isinstance(value, (np.ndarray, torch.Tensor)) else value


def entry_bytes(value: Any) -> int:
    """About how many bytes a :func:`portable_entry` value takes to send (exact for tensors and arrays)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(entry_bytes(key) + entry_bytes(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return sum(entry_bytes(item) for item in value)
    if isinstance(value, (str, bytes)):
        return len(value)
    return 8


# ---------------------------------------------------------------------------- workers
@dataclass
class Rollout:
    """What a worker returns for one round."""

    batch: dict[str, Any]  # every collected key, [rollout_steps, envs_per_worker, ...], as portable() arrays
    episode_returns: list[float]
    episode_lengths: list[int]
    statistics: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # running_statistics key: (mean, var, count)
    steps: int  # env steps taken


def worker_seed(seed: int, index: int, restarts: int, start_step: int) -> int:
    """The seed of worker ``index``'s envs and action sampling, after ``restarts`` restarts, when
    (re)started at learner step ``start_step``."""
    return int(np.random.SeedSequence([seed, index, restarts, start_step]).generate_state(1)[0])


def fit_learner_state(
    own: dict[str, Any], learner: dict[str, Any], agent: str, envs: int, learner_envs: int
) -> dict[str, Any]:
    """The learner's state_dict for a worker's copy of ``agent``: every tensor, except per-env state
    (leading dimension ``learner_envs`` there, ``envs`` here, e.g. a return normalizer's running
    return), which each side keeps for its own envs; and the learner's extra state (entries that are
    not tensors, e.g. ``state_attributes``), whole."""
    if own.keys() != learner.keys():
        difference = sorted(own.keys() ^ learner.keys())
        raise ValueError(
            f"agent {agent!r} differs between the learner and the worker in state {difference[:4]}: "
            "build both from one recipe"
        )
    fitted = {}
    for key, mine in own.items():
        theirs = learner[key]
        if not isinstance(mine, torch.Tensor) or not isinstance(theirs, torch.Tensor):
            if isinstance(mine, torch.Tensor) or isinstance(theirs, torch.Tensor):
                kinds = [type(value).__name__ for value in (theirs, mine)]
                raise ValueError(
                    f"agent {agent!r} state {key!r} is a {kinds[0]} on the learner, a {kinds[1]} on the worker: "
                    "build both from one recipe"
                )
            fitted[key] = theirs  # extra state: the learner's, as it is
            continue
        per_env = mine.dim() > 0 and mine.shape[0] == envs and theirs.shape == (learner_envs, *mine.shape[1:])
        if theirs.shape != mine.shape and not per_env:
            raise ValueError(
                f"agent {agent!r} state {key!r} has shape {list(theirs.shape)} on the learner, "
                f"{list(mine.shape)} on the worker"
            )
        fitted[key] = mine if theirs.shape != mine.shape else theirs
    return fitted


class RolloutWorker:
    """Collects rounds of experience with its own envs and its own copy of the agents.

    Ray runs it as an actor (``ray.remote(RolloutWorker)``); it is a plain class, so it also runs in
    the learner's process (tests do). The envs and agents are built on the first round, and again
    (with a new seed) when the learner reports that this worker failed (``restarts`` changed).
    """

    def __init__(
        self,
        env_factory: EnvFactory,
        agent_factory: AgentFactory,
        *,
        index: int,
        seed: int,
        schedule: dict[str, Any],
        learner_num_envs: int,
    ):
        torch.set_num_threads(1)  # one core per worker; small networks are fastest on one thread
        self.env_factory = env_factory
        self.agent_factory = agent_factory
        self.index = index
        self.base_seed = seed
        self.schedule = schedule
        self.learner_num_envs = learner_num_envs
        self.restarts = -1
        self.seed = 0
        self.agents: list[Agent] = []
        self.collector: Collector | None = None
        self.started = False  # whether the envs were reset for collection since they were (re)built

    def _prepare(self, restarts: int, global_step: int) -> Collector:
        """This worker's agents (bound to its envs by a Learner of their own) and its Collector."""
        if self.collector is None or restarts != self.restarts:
            if self.collector is not None:
                close_quietly(self.collector.envs)  # they may be broken
            self.seed = worker_seed(self.base_seed, self.index, restarts, global_step)
            envs = self.env_factory()
            # This Learner only binds the agents and never trains: the minibatch split is the learner's
            # (sequence minibatches may split more envs than this worker has).
            schedule = {**self.schedule, "num_minibatches": None}
            learner = Learner(
                EnvSpaces.of(envs), self.agent_factory(), seed=self.seed, device=torch.device("cpu"), **schedule
            )
            self.agents = learner.agents
            self.collector = Collector.for_learner(envs, learner, seed=self.seed)
            self.restarts, self.started = restarts, False
        return self.collector

    def _load(self, collector: Collector, states: AgentStates) -> None:
        for agent in self.agents:
            if agent.name not in states:
                raise ValueError(
                    f"the learner has no agent {agent.name!r} (it has {sorted(states)}): build both from one recipe"
                )
            learner_state = {key: entry_from_learner(value) for key, value in states[agent.name].items()}
            fitted = fit_learner_state(
                agent.state_dict(), learner_state, agent.name, collector.num_envs, self.learner_num_envs
            )
            agent.load_state_dict(fitted)
            agent.after_update()  # refresh anything derived from the parameters (e.g. fused inference weights)

    def collect(self, states: AgentStates, restarts: int, global_step: int, total_steps: int | None) -> Rollout:
        """Load the learner's agent states, then collect one rollout (``rollout_steps`` vector steps)."""
        collector = self._prepare(restarts, global_step)
        self._load(collector, states)
        if not self.started:
            collector.begin(seed=self.seed)
            self.started = True
        collector.global_step, collector.total_steps = global_step, total_steps
        completed = collector.collect()
        episodes, collector.episodes.finished = collector.episodes.finished, EpisodeStats()
        statistics = {
            key: tuple(portable(moment) for moment in moments_of(stats))
            for key, stats in running_statistics(self.agents).items()
        }
        batch = {key: map_tree(portable, value) for key, value in completed.items()}  # views: Ray copies them on return
        return Rollout(
            batch, episodes.returns, episodes.lengths, statistics, collector.rollout_steps * collector.num_envs
        )

    def ready(self) -> bool:
        """Answers once the actor runs (the learner asks a restarted worker before it rejoins)."""
        return True

    def warmup_observations(self, steps: int, restarts: int, global_step: int) -> Any:
        """``[steps, envs, ...]`` observations of seeded random actions (agents' ``warmup``); the
        next round starts from a reset."""
        observations = self._prepare(restarts, global_step).random_observations(steps, self.seed)
        self.started = False
        return map_tree(torch.Tensor.numpy, observations)
