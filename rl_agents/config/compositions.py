"""Named compositions: one name for agents that are trained together with settings of their own.

``--agents rainbow`` (or ``agents: rainbow`` in a config) stands for ``dqn+per`` with the options below;
it may be combined like any agent (``rainbow+rnd``). The run's config records the expansion (agents
``dqn+per`` and their sections), so that a run reads the same without this table. Settings given in the
run's config win over the composition's: a config's or a preset's sections (a preset tuned for the
composition, e.g. ``MinAtar_Breakout-v1.rainbow.yaml``) and ``--set dqn.atoms=21``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NamedComposition:
    agents: str  # the agents it stands for, joined by '+'
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent options and trainer settings
    source: str = ""


COMPOSITIONS: dict[str, NamedComposition] = {
    "rainbow": NamedComposition(
        agents="dqn+per",
        sections={
            # Noisy nets explore instead of epsilon-greedy (epsilon 0), as in Hessel et al.
            "dqn": {
                "dueling": True,
                "atoms": 51,
                "noisy": True,
                "double": True,
                "initial_epsilon": 0.0,
                "final_epsilon": 0.0,
            },
            "per": {"alpha": 0.5, "beta": 0.4, "final_beta": 1.0},
            "trainer": {"n_step": 3},
        },
        source="Hessel et al. 2018, Rainbow: dueling, C51 (51 atoms), noisy nets, double Q, PER (alpha 0.5, "
        "beta 0.4 to 1), 3-step returns",
    ),
}


def learner_name(spec: str) -> str:
    """The first item of an ``agents`` value as written: the name a preset is chosen by (``rainbow``)."""
    return next((item.strip() for item in spec.split("+") if item.strip()), "")


def expand_agent_names(spec: str) -> str:
    """``rainbow+rnd`` -> ``dqn+per+rnd``: compositions replaced by their agents."""
    items = [item.strip() for item in spec.split("+") if item.strip()]
    return "+".join(COMPOSITIONS[item].agents if item in COMPOSITIONS else item for item in items)


def expand_compositions(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the compositions its ``agents`` names replaced by their agents and their sections
    merged under ``raw``'s own (the user's settings win)."""
    spec = raw.get("agents")
    if not isinstance(spec, str):
        return raw
    used = [COMPOSITIONS[item.strip()] for item in spec.split("+") if item.strip() in COMPOSITIONS]
    if not used:
        return raw
    expanded = dict(raw)
    expanded["agents"] = expand_agent_names(spec)
    for composition in used:
        for section, values in composition.sections.items():
            given = raw.get(section)
            merged = copy.deepcopy(values)
            if isinstance(given, dict):
                merged.update(given)
            elif given is not None:  # not a mapping: left for the schema to refuse, naming it
                continue
            expanded[section] = merged
    return expanded
