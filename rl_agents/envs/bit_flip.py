"""Goal-conditioned bit flipping (Andrychowicz et al. 2017, "Hindsight Experience Replay", section 3.1).

The state is a vector of ``n_bits`` bits; each step flips one of them (or, with ``continuous=True``, every
bit whose action component is positive). The episode is solved when the bits equal a goal drawn at reset.
The reward is sparse, -1 on every step until solved and 0 then, so without hindsight relabelling an agent
almost never sees a reward for ``n_bits`` beyond 10 or so: the task HER was introduced on.

The observation is a gymnasium-robotics style goal Dict (``observation``, ``achieved_goal``,
``desired_goal``) and :meth:`BitFlipEnv.compute_reward` recomputes the reward for any (batched) goal pair,
which is what a HER replay needs to relabel stored transitions with the goals achieved later.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "rl_agents/BitFlip-v0"


def _bits_space(n_bits: int) -> gym.spaces.Box:
    """A vector of ``n_bits`` bits, as float32 0s and 1s (what the agents' networks take)."""
    return gym.spaces.Box(0.0, 1.0, (n_bits,), np.float32)


def _check_n_bits(n_bits: object) -> int:
    """``n_bits`` as an int, or a ValueError naming it (a bool or a float is refused, not rounded)."""
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 1:
        raise ValueError(f"BitFlipEnv: n_bits must be an int >= 1, got {n_bits!r}")
    return int(n_bits)


class BitFlipEnv(gym.Env):
    """Flip bits until they equal the goal; a sparse reward of -1 per step until they do, 0 when they do.

    ``continuous=False``: ``Discrete(n_bits)``, action ``i`` flips bit ``i``. ``continuous=True``:
    ``Box(-1, 1, (n_bits,))``, every bit whose component is > 0 flips (for continuous-action agents such as
    SAC or TD3). The episode terminates when solved and is truncated after ``max_episode_steps`` steps
    (default ``n_bits``, the episode length of the HER paper: enough to solve any goal with discrete flips).
    """

    metadata = {"render_modes": ["human", "ansi"], "render_fps": 4}

    def __init__(
        self,
        n_bits: int = 10,
        continuous: bool = False,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.n_bits = _check_n_bits(n_bits)
        self.continuous = bool(continuous)
        self.max_episode_steps = self.n_bits if max_episode_steps is None else int(max_episode_steps)
        if self.max_episode_steps < 1:
            raise ValueError(f"BitFlipEnv: max_episode_steps must be >= 1, got {max_episode_steps!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"BitFlipEnv: render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        # An OrderedDict keeps the keys in this order (gymnasium sorts a plain dict's keys).
        self.observation_space = gym.spaces.Dict(
            OrderedDict(
                observation=_bits_space(self.n_bits),
                achieved_goal=_bits_space(self.n_bits),
                desired_goal=_bits_space(self.n_bits),
            )
        )
        self.action_space: gym.spaces.Space = (
            gym.spaces.Box(-1.0, 1.0, (self.n_bits,), np.float32)
            if self.continuous
            else gym.spaces.Discrete(self.n_bits)
        )
        self.state = np.zeros(self.n_bits, dtype=np.float32)
        self.goal = np.ones(self.n_bits, dtype=np.float32)
        self.steps = 0

    def _random_bits(self) -> np.ndarray:
        return self.np_random.integers(0, 2, size=self.n_bits).astype(np.float32)

    def _observation(self) -> dict[str, np.ndarray]:
        """The goal Dict; copies, so that a stored observation does not change with the next flip."""
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def _flip_mask(self, action: Any) -> np.ndarray:
        """Which bits the action flips: bit ``action`` (Discrete), or those whose component is > 0 (Box).

        Checked by hand rather than with ``action_space.contains``, which refuses a float64 Box action."""
        if self.continuous:
            components = np.asarray(action, dtype=np.float32)
            if components.shape != (self.n_bits,):
                raise ValueError(f"BitFlipEnv: expected an action of shape ({self.n_bits},), got {components.shape}")
            return components > 0
        if not 0 <= int(action) < self.n_bits:
            raise ValueError(f"BitFlipEnv: action must be a bit index in [0, {self.n_bits}), got {action!r}")
        mask = np.zeros(self.n_bits, dtype=bool)
        mask[int(action)] = True
        return mask

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Random bits and a random goal, the goal redrawn until it differs: an episode is never solved at reset."""
        super().reset(seed=seed)
        self.state = self._random_bits()
        self.goal = self._random_bits()
        while np.array_equal(self.state, self.goal):
            self.goal = self._random_bits()
        self.steps = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Flips the chosen bits; reward 0 and terminated when the bits equal the goal, else -1."""
        mask = self._flip_mask(action)
        self.state[mask] = 1.0 - self.state[mask]
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal, {}))
        terminated = reward == 0.0
        truncated = self.steps >= self.max_episode_steps
        if self.render_mode == "human":
            print(self._text())
        return self._observation(), reward, terminated, truncated, {"is_success": bool(terminated)}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """0.0 where all bits of ``achieved_goal`` equal ``desired_goal``'s, else -1.0 (float32).

        Vectorized over leading batch dimensions (``[..., n_bits]`` -> ``[...]``), as a HER replay calls it
        on a batch of relabelled goals; a single goal pair gives a 0-d array. ``info`` is ignored."""
        del info
        achieved = np.asarray(achieved_goal)
        desired = np.asarray(desired_goal)
        solved = np.all(achieved == desired, axis=-1)
        return np.where(solved, 0.0, -1.0).astype(np.float32)

    def _text(self) -> str:
        bits = "".join(str(int(bit)) for bit in self.state)
        goal = "".join(str(int(bit)) for bit in self.goal)
        return f"bits {bits}  goal {goal}  step {self.steps}/{self.max_episode_steps}"

    def render(self) -> str | None:
        """``"ansi"``: the bits and the goal as a line of text; ``"human"`` prints it on every step."""
        if self.render_mode == "ansi":
            return self._text()
        if self.render_mode == "human":
            print(self._text())
        return None


def register_bit_flip() -> None:
    """Registers ``rl_agents/BitFlip-v0`` with gymnasium, once (no "Overriding environment" warning).

    No ``max_episode_steps`` is registered: the env truncates itself after its own ``max_episode_steps``
    (``n_bits`` by default), which a registered TimeLimit could not follow when ``n_bits`` changes."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="rl_agents.envs.bit_flip:BitFlipEnv")
