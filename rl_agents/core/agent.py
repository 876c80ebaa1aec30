"""The Agent contract.

An agent is a ``torch.nn.Module`` that owns its networks and its math. It tells the Trainer what
data it reads and writes through a :class:`DataSpec`; it never refers to another agent. The Trainer
uses those declarations to decide what to store, in which order to run preprocessing, and to refuse
compositions that cannot work.

Batches are plain ``dict[str, Tensor]``. During preprocessing every tensor has shape
``[num_steps, num_envs, ...]``; the minibatches given to :meth:`Agent.loss` are flat
``[batch, ...]`` rows of the same keys.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import torch
from torch import nn

from rl_agents.core.agent_state import install_state_attributes
from rl_agents.core.sampling import ReplaySampler
from rl_agents.core.schedules import OnPolicySchedule, ReplaySchedule

if TYPE_CHECKING:
    from rl_agents.core.transforms import ReplayTransform

Batch = dict[str, torch.Tensor]
# What agents log: plain numbers, or 0-d tensors that the Learner converts with one host sync for all.
Metric = float | torch.Tensor
Metrics = dict[str, Metric]

# Keys the Trainer itself fills from the environment loop.
OBS = "obs"
NEXT_OBS = "next_obs"  # the true next observation: the final one when an episode ended
ACTION = "action"
TERMINATED = "terminated"
TRUNCATED = "truncated"
VALID = "valid"  # False for the reset step after a next-step autoreset: not a real transition
EXTRINSIC = "extrinsic"
# True where the step's observation is the first of an episode: an acting agent's carried state was
# reset to its initial value before that step (set by the Collector, in either autoreset mode).
EPISODE_START = "episode_start"
ENV_KEYS = frozenset({OBS, NEXT_OBS, ACTION, TERMINATED, TRUNCATED, VALID, EPISODE_START, f"reward/{EXTRINSIC}"})
# Only in minibatches sampled from a replay buffer, for n-step returns: ``bootstrap_obs`` is the
# observation to bootstrap from, ``n_steps`` env steps after ``obs`` (1 unless the schedule uses n-step
# returns; fewer than n where the episode ended or the newest data is reached). In such rows every
# ``reward/<stream>`` is the stream's discounted sum over those steps and ``terminated``/``truncated``
# say whether the episode ended within them; ``next_obs`` stays the one-step next observation.
N_STEPS = "n_steps"
BOOTSTRAP_OBS = "bootstrap_obs"
# Also only in replay minibatches (sampler feedback, e.g. prioritized replay): ``sample_weight`` is each
# row's importance-sampling weight, which a learner's loss multiplies its per-row loss by (all ones under
# uniform sampling, so reading it always is exact); ``replay_index`` is where the row sits in the replay
# ring, so that a sampler can be told about it after the loss.
SAMPLE_WEIGHT = "sample_weight"
REPLAY_INDEX = "replay_index"
REPLAY_KEYS = frozenset({N_STEPS, BOOTSTRAP_OBS, SAMPLE_WEIGHT, REPLAY_INDEX})
# A loss output (``DataSpec.loss_outputs``): the per-row priority of a replayed transition, e.g. DQN's
# |TD error|, which a prioritized sampler consumes after the optimizer step.
PRIORITY = "priority"
# Carried state (memory). An acting agent that declares ``carried_state()`` gets its state in ``act(...,
# state=...)`` and returns the state to carry on under ``next_carried/<name>``; in batches,
# ``carried/<name>`` is the state each step was acted from (already reset at episode starts) and
# ``next_carried/<name>`` the state act returned (what the next step continues from, unless it starts
# an episode).
CARRIED_PREFIX = "carried/"
NEXT_CARRIED_PREFIX = "next_carried/"
# Sequence minibatches (``OnPolicySchedule.sequence_minibatches``): besides the flat valid rows, a
# minibatch holds ``sequence/<key>`` ``[T, B, ...]`` for every key an agent declared in
# ``sequence_needs``, over the whole rollout of the B envs it holds, and ``sequence/valid`` ``[T, B]``:
# ``sequence/<key>[sequence/valid]`` lines up with the flat rows (time-major).
SEQUENCE_PREFIX = "sequence/"
SEQUENCE_VALID = SEQUENCE_PREFIX + VALID


def carried_key(name: str) -> str:
    """The batch key of carried state ``name``: the state each step was acted from."""
    return CARRIED_PREFIX + name


def next_carried_key(name: str) -> str:
    """The act output (and batch key) of carried state ``name`` after the step."""
    return NEXT_CARRIED_PREFIX + name


def sequence_key(key: str) -> str:
    """The ``[T, B, ...]`` form of ``key`` in sequence minibatches."""
    return SEQUENCE_PREFIX + key


def check_option(agent: str, option: str, value: float | None, low: float, high: float = float("inf")) -> None:
    """Refuse an agent option outside ``[low, high]`` (None passes) with a ValueError naming both."""
    if value is not None and not low <= value <= high:
        bounds = f">= {low:g}" if high == float("inf") else f"in [{low:g}, {high:g}]"
        raise ValueError(f"agent {agent!r}: {option} must be {bounds}, got {value}")


class CompositionError(ValueError):
    """Agents that cannot be trained together, or an agent that does not fit the environment."""


class ContractError(RuntimeError):
    """An agent broke its declared contract at run time (e.g. ``preprocess`` did not write a key it
    declared it provides, or wrote it with the wrong shape or device); the message names the agent,
    the key, what was expected and what it got."""


def snake_case(name: str) -> str:
    """``CountBonus`` -> ``count_bonus``: the default name of an agent class that sets none."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _given_arguments(cls: type, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The constructor arguments as given, by parameter name; None when they cannot be named (extra
    positional arguments) or do not fit the signature (the constructor then raises its own error)."""
    try:
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    except TypeError:
        return None
    given: dict[str, Any] = {}
    for position, (name, value) in enumerate(bound.arguments.items()):
        if position == 0:  # self
            continue
        kind = bound.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        elif kind is inspect.Parameter.VAR_KEYWORD:
            given.update(value)
        else:
            given[name] = value
    return given


@dataclass(frozen=True)
class RewardStream:
    """One source of reward with its own discount, episodic setting and advantage weight.

    The extrinsic (environment) reward is one stream; an exploration bonus adds another. Its
    per-step reward lives in the batch under :attr:`key`. A policy learner keeps one value
    estimate per stream and weights the streams' advantages by :attr:`coef`.
    """

    name: str
    gamma: float = 0.99
    episodic: bool = True
    coef: float = 1.0

    @property
    def key(self) -> str:
        return f"reward/{self.name}"


@dataclass(frozen=True)
class DataSpec:
    """What an agent reads and writes.

    needs: keys read by ``preprocess`` or ``loss`` (from the environment, from the acting agent's
        stored outputs, or from another agent's preprocessing).
    provides: keys written into the batch by ``preprocess``.
    act_outputs: keys returned by ``act`` that must be stored per step (acting agents only).
    sequence_needs: keys read by ``loss`` as whole ``[T, B, ...]`` env sequences (``sequence/<key>``)
        when the schedule minibatches sequences (e.g. a recurrent policy replaying its memory); a
        subset of ``needs``.
    loss_outputs: keys ``loss`` writes into its minibatch, one detached value per row (e.g. a replay
        learner's ``priority``), for a part that consumes them after the optimizer step (a sampler);
        another agent needing such a key is served by them, not by preprocessing.
    """

    needs: frozenset[str] = frozenset()
    provides: frozenset[str] = frozenset()
    act_outputs: frozenset[str] = frozenset()
    sequence_needs: frozenset[str] = frozenset()
    loss_outputs: frozenset[str] = frozenset()


@dataclass(frozen=True)
class EnvContext:
    """What the Trainer tells each agent when binding it to an environment."""

    observation_space: gym.Space
    action_space: gym.Space
    num_envs: int
    device: torch.device
    streams: tuple[RewardStream, ...]
    generator: torch.Generator = field(repr=False, compare=False, default_factory=torch.Generator)
    # A goal-conditioned env's ``compute_reward(achieved_goal, desired_goal, info)`` (numpy, batched), for
    # parts that recompute rewards of relabeled goals; None when the env has none.
    compute_reward: Callable[[Any, Any, Any], Any] | None = field(repr=False, compare=False, default=None)


class Agent(nn.Module):
    """Base class of every agent. Subclasses override what they need.

    Class attributes:
        acts: whether the agent chooses actions (exactly one agent in a composition acts).
        default_name: the name its loss terms and metrics are logged under (and in configs); a
            class that sets none gets its class name in snake case (``CountBonus``: ``count_bonus``).
        warmup_steps: random-action steps whose observations the agent's ``warmup`` receives.
        resumable_settings: constructor options a resumed run may change (``--resume --set``):
            ones that only weigh the loss, never the shape of the agent's state. Learning rates
            (``lr``, ``*_lr``) always may; every other option of a resumed run is refused.
        state_attributes: plain (non-tensor-module) attributes that are part of the agent's training
            state, e.g. a visit-count table: saved in checkpoints (JSON values and tensors), restored
            on load and rolled back with a failed update. Values: None, bool, int, float, str, lists,
            tuples (restored as lists), dicts with string keys and tensors, nested; anything else (a
            set, a defaultdict, a tuple key, an object) makes saving refuse, naming it. They are saved
            through ``get_extra_state``, installed for the class: a class that declares them must not
            write its own (TypeError).
        transient_attributes: attributes that may change during training but need not be saved
            (caches, values recomputed from the step count). Any other plain attribute that changes
            after :meth:`bind` makes saving refuse, naming it: state is never dropped silently.
    """

    acts: ClassVar[bool] = False
    default_name: ClassVar[str] = "agent"
    resumable_settings: ClassVar[frozenset[str]] = frozenset()
    state_attributes: ClassVar[tuple[str, ...]] = ()
    transient_attributes: ClassVar[frozenset[str]] = frozenset()
    # Vector-env steps of random actions this agent wants to see before training (0: none); their
    # observations reach :meth:`warmup`. An attribute, so that an option of the same name sets it.
    warmup_steps: int = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.default_name == Agent.default_name:
            cls.default_name = snake_case(cls.__name__)
        install_state_attributes(cls)  # checks the declarations; get/set_extra_state save state_attributes

    def __new__(cls, *args: Any, **kwargs: Any) -> Agent:
        agent = super().__new__(cls)
        # What rebuilds this agent from a checkpoint (see init_options); recorded before __init__ runs.
        object.__setattr__(agent, "_given_arguments", _given_arguments(cls, args, kwargs))
        return agent

    def __init__(self, *, name: str | None = None, lr: float | None = None, loss_weight: float = 1.0):
        super().__init__()
        self.name = name or self.default_name
        self.lr = lr
        self.loss_weight = loss_weight
        self.generator: torch.Generator | None = None

    def init_options(self) -> dict[str, Any] | None:
        """The keyword arguments that rebuild this agent (``type(agent)(**options)``), recorded in
        checkpoints so that a run can be reloaded without the code that built it: by default the
        arguments it was constructed with. Override it when the constructor takes objects a
        checkpoint cannot record (a network, a callable): return JSON values that the constructor
        also accepts. None: the arguments cannot be named (extra positional arguments)."""
        given = self.__dict__.get("_given_arguments")
        return None if given is None else dict(given)

    # ----- composition -----
    def reward_streams(self) -> tuple[RewardStream, ...]:
        """Reward streams this agent declares (known before binding)."""
        return ()

    def bind(self, ctx: EnvContext) -> None:
        """Build networks for the env's spaces. Raise CompositionError if they do not fit."""
        self.generator = ctx.generator

    def data_spec(self) -> DataSpec:
        """Declared after :meth:`bind`, so it may depend on the spaces and the streams."""
        return DataSpec()

    def carried_state(self) -> dict[str, tuple[int, ...]]:
        """State an acting agent carries from one ``act`` to the next (memory), by name: its shape per
        env. Declared after :meth:`bind`; empty (the default): the agent keeps none. The machinery
        (Collector, evaluation, Policy) passes it to ``act(obs, state=...)``, carries what ``act``
        returns under ``next_carried/<name>``, and resets it to :meth:`initial_carried_state` for envs
        whose episode starts."""
        return {}

    def initial_carried_state(self, num_envs: int, device: torch.device) -> Batch:
        """The state every episode starts from (default: zeros, float32), ``[num_envs, *shape]`` per name."""
        return {
            name: torch.zeros((num_envs, *shape), dtype=torch.float32, device=device)
            for name, shape in self.carried_state().items()
        }

    def loss_terms(self) -> dict[str, str]:
        """Names of the loss terms ``loss`` returns, each with how it is computed (for ``describe``)."""
        return {}

    def warmup(self, next_obs: torch.Tensor) -> None:
        """Receives the ``[steps, num_envs, ...]`` observations of the random-action warm-up."""

    def suggested_num_envs(self, observation_space: gym.Space, action_space: gym.Space) -> int:
        """How many envs a run config without ``trainer.num_envs`` (no preset, no ``--num-envs``)
        gives an acting agent for these spaces: what its published defaults assume. Asked of the
        acting agent only, before its envs are built (the spaces come from one probe env)."""
        return 4

    def suggested_schedule(self) -> OnPolicySchedule | ReplaySchedule | None:
        """An acting agent suggests the schedule its published defaults assume; a ReplaySchedule
        makes the Trainer train off-policy from a replay buffer."""
        return None

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups (``params``, ``lr``, optionally ``eps``). Override to give
        parts of the agent their own learning rates, e.g. SAC's actor and critics."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.lr}] if params else []

    def replay_sampler(self) -> ReplaySampler | None:
        """A part that decides which replayed transitions are trained on (e.g. prioritized replay) returns
        its sampler: the replay buffer then draws minibatches through it instead of uniformly, and feeds
        it the loss outputs it consumes after each optimizer step. At most one agent may; None: uniform."""
        return None

    def replay_transform(self) -> ReplayTransform | None:
        """A part that rewrites sampled replay rows before the losses see them (e.g. hindsight relabeling)
        returns its transform (:mod:`rl_agents.core.transforms`); the Learner applies every part's, in the
        order the agents were given, after each replay draw. None: the part rewrites nothing."""
        return None

    def target_networks(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) pairs the Trainer moves together per the replay schedule's ``tau``."""
        return []

    # ----- runtime -----
    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        """Map a batch of observations to ``{"action": ..., <act_outputs>...}``. An agent that declares
        :meth:`carried_state` is called as ``act(obs, deterministic, state=...)`` and returns the state
        to carry on under ``next_carried/<name>`` too."""
        raise NotImplementedError(f"agent {self.name!r} does not act")

    def random_act(self, num_envs: int) -> Batch:
        """Uniformly random actions, stored like ``act``'s; used before a replay schedule's ``learning_starts``."""
        raise NotImplementedError(f"agent {self.name!r} has no random_act, which replay schedules need")

    def set_progress(self, global_step: int, total_steps: int | None) -> None:
        """Called on the acting agent before every ``act`` (e.g. for an exploration schedule, or a
        clipping range its loss anneals); when distributed, the learner's copy hears it before every update."""

    def env_action(self, outputs: Batch) -> torch.Tensor:
        """The action sent to the environment (e.g. clipped); the stored action stays raw."""
        return outputs[ACTION]

    def preprocess(self, batch: Batch) -> Metrics:
        """Add the keys in ``provides`` to a full ``[T, N, ...]`` batch. Returns metrics to log."""
        return {}

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], Metrics]:
        """Return (loss terms to sum, metrics to log) for one minibatch of flat rows."""
        return {}, {}

    def after_update(self) -> None:
        """Called once the update's optimizer steps are done: refresh anything derived from parameters."""

    def stop_epochs(self, metrics: dict[str, float]) -> bool:
        """Whether to stop iterating epochs early (e.g. PPO's target KL), given the last metrics."""
        return False
