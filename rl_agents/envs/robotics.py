"""Gymnasium-Robotics (the ``robotics`` extra): the Fetch and Shadow-hand goal-conditioned tasks.

gymnasium-robotics 1.4.2 (the newest on PyPI) reads a joint's type with ``model.jnt_type[joint]``, which
MuJoCo 3.12 and later return as a ``numpy.int32`` that no longer compares equal to ``mujoco.mjtJoint``'s
values, so its joint accessors fail an ``assert`` on every slide and hinge joint (``FetchReach-v4``
cannot even reset; mujoco 3.11 and older work). :func:`register_robotics` registers its environments
and replaces those four accessors (``set/get_joint_qpos``, ``set/get_joint_qvel``) in its
``mujoco_utils`` module with versions that compare the joint type as an integer; they address the same
``qpos``/``qvel`` entries. Nothing else of the package is changed.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

# Entries a joint of each type takes in qpos and in qvel (MuJoCo's joint types: free, ball, slide, hinge).
_FREE, _BALL, _SLIDE, _HINGE = 0, 1, 2, 3
_QPOS_SIZE = {_FREE: 7, _BALL: 4, _SLIDE: 1, _HINGE: 1}
_QVEL_SIZE = {_FREE: 6, _BALL: 3, _SLIDE: 1, _HINGE: 1}


def _joint(model: Any, name: str, addresses: np.ndarray, sizes: dict[int, int]) -> slice:
    import mujoco

    joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    if joint == -1:
        raise KeyError(f"joint {name!r} is not part of the model")
    start = int(addresses[joint])
    return slice(start, start + sizes[int(model.jnt_type[joint])])


def set_joint_qpos(model: Any, data: Any, name: str, value: Any) -> None:
    data.qpos[_joint(model, name, model.jnt_qposadr, _QPOS_SIZE)] = np.asarray(value)


def set_joint_qvel(model: Any, data: Any, name: str, value: Any) -> None:
    data.qvel[_joint(model, name, model.jnt_dofadr, _QVEL_SIZE)] = np.asarray(value)


def get_joint_qpos(model: Any, data: Any, name: str) -> np.ndarray:
    return data.qpos[_joint(model, name, model.jnt_qposadr, _QPOS_SIZE)].copy()


def get_joint_qvel(model: Any, data: Any, name: str) -> np.ndarray:
    return data.qvel[_joint(model, name, model.jnt_dofadr, _QVEL_SIZE)].copy()


def register_robotics() -> None:
    """Register Gymnasium-Robotics' environments (once) with the joint accessors MuJoCo >= 3.12 needs."""
    import gymnasium as gym

    # Its import prints a notice to stderr about the Adroit tasks' changed rewards (not tasks of the
    # family make_envs names robotics): kept out of every run's output.
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics
    from gymnasium_robotics.utils import mujoco_utils

    for accessor in (set_joint_qpos, set_joint_qvel, get_joint_qpos, get_joint_qvel):
        setattr(mujoco_utils, accessor.__name__, accessor)
    if "FetchReach-v4" not in gym.registry:
        gym.register_envs(gymnasium_robotics)
