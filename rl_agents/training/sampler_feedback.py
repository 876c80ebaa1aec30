"""Replay parts: choosing the composition's replay sampler and feeding it the loss output it consumes, and
collecting the parts' minibatch transforms (:mod:`rl_agents.core.transforms`).

A part (e.g. prioritized replay) supplies a :class:`~rl_agents.core.sampling.ReplaySampler`; a learner's
loss outputs, per minibatch row, the key the sampler consumes (``DataSpec.loss_outputs``) and reads the
importance weights it draws with (``sample_weight``). The Learner checks that composition once, at
construction, and after each optimizer step passes the rows' values on, checked against the providing
agent's contract (a ContractError, which rolls the update back, names the agent).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl_agents.core.agent import REPLAY_INDEX, SAMPLE_WEIGHT, Agent, Batch, CompositionError, ContractError
from rl_agents.core.composition import Composition
from rl_agents.core.sampling import ReplaySampler
from rl_agents.core.schedules import ReplaySchedule, Schedule
from rl_agents.core.transforms import ReplayTransform
from rl_agents.training.replay import ReplayBuffer


@dataclass(frozen=True)
class SamplerChoice:
    sampler: ReplaySampler
    part: str  # the agent that supplied it
    provider: str  # the agent whose loss outputs what it consumes


def supplied_samplers(agents: list[Agent]) -> list[tuple[str, ReplaySampler]]:
    """Each agent that supplies a replay sampler, with the sampler (asked once per agent)."""
    return [(agent.name, sampler) for agent in agents if (sampler := agent.replay_sampler()) is not None]


def refuse_sampler_on_policy(supplied: list[tuple[str, ReplaySampler]], acting: Agent, off_policy: bool) -> None:
    """A part that samples the replay buffer needs one: refused with an on-policy learner, before the keys
    it needs (which only replay learners' losses output) are checked, so that the message says why."""
    if supplied and not off_policy:
        raise CompositionError(
            f"agent {supplied[0][0]!r} samples the replay buffer, but agent {acting.name!r} trains "
            "on-policy from rollouts (no replay buffer); use it with a replay learner such as dqn or sac"
        )


def choose_sampler(supplied: list[tuple[str, ReplaySampler]], composition: Composition) -> SamplerChoice | None:
    """The composition's replay sampler (at most one), checked: a loss outputs what it consumes and a loss
    reads ``sample_weight``. None: uniform sampling."""
    if not supplied:
        return None
    if len(supplied) > 1:
        raise CompositionError(
            f"agents {supplied[0][0]!r} and {supplied[1][0]!r} both supply a replay sampler; at most one may"
        )
    part, sampler = supplied[0]
    specs = composition.specs
    if not any(sampler.feedback_key in spec.loss_outputs for spec in specs.values()):
        raise CompositionError(
            f"agent {part!r} consumes {sampler.feedback_key!r}, which no agent's loss outputs "
            "(a replay learner declares it in DataSpec.loss_outputs)"
        )
    if not any(SAMPLE_WEIGHT in spec.needs for spec in specs.values()):
        raise CompositionError(
            f"agent {part!r} draws replay rows with importance weights {SAMPLE_WEIGHT!r}, but no agent's loss "
            "reads them (declared in needs): the learner would train on biased samples"
        )
    return SamplerChoice(sampler, part, composition.providers[sampler.feedback_key])


def feed_sampler(replay: ReplayBuffer, minibatch: Batch, provider: str, where: str) -> None:
    """Give the replay's sampler the loss output it consumes, checked against ``provider``'s contract."""
    assert replay.sampler is not None
    key = replay.sampler.feedback_key
    values = minibatch.get(key)
    rows = minibatch[REPLAY_INDEX].shape[0]
    if not isinstance(values, torch.Tensor):
        raise ContractError(f"agent {provider!r} declares loss output {key!r} but its loss did not write it ({where})")
    if tuple(values.shape) != (rows,):
        raise ContractError(
            f"agent {provider!r} loss output {key!r} has shape {list(values.shape)}, expected [{rows}] "
            f"(one value per minibatch row) ({where})"
        )
    if not bool(torch.isfinite(values).all()):
        raise ContractError(f"agent {provider!r} loss output {key!r} holds NaN or inf ({where})")
    replay.feedback(minibatch[REPLAY_INDEX], values)


def supplied_transforms(agents: list[Agent], acting: Agent, schedule: Schedule) -> list[tuple[str, ReplayTransform]]:
    """Each agent's minibatch transform (in the agents' order), refused with an on-policy learner (there is
    no replay to rewrite) and, for a transform that relabels single transitions, with n-step returns
    (their rewards were summed over steps whose goals it cannot see)."""
    supplied = [(agent.name, transform) for agent in agents if (transform := agent.replay_transform()) is not None]
    for name, transform in supplied:
        if not isinstance(schedule, ReplaySchedule):
            raise CompositionError(
                f"agent {name!r} rewrites replay minibatches, but agent {acting.name!r} trains on-policy from "
                "rollouts (no replay buffer); use it with a replay learner such as dqn or sac"
            )
        if transform.single_step and schedule.n_step > 1:
            raise CompositionError(
                f"agent {name!r} rewrites single transitions, which n-step returns (n_step={schedule.n_step}) sum "
                "over several steps: use n_step 1"
            )
    return supplied
