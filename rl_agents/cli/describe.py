"""``rl-agents describe``: how a composition fits together, built from the agents' declarations."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from rl_agents.core.composition import CARRIED_PROVIDER, ENV_PROVIDER
from rl_agents.core.schedules import ReplaySchedule
from rl_agents.training.trainer import Trainer


def _schedule_text(trainer: Trainer) -> str:
    schedule = trainer.schedule
    if isinstance(schedule, ReplaySchedule):
        target = "hard copy" if schedule.tau == 1.0 else f"Polyak tau {schedule.tau:g}"
        return (
            f"off-policy: replay of {schedule.buffer_size:,} transitions, random actions for the first "
            f"{schedule.learning_starts:,} steps, then every {schedule.train_frequency} x {trainer.num_envs} env steps "
            f"{schedule.gradient_steps} gradient step(s) on {schedule.batch_size} sampled transitions, "
            f"{schedule.n_step}-step returns, target update ({target}) every {schedule.target_update_interval} "
            f"gradient steps, grad-norm clip {schedule.max_grad_norm}"
        )
    minibatches = (
        f"{schedule.num_minibatches} minibatches of whole env sequences"
        if schedule.sequence_minibatches
        else f"{schedule.num_minibatches} minibatches"
    )
    return (
        f"on-policy: {schedule.num_steps} steps x {trainer.num_envs} envs per rollout, {schedule.num_epochs} epochs x "
        f"{minibatches}, grad-norm clip {schedule.max_grad_norm}, "
        f"lr annealing {'on' if schedule.anneal_lr else 'off'}"
    )


def memory_text(trainer: Trainer) -> str | None:
    """What the acting agent carries between steps, or None when it carries nothing."""
    shapes = trainer.acting.carried_state()
    if not shapes:
        return None
    carried = ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items())
    return f"{trainer.acting.name} carries {carried} per env, reset at episode starts"


def settings_line(trainer: Trainer, config: Any) -> str:
    """One line: where the run's settings came from (config file, preset, defaults) and what they are."""
    rates = ", ".join(f"{agent.name} {_learning_rates(trainer, agent.name)}" for agent in trainer.agents)
    memory = memory_text(trainer)
    return f"settings: {config.origin or 'Python config'}; {_schedule_text(trainer)}; learning rates: {rates}" + (
        f"; memory: {memory}" if memory else ""
    )


def describe_trainer(trainer: Trainer, config: Any | None = None) -> Group:
    composition = trainer.learner.composition
    spaces = trainer.learner.spaces
    envs = trainer.envs
    kind = type(envs).__name__ if envs is not None else "on Ray workers"
    header = Table.grid(padding=(0, 2))
    header.add_row("environment", f"{config.env if config else ''}  x{trainer.num_envs} ({kind})")
    header.add_row("observation space", str(spaces.observation_space))
    header.add_row("action space", str(spaces.action_space))
    header.add_row("acting agent", composition.acting.name)
    if config is not None:
        header.add_row("settings", config.origin or "Python config")
    header.add_row("schedule", _schedule_text(trainer))
    memory = memory_text(trainer)
    if memory:
        header.add_row("memory", memory)
    header.add_row("device", str(trainer.device))
    return Group(
        Panel(header, title="composition"),
        _agents_table(trainer),
        _streams_table(trainer),
        _data_table(trainer),
        _order_table(trainer),
        _loss_table(trainer),
    )


def _agents_table(trainer: Trainer) -> Table:
    table = Table(title="agents")
    for column in ("agent", "class", "acts", "learning rate", "loss weight", "trainable params", "all params"):
        table.add_column(column)
    for agent in trainer.agents:
        trainable = sum(p.numel() for p in agent.parameters() if p.requires_grad)
        total = sum(p.numel() for p in agent.parameters())
        table.add_row(
            agent.name,
            type(agent).__name__,
            "yes" if agent.acts else "",
            _learning_rates(trainer, agent.name),
            f"{agent.loss_weight:g}",
            f"{trainable:,}",
            f"{total:,}",
        )
    return table


def _learning_rates(trainer: Trainer, agent: str) -> str:
    """The agent's base learning rates by optimizer group (one it did not set is the acting agent's)."""
    groups = zip(trainer.optimizer.param_groups, trainer.learner.base_lrs)
    rates = [f"{base:g}" for group, base in groups if group["name"] == agent or group["name"].startswith(agent + "/")]
    return ", ".join(rates) or "-"


def _streams_table(trainer: Trainer) -> Table:
    table = Table(title="reward streams (the policy's advantage is their coef-weighted sum)")
    for column in ("stream", "declared by", "reward key", "gamma", "episodic", "coef"):
        table.add_column(column)
    for agent in trainer.agents:
        for stream in agent.reward_streams():
            table.add_row(
                stream.name,
                agent.name,
                stream.key,
                f"{stream.gamma:g}",
                "yes" if stream.episodic else "no (bootstraps through episode ends)",
                f"{stream.coef:g}",
            )
    return table


def _data_table(trainer: Trainer) -> Table:
    composition = trainer.learner.composition
    table = Table(title="data: who provides each key, who needs it")
    for column in ("key", "provided by", "needed by", "stored per step"):
        table.add_column(column)
    for key in sorted(composition.used_keys):
        provider = composition.providers.get(key, "?")
        if provider == composition.acting.name and key in composition.specs[provider].act_outputs:
            provider = f"{provider} (act)"
        elif provider not in (ENV_PROVIDER, CARRIED_PROVIDER):
            provider = f"{provider} (preprocess)"
        consumers = ", ".join(name for name, spec in composition.specs.items() if key in spec.needs) or "-"
        table.add_row(key, provider, consumers, "yes" if key in composition.collected_keys or key == "obs" else "")
    return table


def _order_table(trainer: Trainer) -> Table:
    table = Table(title="preprocessing order (from the declarations, not the list order)")
    for column in ("#", "agent", "reads", "writes"):
        table.add_column(column)
    for index, agent in enumerate(trainer.learner.composition.order, start=1):
        spec = trainer.learner.composition.specs[agent.name]
        table.add_row(
            str(index), agent.name, ", ".join(sorted(spec.needs)) or "-", ", ".join(sorted(spec.provides)) or "-"
        )
    return table


def _loss_table(trainer: Trainer) -> Table:
    table = Table(title="loss: the sum of every agent's terms x the agent's loss weight, one optimizer step")
    for column in ("agent", "term (logged as agent/loss/term)", "weight", "computed as"):
        table.add_column(column)
    for agent in trainer.learner.composition.order:
        for term, description in agent.loss_terms().items():
            table.add_row(agent.name, term, f"{agent.loss_weight:g}", description)
    return table
