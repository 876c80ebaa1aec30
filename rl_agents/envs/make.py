"""Vector environment creation with the standard wrappers of each environment family.

Every env :func:`make_envs` builds is wrapped in :class:`~rl_agents.envs.errors.IndexedEnv`, so a
failing env is named in the error. :func:`make_envs` also
remembers how it built each vector env (:func:`env_factory_of`), which lets the Trainer rebuild the
environments after a failure (``Trainer(..., max_env_restarts=N)``).
"""

from __future__ import annotations

import functools
import importlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from rl_agents.envs.errors import EnvCreationError, IndexedEnv
from rl_agents.envs.masked import MaskVelocity, base_of


def _env_family(env_id: str) -> str:
    env_id = env_id.split(":", 1)[-1]  # "module:EnvId": the family of EnvId
    if env_id.startswith(("MiniGrid-", "BabyAI-")):
        return "minigrid"
    if env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4"):
        return "atari"
    if env_id.startswith("popgym-"):
        return "popgym"
    if env_id.startswith("MinAtar/"):
        return "minatar"
    if env_id.startswith(("Fetch", "HandReach", "HandManipulate")):
        return "robotics"
    return "gymnasium"


def samples_when_evaluated(env_id: str) -> bool:
    """Whether evaluating a policy on ``env_id`` samples its actions by default: on MiniGrid and Atari,
    as rl-zoo3 evaluates them (a greedy policy can walk in circles in a gridworld, or repeat one move
    in a game, where the policy it learned as a sampler does not); greedy actions elsewhere.

    MinAtar stays greedy: its paper (Young & Tian 2019) reports epsilon-greedy DQN returns, not those of a
    sampled policy, and its sticky actions (10%) already break a repeated move."""
    return _env_family(env_id) in ("minigrid", "atari")


def _register_family(family: str) -> None:
    try:
        if family == "minigrid":
            import minigrid  # noqa: F401  (registers the MiniGrid ids)
        elif family == "atari":
            import ale_py

            gym.register_envs(ale_py)
        elif family == "popgym":
            import popgym  # noqa: F401  (registers the popgym-* ids)
        elif family == "minatar":
            import minatar.gym

            # register_envs() registers the MinAtar/<Game>-v0/-v1 ids anew on every call (gymnasium warns
            # "Overriding environment"): register them once.
            if not any(key.startswith("MinAtar/") for key in gym.registry):
                minatar.gym.register_envs()
        elif family == "robotics":
            from rl_agents.envs.robotics import register_robotics

            register_robotics()
    except ImportError as error:
        raise EnvCreationError(
            f"{family} environments need the {family!r} extra: pip install 'rl-agents[{family}]'"
        ) from error


class ChannelsFirstUint8(gym.ObservationWrapper):
    """A channels-last (H, W, C) boolean frame as a channels-first (C, H, W) uint8 image of 0s and 1s.

    MinAtar's frames are 10x10xC with C = 4 to 10 channels; :func:`rl_agents.core.nets.image_layout`
    takes a shape as channels-last only when its last axis has at most 4 entries, so 10x10x6 or 10x10x10
    would be read as 10 channels of 10x6 or 10x10 pixels. (C, 10, 10) is read right for every C.
    A module-level class: the async workers get it pickled."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)), dtype=np.uint8)


class SelectObservation(gym.ObservationWrapper):
    """Keeps the named keys of a Dict observation (a Dict space orders them, as gymnasium sorts a plain
    dict's keys); one key gives its observation alone (a
    MiniGrid run with ``observation_keys: [image]`` sees the 7x7x3 view as a Box, as ImgObsWrapper gives).
    A module-level class: the async workers get it pickled."""

    def __init__(self, env: gym.Env, keys: tuple[str, ...]):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Dict):
            raise EnvCreationError(
                f"observation_keys {list(keys)} given, but the observation space {space} is not a Dict"
            )
        unknown = [key for key in keys if key not in space.spaces]
        if unknown or not keys or len(set(keys)) != len(keys):
            raise EnvCreationError(
                f"observation_keys must name distinct keys of the observation space ({', '.join(space.spaces)}), "
                f"got {list(keys)}"
            )
        self.keys = keys
        self.observation_space = (
            space.spaces[keys[0]] if len(keys) == 1 else gym.spaces.Dict({key: space.spaces[key] for key in keys})
        )

    def observation(self, observation: dict[str, Any]) -> Any:
        if len(self.keys) == 1:
            return observation[self.keys[0]]
        return {key: observation[key] for key in self.keys}


# MiniGrid's Dict observation without its "mission" (a Text space: no tensor can hold it; a constant
# sentence in most tasks). A config's observation_keys chooses otherwise (the presets: the image alone).
MINIGRID_OBSERVATION_KEYS = ("image", "direction")


def family_wrappers(env_id: str, observation_keys: Sequence[str] | None = None) -> list[Callable[[gym.Env], gym.Env]]:
    """Per-env wrappers that turn each family's observations into what the agents expect, then keep
    ``observation_keys`` of a Dict observation (see :class:`SelectObservation`)."""
    wrappers = _family_wrappers(env_id)
    if observation_keys is None and _env_family(env_id) == "minigrid":
        observation_keys = MINIGRID_OBSERVATION_KEYS
    if observation_keys is not None:
        wrappers.append(functools.partial(SelectObservation, keys=tuple(observation_keys)))
    return wrappers


def _family_wrappers(env_id: str) -> list[Callable[[gym.Env], gym.Env]]:
    family = _env_family(env_id)
    if family == "minigrid":
        return []
    if family == "atari":
        # DeepMind-style preprocessing: noop reset, frame skip 4 with max-pooling, 84x84 grayscale,
        # rewards clipped to their sign, 4 stacked frames. The frame skip lives in the wrapper, so the
        # ALE's own is turned off. Episode statistics are recorded before clipping (the game score).
        def atari(env: gym.Env) -> gym.Env:
            env = gym.wrappers.AtariPreprocessing(
                env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False, grayscale_obs=True
            )
            env = gym.wrappers.RecordEpisodeStatistics(env)
            env = gym.wrappers.TransformReward(env, lambda reward: float(np.sign(reward)))
            return gym.wrappers.FrameStackObservation(env, 4)

        return [atari]
    if family == "popgym":
        # Some POPGym tasks observe a Discrete or Tuple space (RepeatPrevious: the card, Discrete(4));
        # flattened, a Discrete becomes its one-hot vector, which the agents take as a Box.
        def popgym_observation(env: gym.Env) -> gym.Env:
            if isinstance(env.observation_space, gym.spaces.Box):
                return env
            return gym.wrappers.FlattenObservation(env)

        return [popgym_observation]
    if family == "minatar":
        # MinAtar's own episode ends are kept: no step limit is registered (max_episode_steps None); Freeway
        # ends after 2500 frames (reported as terminated, as MinAtar does), the other games end only when
        # the game is lost. Sticky actions (10%) and difficulty ramping are MinAtar's defaults.
        return [ChannelsFirstUint8]
    return []


VECTORIZATIONS = ("sync", "async", "vector", "envpool")

# How make_envs built each vector env it returned, for rebuilding it after a failure.
_FACTORIES: weakref.WeakKeyDictionary[gym.vector.VectorEnv, Callable[[], gym.vector.VectorEnv]] = (
    weakref.WeakKeyDictionary()
)


def env_factory_of(envs: gym.vector.VectorEnv) -> Callable[[], gym.vector.VectorEnv] | None:
    """A callable building a fresh copy of ``envs`` when :func:`make_envs` built it, else None."""
    try:
        return _FACTORIES.get(envs)
    except TypeError:  # not weak-referenceable
        return None


def _one_line(error: BaseException) -> str:
    """An exception's message on one line; gym.make's "... was raised from the environment creator for
    <id> with kwargs (...)" re-raise gives the creator's own message (the caller names the env and kwargs)."""
    cause = error.__cause__
    if type(cause) is type(error) and str(cause) and str(error).startswith(f"{cause} was raised from"):
        error = cause
    return " ".join(str(error).split()) or type(error).__name__


def _env_name(env_id: str, env_kwargs: dict[str, Any]) -> str:
    return f"environment {env_id!r}" + (f" with env_kwargs {env_kwargs}" if env_kwargs else "")


def _gym_make(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gym.make(env_id, **env_kwargs)``, its failure an EnvCreationError naming the env and the kwargs.
    A ``...NoVel-v<N>`` id is its base env with the velocities masked (:mod:`rl_agents.envs.masked`)."""
    try:
        base = base_of(env_id)
        if base is not None:
            return MaskVelocity(gym.make(base, **env_kwargs), base)
        return gym.make(env_id, **env_kwargs)
    except Exception as error:
        raise EnvCreationError(f"{_env_name(env_id, env_kwargs)}: {_one_line(error)}") from error


def _import_env_module(env_id: str) -> None:
    """Imports the module of a ``"module:EnvId"`` id, which registers EnvId (as ``gym.make`` does).

    Importing runs the module's code: only ids the caller trusts should name a module."""
    module, _, name = env_id.partition(":")
    before = set(gym.registry)
    try:
        importlib.import_module(module)
    except Exception as error:
        raise EnvCreationError(
            f"environment {env_id!r}: cannot import module {module!r} ({type(error).__name__}: {_one_line(error)})"
        ) from error
    if name not in gym.registry:

        def registered_by_module(spec: gym.envs.registration.EnvSpec) -> bool:
            entry = spec.entry_point
            origin = entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "")
            return origin == module or origin.startswith(f"{module}.")

        ids = sorted(key for key, spec in gym.registry.items() if key not in before or registered_by_module(spec))
        raise EnvCreationError(
            f"environment {env_id!r}: module {module!r} was imported but registers no {name!r}; "
            + (f"it registers: {', '.join(ids)}" if ids else "it registers no environment")
        )


def _make_one(
    env_id: str, wrappers: list[Callable[[gym.Env], gym.Env]], env_kwargs: dict[str, Any], index: int
) -> gym.Env:
    _register_family(_env_family(env_id))  # a spawned async worker has not run make_envs's registration
    env = _gym_make(env_id, env_kwargs)  # (a "module:EnvId" id: an async worker imports the module itself)
    for wrapper in wrappers:
        env = wrapper(env)
    return IndexedEnv(env, index)


def _make_batched(env_id: str, num_envs: int, family: str, env_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """The env's own batched implementation (its ``vector_entry_point``, e.g. gymnasium's CartPole)."""
    spec = gym.registry.get(env_id.split(":", 1)[-1])
    if spec is None or spec.vector_entry_point is None or family_wrappers(env_id):
        raise EnvCreationError(
            f"{env_id} has no batched implementation (vector_entry_point): use vectorization 'sync' or 'async'"
        )
    try:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
    except Exception as error:
        raise EnvCreationError(f"{_env_name(env_id, env_kwargs)}: {_one_line(error)}") from error


def _make_async(env_id: str, env_fns: list[Callable[[], gym.Env]], env_kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """An AsyncVectorEnv. It makes the first env in this process (so its failure is raised here, an
    EnvCreationError from :func:`_make_one`); a worker that fails to make its env dies, which the
    AsyncVectorEnv sees as a closed pipe."""
    try:
        return gym.vector.AsyncVectorEnv(env_fns)
    except (EOFError, ConnectionError) as error:
        raise EnvCreationError(
            f"{_env_name(env_id, env_kwargs)}: a worker process failed to create it "
            f"({type(error).__name__}; its traceback is on stderr)"
        ) from error


def make_envs(
    env_id: str,
    num_envs: int,
    vectorization: str = "sync",
    observation_keys: Sequence[str] | None = None,
    **env_kwargs: object,
) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies of ``env_id``; raises EnvCreationError for unknown ids.

    ``vectorization``: ``"sync"`` or ``"async"`` step separate envs (with the family's wrappers, each
    wrapped in :class:`IndexedEnv`); ``"vector"`` uses the env's own batched implementation where it
    has one (gymnasium's CartPole steps all copies in one numpy call, about ten times faster);
    ``"envpool"`` steps MuJoCo and Atari envs in EnvPool's C++ threads (optional dependency, see
    :mod:`rl_agents.envs.envpool`).
    :func:`env_factory_of` gives a callable that builds a fresh copy of it.

    ``env_id`` may name a module to import first, Gymnasium's ``"module:EnvId"`` (the module registers
    ``EnvId`` on import; async workers import it themselves). Importing a module runs its code: make_envs
    imports only the module its caller names, and whether that name is trusted is the caller's decision.
    ``env_kwargs`` go to every env's constructor; a failing constructor raises an EnvCreationError naming
    the env and the kwargs. ``observation_keys`` keeps those keys of a Dict observation (one key: its
    observation alone); MiniGrid's default is ``image`` and ``direction``."""
    if vectorization not in VECTORIZATIONS:
        raise EnvCreationError(
            f"vectorization must be one of {', '.join(map(repr, VECTORIZATIONS))}, got {vectorization!r}"
        )
    family = _env_family(env_id)
    _register_family(family)
    if ":" in env_id:
        if vectorization == "envpool":
            raise EnvCreationError(
                f"environment {env_id!r}: vectorization 'envpool' makes EnvPool's own environments only, "
                "not a module's: use vectorization 'sync', 'async' or 'vector'"
            )
        _import_env_module(env_id)
    elif env_id not in gym.registry and base_of(env_id) is None:
        close = [known for known in gym.registry if known.lower().startswith(env_id.split("-")[0].lower())][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise EnvCreationError(f"unknown environment {env_id!r}{hint}")
    if family == "atari":
        env_kwargs.setdefault("frameskip", 1)
    selection = {} if observation_keys is None else {"observation_keys": list(observation_keys)}
    if vectorization in ("vector", "envpool"):
        if observation_keys is not None:
            raise EnvCreationError(f"observation_keys needs vectorization 'sync' or 'async', not {vectorization!r}")
        if vectorization == "vector":
            envs = _make_batched(env_id, num_envs, family, env_kwargs)
        else:
            from rl_agents.envs.envpool import make_envpool_envs

            envs = make_envpool_envs(env_id, num_envs, family, env_kwargs)
        _FACTORIES[envs] = functools.partial(make_envs, env_id, num_envs, vectorization, **env_kwargs)
        return envs
    # As gym.make_vec(env_id, num_envs, vectorization_mode=..., wrappers=...), but each env knows its index.
    wrappers = family_wrappers(env_id, observation_keys)
    env_fns = [functools.partial(_make_one, env_id, wrappers, dict(env_kwargs), index) for index in range(num_envs)]
    if vectorization == "sync":
        envs = gym.vector.SyncVectorEnv(env_fns)
    else:
        envs = _make_async(env_id, env_fns, dict(env_kwargs))
    _FACTORIES[envs] = functools.partial(make_envs, env_id, num_envs, vectorization, **selection, **env_kwargs)
    return envs
