"""A trained acting agent on its own: load it from a checkpoint, act on observations, export it.

::

    policy = Policy.load("runs/CartPole-v1_ppo_s0_...")      # a run directory or one checkpoint
    action, state = policy.predict(obs)                     # one observation (or a batch): numpy in, numpy out
    policy.export("policy.onnx")                            # or format="torchscript"

Only the acting agent is built (with what it needs to act, e.g. PPO's observation normalizer, which
is part of its state), from what the checkpoint records: its class and options, the environment's
spaces and the reward streams that shape its networks. No environment is made and no Gymnasium
registration is needed. Loading is as safe as loading a checkpoint: files are verified and never
unpickled, and a class named by import path is imported only with ``trust_code=True``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch

from rl_agents.checkpointing import CheckpointError, read_checkpoint
from rl_agents.config.registry import AgentImports
from rl_agents.core.agent import Agent, next_carried_key
from rl_agents.core.state import StateError
from rl_agents.core.tree import first_leaf, is_structured, map_space, map_tree, named_leaves
from rl_agents.envs import make_envs
from rl_agents.envs.spaces import observation_tensor_dtype
from rl_agents.policy.loading import (
    ActingRecord,
    EnvRecipe,
    acting_record,
    build_acting_agent,
    env_recipe,
    load_agent_state,
    records_policy,
    state_file,
)
from rl_agents.training.learner import resolve_device
from rl_agents.training.recipes import load_with_class
from rl_agents.training.run_records import agent_record
from rl_agents.training.trainer import Trainer

if TYPE_CHECKING:
    from rl_agents.policy.export import ExportResult


class Policy:
    """An acting agent in evaluation mode (normalizer statistics frozen), with its spaces.

    Build one with :meth:`load` (from a checkpoint) or :meth:`from_trainer` (a copy of a trainer's
    acting agent). ``agent`` is the rebuilt agent, ``checkpoint`` the directory it came from and
    ``global_step`` the training step it was saved at.
    """

    def __init__(
        self,
        agent: Agent,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        generator: torch.Generator,
    ):
        self.agent = agent.eval()
        self.observation_space = observation_space
        self.action_space = action_space
        self.generator = generator  # drives stochastic actions (predict(..., deterministic=False)) only
        self.checkpoint: Path | None = None  # the checkpoint directory it was loaded from
        self.global_step = 0  # the training step it was saved at
        # Read when asked: a run's env (module:EnvId) may need trust that the policy itself does not.
        self._env_recipe: Callable[[], EnvRecipe] | None = None
        self.device = generator.device
        self.observation_dtype = observation_tensor_dtype(observation_space)

    # ------------------------------------------------------------------ building
    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        *,
        seed: int = 0,
        trust_code: bool = False,
        agent_classes: Iterable[type[Agent]] = (),
        skip_damaged: bool = False,
        on_skip: Callable[[Path, str], None] | None = None,
    ) -> Policy:
        """The acting agent of a checkpoint, or of a run's newest checkpoint. A damaged newest one is
        refused unless ``skip_damaged`` (``on_skip(path, reason)`` then hears of each one passed over).
        ``seed`` seeds stochastic actions. A class the checkpoint names by import path is imported
        only with ``trust_code=True``, or taken from ``agent_classes``."""
        imports = AgentImports.of(trust=trust_code, classes=agent_classes)
        directory, tree = read_checkpoint(path, skip_damaged=skip_damaged, on_skip=on_skip)
        run = tree.get("run")
        if not isinstance(run, dict):
            raise CheckpointError(f"{state_file(directory)}: has no run entry")
        recipe = functools.partial(env_recipe, run, directory, imports)
        if not records_policy(run):  # saved before checkpoints recorded spaces: rebuilt with its envs
            return cls._from_older_checkpoint(directory, device, seed=seed, imports=imports, recipe=recipe)
        try:
            acting = acting_record(tree, state_file(directory))
        except StateError as error:
            raise CheckpointError(f"{state_file(directory)}: {error}") from None
        generator = _generator(resolve_device(device), seed)
        agent = build_acting_agent(
            acting, imports, device=generator.device, generator=generator, where=state_file(directory)
        )
        load_agent_state(agent, tree.get("agents"), state_file(directory))
        _set_progress(agent, acting)
        policy = cls(agent, acting.observation_space, acting.action_space, generator=generator)
        policy.checkpoint, policy.global_step, policy._env_recipe = directory, acting.global_step, recipe
        return policy

    @classmethod
    def _from_older_checkpoint(
        cls, directory: Path, device: Any, *, seed: int, imports: AgentImports, recipe: Callable[[], EnvRecipe]
    ) -> Policy:
        trainer = load_with_class(Trainer, directory, None, device=device, loggers=(), imports=imports)
        try:
            policy = cls.from_trainer(trainer, seed=seed)
        finally:
            trainer.envs.close()
        policy.checkpoint, policy.global_step, policy._env_recipe = directory, trainer.global_step, recipe
        return policy

    @classmethod
    def from_trainer(cls, trainer: Trainer, *, seed: int = 0) -> Policy:
        """A copy of ``trainer``'s acting agent as it is now (training it further leaves the copy as is)."""
        learner = trainer.learner
        acting = ActingRecord(
            record=agent_record(learner.acting),
            observation_space=learner.spaces.observation_space,
            action_space=learner.spaces.action_space,
            streams=learner.streams,
            num_envs=learner.num_envs,
            global_step=trainer.global_step,
            total_steps=trainer.total_steps,
        )
        generator = _generator(learner.device, seed)
        imports = AgentImports.of(classes=[type(learner.acting)])  # the class at hand: nothing is imported
        agent = build_acting_agent(acting, imports, device=generator.device, generator=generator, where="trainer")
        load_agent_state(agent, {agent.name: learner.acting.state_dict()}, "trainer")
        _set_progress(agent, acting)
        policy = cls(agent, acting.observation_space, acting.action_space, generator=generator)
        policy.global_step = trainer.global_step
        return policy

    # ------------------------------------------------------------------ acting
    @property
    def has_memory(self) -> bool:
        """Whether the agent carries state from one step to the next (e.g. PPO with ``memory="lstm"``)."""
        return bool(self.agent.carried_state())

    def predict(
        self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, Any]:
        """``(action, state)`` for one observation or a batch of them (numpy, torch or nested lists).

        Actions come back as numpy in the environment's format (an int for Discrete, a float32 array
        for Box, clipped or scaled to its bounds as in training), batched when ``obs`` was.
        ``deterministic`` takes the greedy/mean action; False samples (from this policy's own
        generator, seeded by ``seed``).

        ``state`` is for agents with memory (:attr:`has_memory`): None starts every observation's
        episode from the initial state; then pass back the state predict returned (a dict of numpy
        arrays, ``[batch, size]`` each, or ``[size]`` for one observation). ``episode_start`` (a bool,
        or one per observation) resets the state where an episode begins, as in Stable-Baselines3.
        For agents without memory ``state`` must stay None and comes back None.
        """
        observations, batched = self._observation_batch(obs)
        if not self.has_memory:
            if state is not None:
                raise ValueError(f"agent {self.agent.name!r} keeps no recurrent state: pass state=None")
            actions = self.act_batch(observations, deterministic=deterministic).cpu().numpy()
            return self._env_actions(actions, batched), None
        rows = len(first_leaf(observations))
        carried = self._carried_batch(state, rows, batched)
        if episode_start is not None:
            starts = torch.as_tensor(np.asarray(episode_start, dtype=bool).reshape(-1), device=self.device)
            if starts.numel() not in (1, rows):
                raise ValueError(f"episode_start has {starts.numel()} entries for {rows} observations")
            # Back to the agent's initial state (as CarriedState.reset), not an assumed zero.
            initial = self.agent.initial_carried_state(rows, self.device)
            starting = starts.expand(rows)
            carried = {
                name: torch.where(starting.view(-1, *([1] * (value.dim() - 1))), initial[name], value)
                for name, value in carried.items()
            }
        with torch.inference_mode():
            outputs = self.agent.act(
                map_tree(lambda leaf: leaf.to(self.device, non_blocking=True), observations),
                deterministic=deterministic,
                state=carried,
            )
            actions = self.agent.env_action(outputs).cpu().numpy()
        next_state = {
            name: outputs[next_carried_key(name)].cpu().numpy()[slice(None) if batched else 0] for name in carried
        }
        return self._env_actions(actions, batched), next_state

    def _env_actions(self, actions: np.ndarray, batched: bool) -> np.ndarray:
        actions = actions.astype(self.action_space.dtype, copy=False) if self.action_space.dtype else actions
        return actions if batched else actions[0]

    def _carried_batch(self, state: Any, rows: int, batched: bool) -> dict[str, torch.Tensor]:
        """The carried state for ``rows`` observations: initial when ``state`` is None, else ``state``
        checked against the agent's declared shapes."""
        shapes = self.agent.carried_state()
        if state is None:
            return self.agent.initial_carried_state(rows, self.device)
        if not isinstance(state, dict) or set(state) != set(shapes):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be the dict predict returned, with entries {sorted(shapes)}; got {got}")
        carried = {}
        for name, shape in shapes.items():
            value = torch.as_tensor(np.asarray(state[name], dtype=np.float32), device=self.device)
            expected = (rows, *shape) if batched else shape
            if tuple(value.shape) != tuple(expected):
                raise ValueError(f"state[{name!r}] has shape {tuple(value.shape)}, expected {tuple(expected)}")
            carried[name] = value if batched else value.unsqueeze(0)
        return carried

    @torch.inference_mode()
    def act_batch(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """The fast path: environment actions for a ``[batch, *obs_shape]`` tensor, with no checks or
        conversions (the tensor must have the observation dtype: uint8 images, else float32). Agents
        with memory need :meth:`predict` and its state."""
        if self.has_memory:
            raise ValueError(f"agent {self.agent.name!r} has memory: use predict(obs, state) to carry its state")
        observations = map_tree(lambda leaf: leaf.to(self.device, non_blocking=True), obs)
        outputs = self.agent.act(observations, deterministic=deterministic)
        return self.agent.env_action(outputs)

    def _observation_batch(self, obs: Any) -> tuple[Any, bool]:
        """``obs`` as a ``[batch, *shape]`` tensor of the observation dtype (a tree of them for a Dict
        or Tuple space: a dict or tuple of leaves, one observation's or a batch's), and whether it was
        a batch."""
        if not is_structured(self.observation_space):
            return self._leaf_batch(obs, self.observation_space, "observation")
        leaves: list[tuple[torch.Tensor, bool]] = []
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict) and isinstance(obs, dict) and obs.keys() - space.spaces.keys():
            raise ValueError(f"observation has keys {sorted(obs.keys() - space.spaces.keys())} that {space} does not")

        def leaf_batch(space: gym.Space, path: str, value: Any) -> torch.Tensor:
            converted = self._leaf_batch(value, space, f"observation {path!r}")
            leaves.append(converted)
            return converted[0]

        try:
            spaces = map_space(lambda leaf: leaf, self.observation_space)
            paths = named_leaves(map_space(lambda leaf: None, self.observation_space), "")
            batch = map_tree(leaf_batch, spaces, map_tree(lambda path: path.lstrip("."), paths), obs)
        except (KeyError, IndexError, TypeError) as error:
            raise ValueError(
                f"observation does not have the structure of the policy's observation space {self.observation_space} "
                f"({type(error).__name__}: {error})"
            ) from None
        batched = {flag for _, flag in leaves}
        sizes = {len(values) for values, _ in leaves}
        if len(batched) > 1 or len(sizes) > 1:
            raise ValueError("the observation's leaves are not all one observation, or all batches of one size")
        return batch, batched.pop()

    def _leaf_batch(self, obs: Any, space: gym.Space, what: str) -> tuple[torch.Tensor, bool]:
        values = obs if isinstance(obs, torch.Tensor) else torch.as_tensor(np.asarray(obs))
        shape = tuple(space.shape or ())
        if tuple(values.shape) == shape:
            values, batched = values.unsqueeze(0), False
        elif values.dim() == len(shape) + 1 and tuple(values.shape[1:]) == shape:
            batched = True
        else:
            raise ValueError(
                f"{what} of shape {tuple(values.shape)} is neither one observation {shape} nor a batch "
                f"(n, {', '.join(map(str, shape))}) of the policy's observation space {space}"
            )
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            bad = int((~torch.isfinite(values.reshape(len(values), -1))).any(dim=1).nonzero()[0])
            raise ValueError(f"{what} {bad} of the batch holds NaN or inf" if batched else f"{what} holds NaN or inf")
        return values.to(observation_tensor_dtype(space)), batched

    # ------------------------------------------------------------------ environments and export
    def env_recipe(self) -> EnvRecipe:
        """How the run made its environments (CheckpointError when the checkpoint does not say)."""
        if self._env_recipe is None:
            raise ValueError("this policy was not loaded from a checkpoint: it does not know its run's environments")
        return self._env_recipe()

    def make_env(self, num_envs: int = 1, **kwargs: Any) -> gym.vector.VectorEnv:
        """Vector envs like the ones the run trained on; ``kwargs`` add to the env's keyword arguments
        (e.g. ``render_mode="rgb_array"`` for videos)."""
        recipe = self.env_recipe()
        return make_envs(recipe.env_id, num_envs, recipe.vectorization, **{**recipe.kwargs, **kwargs})

    def export(self, path: str | os.PathLike, format: str = "onnx", *, check: int = 1000) -> ExportResult:
        """Write the deterministic policy (observation normalization and action selection included) as
        ONNX or TorchScript, then run the file on ``check`` random observations and refuse it unless
        its actions equal :meth:`predict`'s (see :mod:`rl_agents.policy.export`)."""
        from rl_agents.policy.export import export_policy

        return export_policy(self, Path(path), format, check=check)

    def __repr__(self) -> str:
        origin = f" from {self.checkpoint}" if self.checkpoint else ""
        return f"Policy({type(self.agent).__name__} {self.agent.name!r}{origin})"


def _generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _set_progress(agent: Agent, acting: ActingRecord) -> None:
    """Where training left the agent's schedules (e.g. DQN's epsilon, for stochastic actions)."""
    agent.set_progress(acting.global_step, acting.total_steps)
