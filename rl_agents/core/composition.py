"""Checks a set of agents for compatibility and orders their preprocessing by declared data."""

from __future__ import annotations

from dataclasses import dataclass

from rl_agents.core.agent import ENV_KEYS, Agent, CompositionError, DataSpec, RewardStream, carried_key

ENV_PROVIDER = "<environment>"
REPLAY_PROVIDER = "<replay buffer>"
CARRIED_PROVIDER = "<carried state>"


@dataclass(frozen=True)
class Composition:
    acting: Agent
    order: tuple[Agent, ...]  # preprocessing order: every provider before its consumers
    specs: dict[str, DataSpec]
    collected_keys: frozenset[str]  # keys the Trainer stores per step
    used_keys: frozenset[str]  # every key some agent reads or writes
    providers: dict[str, str]


def find_acting_agent(agents: list[Agent]) -> Agent:
    names = [agent.name for agent in agents]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise CompositionError(f"two agents share the name {duplicates[0]!r}; pass name=... to one of them")
    acting = [agent for agent in agents if agent.acts]
    if not acting:
        raise CompositionError(f"no agent acts: one of {names} must choose actions (e.g. PPO)")
    if len(acting) > 1:
        raise CompositionError(
            f"agents {acting[0].name!r} and {acting[1].name!r} both want to act; exactly one agent may act"
        )
    return acting[0]


def collect_streams(agents: list[Agent]) -> tuple[RewardStream, ...]:
    """All declared reward streams, extrinsic first then by name, so list order never matters."""
    seen: dict[str, tuple[RewardStream, str]] = {}
    for agent in agents:
        for stream in agent.reward_streams():
            if stream.name in seen:
                raise CompositionError(
                    f"agents {seen[stream.name][1]!r} and {agent.name!r} both declare reward stream {stream.name!r}"
                )
            seen[stream.name] = (stream, agent.name)
    return tuple(stream for _, (stream, _) in sorted(seen.items(), key=lambda item: (item[0] != "extrinsic", item[0])))


def resolve(
    agents: list[Agent], acting: Agent, streams: tuple[RewardStream, ...], extra_keys: frozenset[str] = frozenset()
) -> Composition:
    """``extra_keys``: keys the replay buffer adds to sampled minibatches (off-policy schedules only)."""
    specs = {agent.name: agent.data_spec() for agent in agents}
    providers = {key: ENV_PROVIDER for key in ENV_KEYS} | {key: REPLAY_PROVIDER for key in extra_keys}
    for key in specs[acting.name].act_outputs:
        providers[key] = acting.name
    carried = frozenset(carried_key(name) for name in _carried_state_of(agents, acting))
    providers.update({key: CARRIED_PROVIDER for key in carried})
    for agent in sorted(agents, key=lambda a: a.name):
        for key in sorted(specs[agent.name].provides):
            if key in providers:
                raise CompositionError(
                    f"agent {agent.name!r} provides {key!r}, which {providers[key]!r} already provides"
                )
            providers[key] = agent.name
    for agent in sorted(agents, key=lambda a: a.name):  # loss outputs serve parts that consume them after a step
        for key in sorted(specs[agent.name].loss_outputs):
            if key in providers:
                raise CompositionError(
                    f"agent {agent.name!r} outputs {key!r} from its loss, which {providers[key]!r} already provides"
                )
            providers[key] = agent.name
    for stream in streams:
        if stream.key not in providers:
            raise CompositionError(f"reward stream {stream.name!r} is declared but no agent provides {stream.key!r}")
    for agent in agents:
        missing = sorted(specs[agent.name].needs - providers.keys())
        if missing:
            raise CompositionError(
                f"agent {agent.name!r} needs {missing[0]!r}, but no agent provides it "
                f"(available: {', '.join(sorted(providers))})"
            )
        stray = sorted(specs[agent.name].sequence_needs - specs[agent.name].needs)
        if stray:
            raise CompositionError(
                f"agent {agent.name!r} declares sequence need {stray[0]!r}, which is not among its needs"
            )
    order = _topological_order(agents, specs)
    used = frozenset().union(*(spec.needs | spec.provides | spec.act_outputs for spec in specs.values()))
    collected = used & (ENV_KEYS | specs[acting.name].act_outputs | carried)
    return Composition(acting, order, specs, collected, used, providers)


def _carried_state_of(agents: list[Agent], acting: Agent) -> dict[str, tuple[int, ...]]:
    """The acting agent's carried state; another agent that declares some is refused (only the acting
    agent's state is carried from one act to the next)."""
    for agent in agents:
        if agent is not acting and agent.carried_state():
            raise CompositionError(
                f"agent {agent.name!r} declares carried state but does not act; only the acting agent "
                f"({acting.name!r}) carries state between steps"
            )
    return acting.carried_state()


def _topological_order(agents: list[Agent], specs: dict[str, DataSpec]) -> tuple[Agent, ...]:
    """Kahn's algorithm; ties broken by name so the order never depends on the list order."""
    by_name = {agent.name: agent for agent in agents}
    # Only keys written by preprocessing order the agents; stored act outputs exist before it runs.
    written_by = {key: name for name, spec in specs.items() for key in spec.provides}
    depends_on = {
        name: {written_by[key] for key in spec.needs if key in written_by} - {name} for name, spec in specs.items()
    }
    order: list[Agent] = []
    remaining = dict(depends_on)
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps & remaining.keys())
        if not ready:
            cycle = ", ".join(sorted(remaining))
            raise CompositionError(f"agents {cycle} need each other's data in a cycle; no preprocessing order exists")
        for name in ready:
            order.append(by_name[name])
            del remaining[name]
    return tuple(order)
