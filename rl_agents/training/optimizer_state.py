"""The optimizer's state by parameter name (``<agent>/<parameter>``) instead of torch's positions, so
that a checkpoint says what each moment estimate belongs to and a mismatch is refused by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from rl_agents.core.agent import Agent
from rl_agents.core.state import Apply, StateError, entry, is_type

# Optimizer settings that choose a kernel, not the math: this optimizer's own choice (which may depend
# on the device) is kept, whatever the saving one used.
_IMPLEMENTATION_KEYS = frozenset({"foreach", "fused", "capturable", "differentiable"})


def class_path(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def parameter_names(agents: Sequence[Agent], optimizer: torch.optim.Optimizer) -> dict[int, str]:
    """``id(parameter) -> "<agent>/<parameter name>"`` for every agent parameter."""
    names: dict[int, str] = {}
    for agent in agents:
        for pname, param in agent.named_parameters():
            names.setdefault(id(param), f"{agent.name}/{pname}")
    for group in optimizer.param_groups:
        for param in group["params"]:
            if id(param) not in names:
                raise ValueError(f"optimizer group {group.get('name')!r} holds a parameter that belongs to no agent")
    return names


def _plain(value: Any) -> Any:
    """Hyperparameters as JSON values: tuples as lists, one-element tensors as numbers."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def optimizer_state_dict(agents: Sequence[Agent], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``{"class", "param_groups": [{"name", "hyperparameters", "params"}], "state": {param: {key: value}}}``."""
    names = parameter_names(agents, optimizer)
    groups = [
        {
            "name": group.get("name"),
            "hyperparameters": {key: _plain(value) for key, value in group.items() if key != "params"},
            "params": [names[id(p)] for p in group["params"]],
        }
        for group in optimizer.param_groups
    ]
    state = {
        names[id(param)]: {
            key: value.detach().clone() if isinstance(value, torch.Tensor) else value for key, value in values.items()
        }
        for param, values in optimizer.state.items()
    }
    return {"class": class_path(optimizer), "param_groups": groups, "state": state}


def prepare_optimizer_load(agents: Sequence[Agent], optimizer: torch.optim.Optimizer, saved: Any, where: str) -> Apply:
    """Check an :func:`optimizer_state_dict` against ``optimizer`` (class, groups, parameter names and
    shapes, the same state keys for every parameter) and return the function that loads it."""
    names = parameter_names(agents, optimizer)
    if entry(saved, "class", str, where) != class_path(optimizer):
        raise StateError(f"{where}: optimizer was {saved['class']!r}, this trainer uses {class_path(optimizer)!r}")
    saved_groups = entry(saved, "param_groups", list, where)
    if not all(
        isinstance(g, dict)
        and isinstance(g.get("hyperparameters"), dict)
        and isinstance(g.get("params"), list)
        and all(isinstance(p, str) for p in g["params"])
        for g in saved_groups
    ):
        raise StateError(f"{where}: param_groups is malformed")
    if len(saved_groups) != len(optimizer.param_groups):
        raise StateError(
            f"{where}: optimizer has {len(saved_groups)} param groups, this trainer has {len(optimizer.param_groups)}"
        )
    template = optimizer.state_dict()
    new_groups, index_of, params_by_name = [], {}, {}
    for group, template_group, saved_group in zip(optimizer.param_groups, template["param_groups"], saved_groups):
        group_names = [names[id(p)] for p in group["params"]]
        label = group.get("name")
        if saved_group.get("name") != label:
            raise StateError(
                f"{where}: optimizer param group {saved_group.get('name')!r} does not match this trainer's {label!r}"
            )
        if saved_group["params"] != group_names:
            missing = sorted(set(group_names) - set(saved_group["params"]))
            extra = sorted(set(saved_group["params"]) - set(group_names))
            raise StateError(
                f"{where}: agent {label!r}: optimized parameters differ (missing {missing}, unexpected {extra})"
            )
        new_groups.append(_hyperparameters(template_group, saved_group["hyperparameters"], f"{where}: group {label!r}"))
        for pname, index, param in zip(group_names, template_group["params"], group["params"]):
            index_of[pname] = index
            params_by_name[pname] = param
    new_state = _parameter_state(entry(saved, "state", dict, where), index_of, params_by_name, where)

    def apply() -> None:
        try:
            optimizer.load_state_dict({"state": new_state, "param_groups": new_groups})
        except Exception as error:
            raise StateError(f"{where}: optimizer state does not fit ({' '.join(str(error).split())})") from None

    return apply


def _hyperparameters(template_group: dict[str, Any], saved: dict[str, Any], where: str) -> dict[str, Any]:
    hyper = dict(template_group)
    for key, value in saved.items():
        if key in ("params", "param_names") or key in _IMPLEMENTATION_KEYS:
            continue
        if key in template_group:  # keys this torch does not know are passed on as they are; Adam ignores them
            _check_hyperparameter(key, template_group[key], value, where)
        hyper[key] = tuple(value) if isinstance(template_group.get(key), tuple) and isinstance(value, list) else value
    return hyper


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_hyperparameter(key: str, template: Any, value: Any, where: str) -> None:
    """A saved hyperparameter of the kind the optimizer's own has (a finite number where it has a
    number, a pair of numbers where it has ``betas``...): a wrong one would only fail later, inside
    ``optimizer.step``."""
    if isinstance(template, bool) or template is None:
        ok = value is None or isinstance(value, bool) if template is None else isinstance(value, bool)
    elif isinstance(template, (int, float)):
        ok = _is_number(value)
    elif isinstance(template, (tuple, list)):
        ok = isinstance(value, (tuple, list)) and len(value) == len(template) and all(map(_is_number, value))
    elif isinstance(template, str):
        ok = isinstance(value, str)
    else:
        ok = True  # e.g. a tensor learning rate: checked by the optimizer itself
    if not ok:
        raise StateError(f"{where}: optimizer hyperparameter {key!r} is {value!r}; expected one like {template!r}")


def _parameter_state(
    saved: dict[str, Any], index_of: dict[str, int], params_by_name: dict[str, torch.Tensor], where: str
) -> dict[int, dict[str, Any]]:
    new_state: dict[int, dict[str, Any]] = {}
    for pname, values in saved.items():
        if pname not in index_of:
            raise StateError(f"{where}: optimizer state for {pname!r}, a parameter this trainer does not optimize")
        if not isinstance(values, dict):
            raise StateError(f"{where}: optimizer state of {pname!r} must be an object")
        param = params_by_name[pname]
        for key, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() != 0 and tuple(value.shape) != tuple(param.shape):
                raise StateError(
                    f"{where}: optimizer state {key!r} of {pname!r} has shape {list(value.shape)}, "
                    f"parameter has {list(param.shape)}"
                )
            if not isinstance(value, torch.Tensor) and not is_type(
                value, (int, float, bool, str, type(None), list, dict)
            ):
                raise StateError(
                    f"{where}: optimizer state {key!r} of {pname!r} has the wrong type ({type(value).__name__})"
                )
        new_state[index_of[pname]] = dict(values)
    key_sets = {frozenset(values) for values in new_state.values()}
    if len(key_sets) > 1:  # torch's optimizers keep the same keys for every parameter they have state for
        everything = frozenset().union(*key_sets)
        pname, values = next(
            (n, new_state[i]) for n, i in index_of.items() if i in new_state and set(new_state[i]) != everything
        )
        raise StateError(f"{where}: optimizer state of {pname!r} lacks {sorted(everything - set(values))}")
    return new_state
