"""The agent contract, over the one list of shipped agents (``rl_agents.agents.AGENTS``).

Every acting agent, alone and with each bonus (an agent that does not act), on every env it fits:
it binds under a Trainer, trains at least one update that changes parameters, and round-trips a
checkpoint exactly. Nothing here names an agent: a new entry of AGENTS is covered automatically.
"""

from __future__ import annotations

import inspect
import warnings
from functools import cache
from typing import Any

import gymnasium as gym
import pytest
import torch

from rl_agents.agents import AGENTS
from rl_agents.core.agent import Agent, CompositionError
from rl_agents.core.schedules import ReplaySchedule
from rl_agents.envs import make_envs
from rl_agents.training import Trainer
from tests.helpers import bind_standalone

NUM_ENVS = 2
ENV_IDS = ("CartPole-v1", "Pendulum-v1")  # discrete and continuous actions
ON_POLICY = {"num_steps": 8, "num_minibatches": 2, "num_epochs": 1}
OFF_POLICY = {"learning_starts": 16, "batch_size": 8, "train_frequency": 4, "gradient_steps": 1, "buffer_size": 256}
# Options that make networks small, passed to the agents whose constructors take them.
SMALL = {"hidden": (16,), "feature_dim": 8, "head_hidden": 16}
TIMING_METRICS = {"charts/wall_time", "charts/steps_per_second"}

ACTING = sorted(name for name, cls in AGENTS.items() if cls.acts)
BONUSES = sorted(name for name, cls in AGENTS.items() if not cls.acts)


def make_agent(name: str) -> Agent:
    cls = AGENTS[name]
    accepted = inspect.signature(cls).parameters
    return cls(**{key: value for key, value in SMALL.items() if key in accepted})


@cache
def spaces_of(env_id: str) -> tuple[gym.Space, gym.Space]:
    env = gym.make(env_id)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


@cache
def fits(name: str, env_id: str) -> bool:
    """Whether the acting agent binds to the env's spaces (CompositionError: it does not fit)."""
    try:
        bind_standalone(make_agent(name), *spaces_of(env_id), NUM_ENVS)
    except CompositionError:
        return False
    return True


def is_off_policy(name: str, env_id: str) -> bool:
    agent = bind_standalone(make_agent(name), *spaces_of(env_id), NUM_ENVS)
    return isinstance(agent.suggested_schedule(), ReplaySchedule)


def samples_replay(name: str) -> bool:
    """Whether a part supplies a replay sampler (PER): it composes with replay learners only."""
    return make_agent(name).replay_sampler() is not None


CASES = [
    pytest.param(actor, bonus, env_id, id=f"{actor}{'+' + bonus if bonus else ''}-{env_id}")
    for actor in ACTING
    for env_id in ENV_IDS
    if fits(actor, env_id)
    for bonus in [None, *BONUSES]
    if bonus is None or not samples_replay(bonus) or is_off_policy(actor, env_id)
    if bonus != "her"  # it needs a goal-conditioned env: tests/test_her.py holds it to the contract
]


def test_the_agent_list_is_covered():
    assert ACTING and BONUSES, "AGENTS must hold acting agents and bonuses"
    covered = {(actor, env_id) for actor in ACTING for env_id in ENV_IDS if fits(actor, env_id)}
    # The shipped agents' known fits: a fit that disappears is a regression, not a skipped case.
    expected = {("dqn", "CartPole-v1"), ("sac", "Pendulum-v1")} | {(a, e) for a in ("ppo", "a2c") for e in ENV_IDS}
    missing = {(a, e) for a, e in expected if a in AGENTS} - covered
    assert not missing, f"agents that no longer bind to envs they fit: {sorted(missing)}"
    for actor in ACTING:
        assert any(fits(actor, env_id) for env_id in ENV_IDS), f"acting agent {actor!r} fits none of {ENV_IDS}"


def build(actor: str, bonus: str | None, env_id: str) -> Trainer:
    agents = [make_agent(actor)] + ([make_agent(bonus)] if bonus else [])
    schedule = OFF_POLICY if is_off_policy(actor, env_id) else ON_POLICY
    return Trainer(make_envs(env_id, NUM_ENVS), agents, seed=0, **schedule)


def steps_for_an_update(trainer: Trainer) -> int:
    schedule = trainer.schedule
    per_update = trainer.learner.rollout_steps * trainer.num_envs
    if isinstance(schedule, ReplaySchedule):  # gradient steps once more than learning_starts were seen
        return (schedule.learning_starts // per_update + 2) * per_update
    return per_update


def trainable(agent: Agent) -> dict[str, torch.Tensor]:
    return {name: param.detach().clone() for name, param in agent.named_parameters() if param.requires_grad}


def assert_same_tree(a: Any, b: Any, where: str = "state") -> None:
    """Equal nested dicts/lists with tensors compared exactly (dtype, shape and values)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{where}: tensor vs {type(b).__name__}"
        same_kind = a.dtype == b.dtype and a.shape == b.shape
        assert same_kind, f"{where}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
        assert torch.equal(a, b), f"{where}: tensors differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{where}: dict vs {type(b).__name__}"
        assert a.keys() == b.keys(), f"{where}: keys {sorted(map(str, a.keys()))} vs {sorted(map(str, b.keys()))}"
        for key in a:
            assert_same_tree(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{index}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} vs {b!r}"  # NaN equals NaN here


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A trainer state without what may legitimately differ: timing metrics, and the envs' entry
    when their state cannot be captured."""
    state = dict(state)
    metrics = dict(state["metrics"])
    metrics["metrics"] = {k: v for k, v in metrics["metrics"].items() if k not in TIMING_METRICS}
    state["metrics"] = metrics
    envs = state["collector"].get("envs")
    if isinstance(envs, dict) and envs.get("captured") is False:
        state["collector"] = {k: v for k, v in state["collector"].items() if k != "envs"}
    return state


@pytest.mark.parametrize(("actor", "bonus", "env_id"), CASES)
def test_agent_contract(actor: str, bonus: str | None, env_id: str, tmp_path):
    trainer = build(actor, bonus, env_id)
    assert [agent.name for agent in trainer.agents] == [actor] + ([bonus] if bonus else [])
    before = {agent.name: trainable(agent) for agent in trainer.agents}

    trainer.train(steps_for_an_update(trainer), progress=False)

    assert trainer.num_updates >= 1
    if isinstance(trainer.schedule, ReplaySchedule):
        assert trainer.learner.total_gradient_steps >= 1
    for agent in trainer.agents:
        if before[agent.name]:
            after = trainable(agent)
            changed = [name for name in after if not torch.equal(after[name], before[agent.name][name])]
            assert changed, f"training changed none of agent {agent.name!r}'s parameters"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an env whose state cannot be captured only warns
        path = trainer.save(tmp_path)
        fresh = build(actor, bonus, env_id)
        fresh.load_state(path)

    for original, loaded in zip(trainer.agents, fresh.agents):
        assert_same_tree(original.state_dict(), loaded.state_dict(), f"agents.{original.name}")
    assert fresh.global_step == trainer.global_step
    assert fresh.num_updates == trainer.num_updates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_tree(comparable(trainer.state_dict()), comparable(fresh.state_dict()))
