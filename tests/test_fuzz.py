"""Bad input everywhere: property-based tests over configs and command lines.

Promise: every input either works or is refused with one clear line; never a traceback, never a hang.

* Config dicts (valid keys, real agent options, wrong types, unknown keys, extreme numbers, garbage):
  ``config_from_dict`` returns a RunConfig or raises ConfigError, nothing else; ``make_trainer`` on a
  config that validated either works or raises one of the command line's user errors.
* Command lines for every subcommand (valid flags with random or invalid values, unknown flags, missing
  values, random tokens, missing paths, bad YAML files, garbage ``--set``): ``rl_agents.cli.main`` run
  in-process returns 0, or exits with status 2 and exactly one non-empty line on stderr (besides the
  progress lines of a training that started), never prints a traceback and ends within a time limit.
* A few generated command lines also run through the real entry point (``python -m rl_agents.cli``),
  which must behave exactly like the in-process call.

Generation is derandomized (reproducible in CI). A hard per-example time limit (SIGALRM) turns a hang
into a failure; hypothesis' own deadline is off because it only judges examples that do finish, and the
shared CI cores make wall-clock deadlines flaky. Generated numbers that reach a training are capped (a
request for a billion steps is a long run, not a bug); extreme numbers go to settings that are refused
or cost nothing to build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import typing
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from rl_agents.agents import AGENTS
from rl_agents.cli.main import _is_user_error, main
from rl_agents.config import (
    ConfigError,
    RunConfig,
    config_from_dict,
    config_to_dict,
    trainer_setting_types,
)
from rl_agents.config.schema import MAX_SEED
from rl_agents.training import make_trainer

EXAMPLE_TIME_LIMIT = 60.0  # seconds per example: the slowest legitimate one takes about 3 s (more on a loaded machine)

FUZZ = settings(
    deadline=None,  # replaced by the hard EXAMPLE_TIME_LIMIT, which also catches examples that never finish
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
        HealthCheck.large_base_example,
    ],
)

# RL_AGENTS_FUZZ_DEEP=N: N times the examples, from random seeds (a longer hunt for new bugs).
DEEP = int(os.environ.get("RL_AGENTS_FUZZ_DEEP", "0") or 0)


def fuzz(max_examples: int) -> settings:
    return settings(FUZZ, max_examples=max_examples * max(DEEP, 1), derandomize=not DEEP)


# ============================================================================ time limit
class ExampleTimeout(BaseException):
    """Raised by SIGALRM. A BaseException, so that the command line's ``except Exception`` cannot hide it."""


@contextlib.contextmanager
def time_limit(seconds: float = EXAMPLE_TIME_LIMIT) -> typing.Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise ExampleTimeout(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def note_event(name: str) -> None:
    """Counts shown by pytest --hypothesis-show-statistics (outside hypothesis: nothing)."""
    if currently_in_test_context():
        event(name)


def one_line(text: str) -> bool:
    return bool(text.strip()) and len(text.splitlines()) == 1


# ============================================================================ value strategies
def mostly(usual: st.SearchStrategy, unusual: st.SearchStrategy) -> st.SearchStrategy:
    """``usual`` about three times in four."""
    return st.one_of(usual, usual, usual, unusual)


# Text that a real command line or YAML file can hold: no NUL, no lone surrogates.
TEXT_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
text = st.text(TEXT_CHARS, max_size=10)
# Path components: no separators or dots, so nothing escapes the example's temporary directory.
name_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/."), min_size=1, max_size=10)

HUGE_INT = 10**5000  # beyond Python's int <-> str conversion limit
EXTREME_INTS = [0, -1, -(2**63), 2**31, 2**63, 2**64 + 1, 10**30]
# (hypothesis prints sampled_from's elements, which an int this long has no text for: drawn by a map)
HUGE = st.sampled_from([1, -1]).map(lambda sign: sign * HUGE_INT)
HUGE_POSITIVE = st.just(1).map(lambda one: HUGE_INT)
extreme_ints = st.sampled_from(EXTREME_INTS) | HUGE
EXTREME_FLOATS = [math.nan, math.inf, -math.inf, -0.0, -1.0, 1e308, -1e308, 5e-324, 1e30]
EXTREME_TEXT = ["", " ", "abc", "1e6", "1e400", "nan", "-inf", "0x10", "[1, 2]", "None", "\n", "ppo", "[/]"]

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    extreme_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(EXTREME_FLOATS),
    text,
    st.sampled_from(EXTREME_TEXT),
    st.just(5000).map(lambda digits: "1" + "0" * digits),  # a number too long for int()
)
garbage = st.recursive(
    scalar,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.one_of(text, st.integers(), st.none()), children, max_size=3)
    ),
    max_leaves=6,
)

# Options that size networks: no huge values, which would try to allocate terabytes (or, worse, only gigabytes).
SIZE_OPTIONS = {"hidden", "feature_dim", "head_hidden"}


def typed_values(annotation: typing.Any, name: str) -> st.SearchStrategy:
    """Values of an option's declared type: ordinary ones mostly, extremes of the same type sometimes."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(typed_values(option, name) for option in typing.get_args(annotation)))
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        if name in SIZE_OPTIONS:
            return st.integers(-2, 32)
        return mostly(st.integers(1, 64), st.integers() | extreme_ints)
    if annotation is float:
        return mostly(
            st.floats(0.0, 1.0), st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(EXTREME_FLOATS)
        )
    if annotation is str:
        return mostly(st.sampled_from(["first", "second"]), text)
    if origin is tuple:
        return st.lists(mostly(st.integers(1, 16), st.integers(-2, 0)), max_size=3)
    return garbage


def agent_options(cls: type) -> dict[str, typing.Any]:
    """An agent's configurable options (keyword-only constructor arguments) with their types."""
    init = cls.__init__
    hints = typing.get_type_hints(init)
    return {
        p.name: hints.get(p.name, typing.Any)
        for p in inspect.signature(init).parameters.values()
        if p.kind == p.KEYWORD_ONLY
    }


OPTIONS = {name: agent_options(cls) for name, cls in AGENTS.items()}
TRAINER_TYPES = trainer_setting_types()
# Trainer settings drawn from ranges that keep building (and any training) cheap; extremes are added
# where building stays cheap: a huge rollout length or replay ring is allocated, a huge count is not.
TRAINER_VALUES: dict[str, st.SearchStrategy] = {
    "num_envs": mostly(st.integers(1, 3), st.integers(-3, 0) | st.sampled_from([10**9, 2**63]) | HUGE_POSITIVE),
    "vectorization": st.sampled_from(["sync"] * 8 + ["async", "", "SYNC", "threads"]),
    "log_interval": st.integers(-3, 1000),
    "num_steps": mostly(st.integers(1, 64), st.integers(-3, 0) | st.sampled_from([2**62]) | HUGE_POSITIVE),
    "num_epochs": mostly(st.integers(1, 4), st.integers(-3, 0) | st.sampled_from([10**9]) | HUGE_POSITIVE),
    "num_minibatches": mostly(st.integers(1, 8), st.integers(-3, 0) | st.sampled_from([10**9]) | HUGE_POSITIVE),
    "buffer_size": mostly(st.integers(1, 10**6), st.integers(-3, 0) | st.sampled_from([2**62]) | HUGE_POSITIVE),
    "batch_size": mostly(st.integers(1, 256), st.integers(-3, 0) | st.sampled_from([2**62]) | HUGE_POSITIVE),
    "learning_starts": st.integers(-3, 1000) | (st.sampled_from([10**9]) | HUGE_POSITIVE),
    "train_frequency": mostly(st.integers(1, 64), st.integers(-3, 0) | st.sampled_from([2**62]) | HUGE_POSITIVE),
    "gradient_steps": mostly(st.integers(1, 8), st.integers(-3, 0) | st.sampled_from([10**9]) | HUGE_POSITIVE),
    "target_update_interval": st.integers(-3, 100) | (st.sampled_from([10**9]) | HUGE_POSITIVE),
    "n_step": mostly(st.integers(1, 5), st.integers(-3, 0) | st.sampled_from([10**9]) | HUGE_POSITIVE),
}

GOOD_AGENTS = [
    "ppo",
    "a2c",
    "dqn",
    "sac",
    "ppo+rnd",
    "ppo+icm",
    "a2c+rnd",
    "a2c+icm",
    "dqn+rnd",
    "dqn+icm",
    "sac+rnd",
    "sac+icm",
    "rnd+ppo",
    " ppo + rnd ",
]
BAD_AGENTS = [
    "",
    "+",
    "ppo+",
    "++",
    "rnd",
    "icm",
    "rnd+icm",
    "ppo+sac",
    "ppo+ppo",
    "ppo+rnd+icm",
    "PPO",
    "rdn",
    "ppo+rdn",
    "ppo rnd",
    "ppo,rnd",
]
CHEAP_ENVS = ["CartPole-v1", "Pendulum-v1"]
ODD_ENVS = [
    "NoSuchEnv-v0",
    "",
    "cartpole",
    "CartPole",
    "CartPole-v99",
    " CartPole-v1",
    "CartPole-v1\n",
    "ALE/NoSuchGame-v5",
    "MiniGrid-NoSuch-v0",
    "LunarLander-v3",
    "CarRacing-v3",
    "Blackjack-v1",
    "FrozenLake-v1",
    "Taxi-v3",
    "MountainCarContinuous-v0",
    "Acrobot-v1",
    "[/]",
    "CartPole-v1[/]",
]
DEVICES = ["cpu", "auto"]
ODD_DEVICES = [
    "cuda",
    "cuda:0",
    "cuda:99",
    "cuda:-1",
    "CPU",
    "gpu",
    "meta",
    "mps",
    "",
    "cpu:0",
    "cpu:1",
    "xla",
    "cpu, cuda",
]


def agent_names_in(spec: typing.Any) -> list[str]:
    return [name.strip() for name in spec.split("+") if name.strip() in AGENTS] if isinstance(spec, str) else []


@st.composite
def option_sections(draw: st.DrawFn, agent: str) -> dict[str, typing.Any]:
    options = OPTIONS[agent]
    names = draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True))
    section = {name: draw(mostly(typed_values(options[name], name), garbage)) for name in names}
    if draw(st.integers(0, 9)) == 0:  # an option name the agent does not have
        section[draw(st.sampled_from(["lr_", "ent_coeff", "nosuch", "", "hidden_sizes"]) | text)] = draw(scalar)
    return section


@st.composite
def trainer_sections(draw: st.DrawFn) -> dict[str, typing.Any]:
    names = draw(st.lists(st.sampled_from(sorted(TRAINER_TYPES)), max_size=3, unique=True))
    section = {}
    for name in names:
        usual = TRAINER_VALUES[name] if name in TRAINER_VALUES else typed_values(TRAINER_TYPES[name], name)
        section[name] = draw(mostly(usual, garbage))
    if draw(st.integers(0, 9)) == 0:
        section[draw(st.sampled_from(["num_env", "lr", "nosuch"]) | text)] = draw(scalar)
    return section


ON_POLICY_FIELDS = ["num_steps", "num_epochs", "num_minibatches", "max_grad_norm", "anneal_lr", "sequence_minibatches"]
OFF_POLICY_FIELDS = [
    "buffer_size",
    "batch_size",
    "learning_starts",
    "train_frequency",
    "gradient_steps",
    "target_update_interval",
    "tau",
    "n_step",
    "max_grad_norm",
]
SHARED_FIELDS = ["num_envs", "log_interval"]
USUAL_TRAINER_VALUES: dict[str, st.SearchStrategy] = {
    "num_envs": st.integers(1, 3),
    "log_interval": st.integers(0, 1000),
    "num_steps": st.integers(1, 64),
    "num_epochs": st.integers(1, 4),
    "num_minibatches": st.integers(1, 8),
    "max_grad_norm": st.none() | st.floats(0.01, 10),
    "anneal_lr": st.booleans(),
    "sequence_minibatches": st.booleans(),
    "buffer_size": st.integers(1, 10**6),
    "batch_size": st.integers(1, 256),
    "learning_starts": st.integers(0, 1000),
    "train_frequency": st.integers(1, 64),
    "gradient_steps": st.integers(1, 8),
    "target_update_interval": st.integers(1, 100),
    "tau": st.floats(0.001, 1.0),
    "n_step": st.integers(1, 5),
}


def usual_option_values(annotation: typing.Any, name: str) -> st.SearchStrategy:
    """Values an option could well be given: type and range right, though not always its constraints."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return st.one_of(*(usual_option_values(option, name) for option in typing.get_args(annotation)))
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(1, 32)
    if annotation is float:
        return st.floats(0.0, 1.0)
    if annotation is str:
        return st.sampled_from(["first", "second"])
    if typing.get_origin(annotation) is tuple:
        return st.lists(st.integers(1, 16), max_size=2)
    return st.none()


@st.composite
def usual_configs(draw: st.DrawFn) -> dict[str, typing.Any]:
    """A config of the kind people write: known keys, values of the right type in the usual ranges."""
    agents = draw(st.sampled_from(GOOD_AGENTS))
    names = agent_names_in(agents)
    learner = next(name for name in names if AGENTS[name].acts)
    env = {"dqn": "CartPole-v1", "sac": "Pendulum-v1"}.get(learner) or draw(st.sampled_from(CHEAP_ENVS))
    raw: dict[str, typing.Any] = {"env": env, "agents": agents}
    if draw(st.booleans()):
        raw["steps"] = draw(st.integers(1, 10**6))
    if draw(st.booleans()):
        raw["seed"] = draw(st.integers(0, MAX_SEED))
    fields = SHARED_FIELDS + (OFF_POLICY_FIELDS if learner in ("dqn", "sac") else ON_POLICY_FIELDS)
    chosen = draw(st.lists(st.sampled_from(fields), max_size=3, unique=True))
    if chosen or draw(st.booleans()):
        raw["trainer"] = {name: draw(USUAL_TRAINER_VALUES[name]) for name in chosen}
    for agent in names:
        options = OPTIONS[agent]
        chosen = draw(st.lists(st.sampled_from(sorted(options)), max_size=3, unique=True))
        if chosen:
            raw[agent] = {name: draw(usual_option_values(options[name], name)) for name in chosen}
    return raw


@st.composite
def mixed_configs(draw: st.DrawFn) -> dict[typing.Any, typing.Any]:
    """Known keys with good and bad values, unknown keys, wrong types, extremes, nested garbage."""
    raw: dict[typing.Any, typing.Any] = {}
    if draw(st.booleans()):
        raw["env"] = draw(mostly(st.sampled_from(CHEAP_ENVS), st.sampled_from(ODD_ENVS) | garbage))
    if draw(st.booleans()):
        raw["agents"] = draw(mostly(st.sampled_from(GOOD_AGENTS), st.sampled_from(BAD_AGENTS) | garbage))
    if draw(st.booleans()):
        raw["steps"] = draw(mostly(st.integers(1, 10**6), scalar))
    if draw(st.booleans()):
        raw["seed"] = draw(mostly(st.integers(0, 2**31), scalar))
    if draw(st.booleans()):
        raw["device"] = draw(mostly(st.sampled_from(DEVICES), st.sampled_from(ODD_DEVICES) | garbage))
    if draw(st.booleans()):
        raw["trainer"] = draw(mostly(trainer_sections(), garbage))
    for agent in agent_names_in(raw.get("agents", RunConfig.agents)):
        if draw(st.booleans()):
            raw[agent] = draw(mostly(option_sections(agent), garbage))
    if draw(st.integers(0, 7)) == 0:  # a section of an agent that is not in the composition, or an unknown key
        raw[draw(st.sampled_from([*AGENTS, "agent", "env_id", "Trainer", "steps "]) | scalar)] = draw(garbage)
    return raw


raw_configs = st.one_of(usual_configs(), mixed_configs())


# ============================================================================ configs
def check_config(raw: typing.Any) -> bool:
    """The property; returns whether the config was built into a trainer."""
    try:
        config = config_from_dict(raw)
    except ConfigError as error:
        assert one_line(str(error)), repr(str(error))
        note_event("refused by config_from_dict")
        return False
    assert isinstance(config, RunConfig)
    # What a run directory stores of a config that validated validates again, unchanged.
    stored = yaml.safe_load(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    assert config_from_dict(stored) == config
    try:
        trainer = make_trainer(config)
    except Exception as error:
        assert _is_user_error(error), f"{type(error).__name__}: {error}"
        assert one_line(str(error)), repr(str(error))
        note_event(f"refused by make_trainer: {type(error).__name__}")
        return False
    note_event("built a trainer")
    trainer.envs.close()
    return True


# Config dicts that once raised something other than ConfigError or a user error, or hung, or were
# accepted although they cannot work (NaN, inf or negative learning rates, zero-width layers, negative
# seeds or log intervals). All are refused now, except those marked as valid.
VALID = "valid"
KNOWN_CONFIGS = [
    {"trainer": {"num_envs": 0}},
    {"trainer": {"num_envs": 10**9}},
    {"trainer": {"num_envs": HUGE_INT}},
    {"trainer": {"num_steps": 0}},
    {"trainer": {"num_steps": 2**62}},
    {"trainer": {"log_interval": -1}},
    {"trainer": {"vectorization": "threads"}},
    {"agents": "sac", "env": "Pendulum-v1", "trainer": {"tau": 0.0}},
    {"agents": "dqn", "trainer": {"batch_size": 0}},
    {"seed": -1},
    {"seed": 2**70},
    ({"seed": MAX_SEED, "agents": "ppo+rnd"}, VALID),
    {"steps": -HUGE_INT},
    {"steps": 1.5, "seed": HUGE_INT},
    {"agents": HUGE_INT},
    {"agents": ["ppo"]},
    {HUGE_INT: 1},
    {"device": "gpu"},
    {"device": "meta"},
    {"device": "cuda:-1"},
    {"ppo": {"lr": math.nan}},
    {"ppo": {"lr": -1.0}},
    {"ppo": {"lr": math.inf}},
    {"ppo": {"gamma": 10**400}},
    {"ppo": {"hidden": [-1]}},
    {"ppo": {"hidden": [0]}},
    {"agents": "ppo+rnd", "rnd": {"update_proportion": 0.0}},
    {"agents": "dqn", "dqn": {"final_epsilon": 2.0}},
    {"agents": "a2c+icm", "icm": {"beta": -1.0}},
    {"agents": "sac", "env": "Pendulum-v1", "sac": {"alpha": 0.0}},
]


def _short(value: typing.Any) -> str:
    try:
        return repr(value)[:60]
    except ValueError:  # holds an int too long to print
        return "<huge int>"


# Sizes the agents refuse themselves (ValueError, which make_trainer turns into a ConfigError naming the agent).
UNCHECKED_CONFIGS = [
    {"agents": "ppo+rnd", "rnd": {"feature_dim": -1}},
    {"agents": "ppo+icm", "icm": {"feature_dim": -1}},
    {"agents": "ppo+icm", "icm": {"head_hidden": -2}},
]


@pytest.mark.parametrize(
    "raw",
    [pytest.param(raw, id=_short(raw)) for raw in KNOWN_CONFIGS]
    + [pytest.param(raw, id=_short(raw)) for raw in UNCHECKED_CONFIGS],
)
def test_known_odd_configs(raw: dict | tuple) -> None:
    raw, expected = raw if isinstance(raw, tuple) else (raw, "refused")
    with time_limit():
        built = check_config(raw)
    assert built == (expected == VALID)


@fuzz(300)
@given(raw_configs)
def test_config_dicts_validate_or_raise_config_error(raw: dict) -> None:
    with time_limit():
        check_config(raw)


@fuzz(60)
@given(garbage)
def test_anything_is_refused_or_accepted_by_config_from_dict(raw: typing.Any) -> None:
    with time_limit():
        check_config(raw)


# ============================================================================ command lines
PROGRESS_LINE = re.compile(r"^step \d+/\d+ ")


@dataclasses.dataclass
class Outcome:
    argv: list[str]
    code: typing.Any
    stdout: str
    stderr: str
    timed_out: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"argv={self.argv!r}\nexit status: {self.code!r}\n"
            f"stdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-3000:]}"
        )

    def category(self) -> str:
        """For hypothesis' statistics (pytest --hypothesis-show-statistics): what kind of outcome."""
        if self.code == 0:
            return "success"
        line = (self.error_lines() or [""])[-1]
        kind = "error" if line.startswith("rl-agents: ") else "usage error"
        message = re.sub(r"\S*/\S*", "PATH", line.split("error: ", 1)[-1])
        return f"{kind}: " + " ".join(re.sub(r"['\"(].*", "", message).split()[:4])

    def error_lines(self) -> list[str]:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        # progress lines, and the run's settings line (printed once it starts), are not errors
        return [line for line in lines if not PROGRESS_LINE.match(line) and not line.startswith("settings: ")]


@contextlib.contextmanager
def wide_console() -> typing.Iterator[None]:
    """Rich wraps at 80 columns off a terminal; messages must not be judged by that wrapping."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "1000"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = before


def run_in_process(argv: list[str], cwd: Path) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    outcome = Outcome(argv, None, "", "")
    start = time.perf_counter()
    with contextlib.chdir(cwd), wide_console(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            with time_limit():
                outcome.code = main(argv)
        except SystemExit as exit:  # argparse: --help (0) or a usage error (2)
            outcome.code = 0 if exit.code is None else exit.code
        except ExampleTimeout:
            outcome.timed_out = True
        finally:
            torch.set_num_threads(1)  # ``train --threads`` sets it for the whole process
    outcome.seconds = time.perf_counter() - start
    outcome.stdout, outcome.stderr = out.getvalue(), err.getvalue()
    return outcome


def run_subprocess(argv: list[str], cwd: Path) -> Outcome:
    env = {**os.environ, "COLUMNS": "1000", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start = time.perf_counter()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "rl_agents.cli", *argv],
            check=False,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIME_LIMIT + 20,  # + interpreter start-up
        )
    except subprocess.TimeoutExpired as expired:
        return Outcome(argv, None, str(expired.stdout or ""), str(expired.stderr or ""), timed_out=True)
    return Outcome(argv, result.returncode, result.stdout, result.stderr, seconds=time.perf_counter() - start)


def check_outcome(outcome: Outcome) -> None:
    context = outcome.describe()
    assert not outcome.timed_out, "a hang:\n" + context
    assert "Traceback" not in outcome.stdout + outcome.stderr, context
    assert outcome.code in (0, 2), context
    if outcome.code != 0:
        lines = outcome.error_lines()
        assert len(lines) == 1, f"expected exactly one error line, got {len(lines)}:\n" + context
        assert lines[0].startswith("rl-agents"), context


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run (``run``) and broken run directories, shared by the command-line examples."""
    root = tmp_path_factory.mktemp("fuzz")
    outcome = run_in_process(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--agents",
            "ppo",
            "--steps",
            "128",
            "--num-envs",
            "2",
            "--set",
            "trainer.num_steps=32",
            "--set",
            "ppo.hidden=[16]",
            "--quiet",
            "--out",
            str(root / "run"),
        ],
        root,
    )
    assert outcome.code == 0, outcome.describe()
    # bad_config: a real run whose config.yaml is broken; bad_metrics: metrics that are not numbers
    shutil.copytree(root / "run", root / "bad_config")
    (root / "bad_config" / "config.yaml").write_text("env: [\n")
    (root / "bad_metrics").mkdir()
    (root / "bad_metrics" / "metrics.csv").write_text("global_step,episode/return_mean\nabc,def\n1,\n")
    (root / "list_config").mkdir()
    (root / "list_config" / "config.yaml").write_text("- 1\n- 2\n")
    shutil.copy(root / "run" / "metrics.csv", root / "list_config" / "metrics.csv")
    (root / "a_file.txt").write_text("not a directory\n")
    return root


@dataclasses.dataclass
class Invocation:
    """An argv template: {tmp} is the example's fresh directory, {ws} the shared workspace, {copy} a fresh
    copy of the trained run; ``files`` are written into {tmp} first (bytes or text)."""

    argv: list[str]
    files: dict[str, bytes | str] = dataclasses.field(default_factory=dict)

    def materialize(self, workspace: Path) -> tuple[list[str], Path]:
        tmp = Path(tempfile.mkdtemp(dir=workspace, prefix="ex"))
        for name, content in self.files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        if any("{copy}" in token for token in self.argv):
            shutil.copytree(workspace / "run", tmp / "copy")
        fill = {"{tmp}": str(tmp), "{ws}": str(workspace), "{copy}": str(tmp / "copy")}
        argv = []
        for token in self.argv:
            for key, value in fill.items():
                token = token.replace(key, value)
            argv.append(token)
        return argv, tmp


# ---------------------------------------------------------------------------- pieces of command lines
def flag(name: str, values: st.SearchStrategy) -> st.SearchStrategy:
    """``[--name, value]`` or ``[--name=value]``."""
    return st.tuples(values, st.integers(0, 4)).map(
        lambda pair: [f"{name}={pair[0]}"] if pair[1] == 0 else [name, pair[0]]
    )


def numbers_as_text(low: int, high: int) -> st.SearchStrategy:
    return st.integers(low, high).map(str)


# (usual values, odd values) per flag
STEPS = (
    numbers_as_text(1, 256) | st.sampled_from(["1e2", "2.56e2", "64.0", " 32 ", "1_00"]),
    st.sampled_from(["0", "-5", "abc", "1.5", "nan", "inf", "-inf", "", "1e400", "0x10", "1e-3"]),
)
SEEDS = (
    numbers_as_text(0, MAX_SEED),
    st.sampled_from(["-1", "-3", str(MAX_SEED + 1), str(2**64), str(10**30), "x", "1.0", ""]),
)
NUM_ENVS = (numbers_as_text(1, 3), st.sampled_from(["0", "-3", "x", "1e3", "1000000000", str(2**63)]))
# (more than one thread is valid, but on a loaded 2-core CI machine torch's spinning threads make a
# 2-second example take 20: a performance setting, left out)
THREADS = (st.just("1"), st.sampled_from(["0", "-1", "x", "1025", "1000000", str(2**40), "1.5"]))
CHECKPOINTS = (st.sampled_from(["1", "3", "1000", "0", "-2"]), st.sampled_from(["x", "", "1.5"]))
AGENT_FLAG = (st.sampled_from(GOOD_AGENTS), st.sampled_from(BAD_AGENTS) | text)
TRAIN_ENVS = (
    st.sampled_from(["CartPole-v1", "CartPole-v1", "Pendulum-v1", "Acrobot-v1"]),
    st.sampled_from(ODD_ENVS) | text,
)
ANY_ENVS = (
    st.sampled_from(
        [
            "CartPole-v1",
            "Pendulum-v1",
            "MountainCar-v0",
            "MiniGrid-DoorKey-8x8-v0",
            "BreakoutNoFrameskip-v4",
            "InvertedPendulum-v5",
            "ALE/Pong-v5",
        ]
    ),
    st.sampled_from(ODD_ENVS) | text,
)
DEVICE_FLAG = (st.sampled_from(["cpu", "auto"]), st.sampled_from(["cuda", "gpu", "", "CPU"]))
# --set settings that every composition has, with usual values
USUAL_OVERRIDES = st.one_of(
    st.integers(0, 2**31).map(lambda seed: f"seed={seed}"),
    st.integers(1, 3).map(lambda n: f"trainer.num_envs={n}"),
    st.integers(0, 500).map(lambda n: f"trainer.log_interval={n}"),
    st.floats(0.1, 5).map(lambda x: f"trainer.max_grad_norm={x}"),
    st.sampled_from(["steps=64", "device=cpu", "trainer.vectorization=sync"]),
)


def pick(values: tuple[st.SearchStrategy, st.SearchStrategy], clean: bool) -> st.SearchStrategy:
    usual, odd = values
    return usual if clean else mostly(usual, odd)


# --set: keys that exist and keys that do not; values kept small where they would lengthen a training.
OVERRIDE_KEYS = [
    "ppo.lr",
    "ppo.ent_coef",
    "ppo.hidden",
    "ppo.gamma",
    "ppo.target_kl",
    "ppo.normalize_obs",
    "ppo.name",
    "rnd.int_coef",
    "rnd.update_proportion",
    "rnd.feature_dim",
    "rnd.hidden",
    "icm.beta",
    "icm.head_hidden",
    "dqn.final_epsilon",
    "dqn.exploration_steps",
    "dqn.double",
    "sac.alpha",
    "sac.hidden",
    "sac.critic_lr",
    "a2c.lr",
    "trainer.num_envs",
    "trainer.num_steps",
    "trainer.num_epochs",
    "trainer.num_minibatches",
    "trainer.max_grad_norm",
    "trainer.anneal_lr",
    "trainer.vectorization",
    "trainer.tau",
    "trainer.buffer_size",
    "trainer.batch_size",
    "trainer.learning_starts",
    "trainer.train_frequency",
    "trainer.gradient_steps",
    "trainer.n_step",
    "trainer.target_update_interval",
    "trainer.log_interval",
    "seed",
    "steps",
    "env",
    "agents",
    "device",
    "trainer",
    "ppo",
    "rnd",
    "a.b.c",
    "",
    ".",
    "ppo.",
    ".lr",
    "nosuch",
    "ppo.nosuch",
    "trainer.nosuch",
    " ppo.lr ",
    "ppo..lr",
]
SMALL_MAX = {
    "trainer.num_envs": 3,
    "trainer.num_epochs": 4,
    "trainer.gradient_steps": 4,
    "trainer.num_minibatches": 8,
    "trainer.n_step": 5,
    "steps": 256,
}
SAFE_HUGE_KEYS = [
    "seed",
    "trainer.num_envs",
    "trainer.learning_starts",
    "dqn.exploration_steps",
    "ppo.lr",
    "ppo.ent_coef",
    "trainer.tau",
    "rnd.update_proportion",
    "sac.alpha",
]
YAMLISH = [
    "",
    "abc",
    "null",
    "~",
    "true",
    "no",
    "nan",
    ".nan",
    ".inf",
    "-.inf",
    "[1, 2]",
    "[]",
    "[-1]",
    "[0]",
    "{a: 1}",
    "{}",
    "[",
    "{",
    "'",
    '"',
    ":",
    "- a",
    "2020-13-45",
    "2020-01-01",
    "=",
    "a=b",
    "!!binary aGk=",
    "!!python/object:os.system {}",
    "&a [*a]",
    "0x10",
    "0o7",
    "1_0",
    "0.5",
    "1e-3",
    "-0.0",
    "sync",
    "async",
    "CartPole-v1",
    "ppo+rnd",
    "cpu",
    "[" * 300 + "]" * 300,
]


@st.composite
def overrides(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return draw(
            st.sampled_from(
                [
                    "a.b.c=1",
                    "ppo.lr=abc",
                    "=",
                    "trainer.num_envs=-3",
                    "novalue",
                    "ppo.lr",
                    "==",
                    "ppo.lr==1",
                    ".=1",
                    "trainer=5",
                ]
            )
        )
    if choice == 1:  # (never a longer training)
        return draw(text.filter(lambda token: not token.strip().startswith(("steps", "trainer"))))
    if choice == 2:
        huge_key = draw(st.sampled_from(SAFE_HUGE_KEYS))
        huge_value = draw(
            st.sampled_from(["1e400", "-1e400", str(10**30), "1" + "0" * 5000, str(2**63), "1e9", "-1e9"])
        )
        return f"{huge_key}={huge_value}"
    key = draw(st.sampled_from(OVERRIDE_KEYS))
    value = draw(
        st.one_of(
            st.integers(-3, SMALL_MAX.get(key, 64)).map(str),
            st.floats(-2, 2).map(repr),
            st.sampled_from(YAMLISH),
        )
    )
    return f"{key}={value}"


@st.composite
def config_files(draw: st.DrawFn) -> tuple[str, dict[str, bytes | str]]:
    """A positional config argument and the files it needs."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(
            st.sampled_from(["{tmp}/missing.yaml", "{tmp}", "{ws}/a_file.txt", "{tmp}/sub/../missing.yaml", ""])
            | name_text
        ), {}
    if kind in (1, 2):  # a sensible config file (with a few wrong entries sometimes)
        content = {
            "env": draw(st.sampled_from(["CartPole-v1", "Pendulum-v1"])),
            "agents": draw(st.sampled_from(GOOD_AGENTS)),
            "steps": draw(st.integers(1, 256)),
            "trainer": {"num_envs": draw(st.integers(1, 2))},
        }
        if draw(st.booleans()):
            values = st.one_of(
                st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True), text
            )  # YAML can write
            content.update(
                draw(
                    st.dictionaries(
                        st.sampled_from(["seed", "device", "trainer", "ppo", "nosuch", "steps"]), values, max_size=2
                    )
                )
            )
        return "{tmp}/config.yaml", {"config.yaml": yaml.safe_dump(content)}
    broken = draw(
        st.one_of(
            st.sampled_from(
                [
                    "5",
                    "[1, 2]",
                    "- a\n- b\n",
                    "env: [\n",
                    "{",
                    "}",
                    "env: CartPole-v1\n\tsteps: 3\n",
                    "trainer: 5\n",
                    "trainer:\n",
                    "ppo: [1]\n",
                    "!!python/object:os.system {}\n",
                    "a: &a [*a]\n",
                    "steps: 2020-13-45\n",
                    "seed: 1" + "0" * 5000 + "\n",
                    "[" * 2000 + "]" * 2000,
                    "\x00",
                    "'",
                    "env: CartPole-v1\nenv: Pendulum-v1\n",
                    "? [a, b]\n: 1\n",
                    "%YAML 9.9\n---\na: 1\n",
                    "agents: ppo\nppo:\n  hidden: [-1]\n",
                    "agents: sac\n",
                    "steps: -1\n",
                    "device: cuda\n",
                    "trainer: {num_envs: 0}\n",
                ]
            ),
            text,
            st.binary(max_size=20),
        )
    )
    return "{tmp}/bad.yaml", {"bad.yaml": broken}


JUNK_TOKENS = st.one_of(
    st.sampled_from(["--foo", "-x", "--", "-", "--no-such-flag", "--debugger", "---", "--=", "--quiet=1"]),
    text.filter(lambda token: not token.startswith("-")),
)
# A flag without its value is put last, so that no later token can become its value.
MISSING_VALUE = st.sampled_from(
    [
        ["--steps"],
        ["--ste"],
        ["--set"],
        ["--out"],
        ["--agents"],
        ["--env"],
        ["--seed"],
        ["--episodes"],
        ["--metric"],
        ["--smooth"],
    ]
)


@st.composite
def train_invocations(draw: st.DrawFn) -> Invocation:
    clean = draw(st.booleans())  # half the time a command line that could well have been meant
    groups: list[list[str]] = [draw(flag("--steps", pick(STEPS, clean)))]
    out = draw(
        st.one_of(
            st.just("{tmp}/run"),
            st.just("{tmp}/run"),
            st.just("{tmp}/run"),
            name_text.map(lambda name: "{tmp}/" + name),
            st.sampled_from(
                ["{ws}/a_file.txt", "{ws}/a_file.txt/sub", "", "{ws}/run", "{tmp}/[/]", "{tmp}/:smile: [bold]x"]
            ),
        )
    )
    groups.append(["--out", out] if out else ["--out="])
    for name, values in (
        ("--agents", AGENT_FLAG),
        ("--env", TRAIN_ENVS),
        ("--seed", SEEDS),
        ("--device", DEVICE_FLAG),
        ("--num-envs", NUM_ENVS),
        ("--checkpoints", CHECKPOINTS),
        ("--threads", THREADS),
    ):
        if draw(st.booleans()):
            groups.append(draw(flag(name, pick(values, clean))))
    if draw(st.booleans()):
        groups.append(["--quiet"])
    groups += [["--set", value] for value in draw(st.lists(USUAL_OVERRIDES if clean else overrides(), max_size=3))]
    files: dict[str, bytes | str] = {}
    if draw(st.integers(0, 3)) == 0:
        token, files = draw(config_files())
        groups.append([token])
    if draw(st.integers(0, 9)) == 0:
        groups.append(
            [
                "--resume",
                draw(
                    st.sampled_from(["{copy}", "{copy}", "{tmp}/nosuch", "{tmp}", "{ws}/bad_config", "{ws}/a_file.txt"])
                ),
            ]
        )
    if not clean and draw(st.integers(0, 3)) == 0:
        groups += [[token] for token in draw(st.lists(JUNK_TOKENS, min_size=1, max_size=2))]
    argv = ["train"] + [token for group in draw(st.permutations(groups)) for token in group]
    if not clean and draw(st.integers(0, 9)) == 0:
        argv += draw(MISSING_VALUE)
    return Invocation(argv, files)


@st.composite
def describe_invocations(draw: st.DrawFn) -> Invocation:
    clean = draw(st.booleans())
    groups: list[list[str]] = []
    if draw(st.booleans()):
        groups.append(draw(flag("--agents", pick(AGENT_FLAG, clean))))
    if draw(st.booleans()):
        groups.append(draw(flag("--env", pick(ANY_ENVS, clean))))
    groups += [["--set", value] for value in draw(st.lists(USUAL_OVERRIDES if clean else overrides(), max_size=3))]
    if not clean and draw(st.booleans()):
        groups.append(
            [
                "--set",
                draw(
                    st.sampled_from(
                        ["trainer.num_steps", "trainer.buffer_size", "trainer.batch_size", "trainer.gradient_steps"]
                    )
                )
                + "="
                + draw(st.sampled_from([str(2**62), str(10**30), "1" + "0" * 5000])),
            ]
        )
    files: dict[str, bytes | str] = {}
    if draw(st.integers(0, 2)) == 0:
        token, files = draw(config_files())
        groups.append([token])
    if not clean and draw(st.integers(0, 3)) == 0:
        groups += [[token] for token in draw(st.lists(JUNK_TOKENS, min_size=1, max_size=2))]
    argv = ["describe"] + [token for group in draw(st.permutations(groups)) for token in group]
    if not clean and draw(st.integers(0, 9)) == 0:
        argv += draw(MISSING_VALUE)
    return Invocation(argv, files)


RUN_DIRS = (
    st.just("{ws}/run"),
    st.sampled_from(
        ["{tmp}/nosuch", "{tmp}", "{ws}/bad_config", "{ws}/bad_metrics", "{ws}/list_config", "{ws}/a_file.txt", ""]
    ),
)


@st.composite
def eval_invocations(draw: st.DrawFn) -> Invocation:
    clean = draw(st.booleans())
    groups: list[list[str]] = [[draw(pick(RUN_DIRS, clean))]]
    video = draw(st.integers(0, 5)) == 0
    episodes = (
        numbers_as_text(1, 2)
        if video
        else pick((numbers_as_text(1, 5), st.sampled_from(["0", "-1", "x", "1.5", ""])), clean)
    )
    if draw(st.booleans()) or video:
        groups.append(draw(flag("--episodes", episodes)))
    if video:
        usual, odd = (
            st.sampled_from(["{tmp}/v.gif", "{tmp}/sub/v.GIF"]),
            st.sampled_from(["{tmp}/v.txt", "{tmp}/v", "{ws}/a_file.txt/v.gif", "{tmp}/v.mp4"]),
        )
        groups.append(["--video", draw(pick((usual, odd), clean))])
    if draw(st.booleans()):
        groups.append(["--deterministic"])
    if draw(st.booleans()):
        seeds = (numbers_as_text(0, 2**40), st.sampled_from(["-1", str(2**64), str(10**30), "x", ""]))
        groups.append(draw(flag("--seed", pick(seeds, clean))))
    if not clean and draw(st.integers(0, 3)) == 0:
        groups += [[token] for token in draw(st.lists(JUNK_TOKENS, min_size=1, max_size=2))]
    argv = ["eval"] + [token for group in draw(st.permutations(groups)) for token in group]
    if not clean and draw(st.integers(0, 9)) == 0:
        argv += draw(MISSING_VALUE)
    return Invocation(argv)


@st.composite
def plot_invocations(draw: st.DrawFn) -> Invocation:
    clean = draw(st.booleans())
    groups: list[list[str]] = [
        [run] for run in draw(st.lists(pick(RUN_DIRS, clean), min_size=1 if clean else 0, max_size=3))
    ]
    if draw(st.booleans()):
        usual = st.sampled_from(
            ["{tmp}/c.png", "{tmp}/c.svg", "{tmp}/sub/c.png", "{tmp}/c.PNG", "{tmp}/c.pdf"]
        ) | name_text.map(lambda name: "{tmp}/" + name + ".png")
        odd = st.sampled_from(["{tmp}/c.xyz", "{tmp}/c", "{ws}/a_file.txt/c.png", "{tmp}", ""]) | name_text.map(
            lambda name: "{tmp}/" + name
        )
        groups.append(["--out", draw(pick((usual, odd), clean))])
    if draw(st.booleans()):
        metrics = (
            st.sampled_from(["episode/return_mean", "charts/learning_rate", "ppo/loss/policy", "nope"]),
            st.sampled_from(["global_step", ""]) | text,
        )
        groups.append(draw(flag("--metric", pick(metrics, clean))))
    if draw(st.booleans()):
        smooth = (st.sampled_from(["1", "5", "0", "-3", "1000000000"]), st.sampled_from(["x", "1.5", ""]))
        groups.append(draw(flag("--smooth", pick(smooth, clean))))
    if not clean and draw(st.integers(0, 3)) == 0:
        groups += [[token] for token in draw(st.lists(JUNK_TOKENS, min_size=1, max_size=2))]
    argv = ["plot"] + [token for group in draw(st.permutations(groups)) for token in group]
    if not clean and draw(st.integers(0, 9)) == 0:
        argv += draw(MISSING_VALUE)
    return Invocation(argv)


@st.composite
def other_invocations(draw: st.DrawFn) -> Invocation:
    """``list``, top-level flags and arbitrary token lists (never a training: no ``train`` token)."""
    head = draw(
        st.sampled_from(
            ["list", "list", "describe", "eval", "plot", "--help", "-h", "", "--version", "help", "LIST", "tr", "--"]
        )
        | text
    )
    junk = JUNK_TOKENS | st.sampled_from(
        ["--help", "-h", "list", "--env", "CartPole-v1", "eval", "{ws}/run", "plot", "--out"]
    )
    tokens = draw(st.lists(junk, max_size=4))
    argv = [head, *tokens] if draw(st.integers(0, 5)) else []
    return Invocation([token for token in argv if token != "train"])


def check_invocation(invocation: Invocation, workspace: Path) -> Outcome:
    argv, cwd = invocation.materialize(workspace)
    outcome = run_in_process(argv, cwd)
    check_outcome(outcome)
    note_event(outcome.category())
    return outcome


# ---------------------------------------------------------------------------- the properties
# Named command lines: the classic bad inputs, and every input that once ended in a traceback, an
# "internal error", a hang, several lines of error or a wrong exit status (expected: 2, or 0 where the
# input is odd but valid).
KNOWN_CASES = [
    (["train", "--steps", "64", "--set", "a.b.c=1"], 2),
    (["train", "--steps", "64", "--set", "ppo.lr=abc"], 2),
    (["train", "--steps", "64", "--set", "="], 2),
    (["train", "--steps", "64", "--set", "trainer.num_envs=-3"], 2),
    (["train", "--steps", "64", "--set", "trainer.num_envs=1000000000"], 2),
    (["train", "--steps", "64", "--set", "trainer.num_steps=0"], 2),
    (["train", "--steps", "64", "--set", "seed=-1"], 2),
    (["train", "--steps", "64", "--set", "device=gpu"], 2),
    (["train", "--steps", "64", "--set", "steps=2020-13-45"], 2),
    (["train", "--steps", "64", "--set", "ppo.lr=1e400"], 2),
    (["train", "--steps", "64", "--set", "ppo.lr=-1"], 2),
    (["train", "--steps", "64", "--set", "ppo.hidden=[-1]"], 2),
    (["train", "--steps", "64", "--agents", "dqn", "--set", "dqn.final_epsilon=2"], 2),
    (["train", "--steps", "64", "--threads", "1000000"], 2),
    (["train", "--steps", "64", "--out", "{ws}/a_file.txt"], 2),
    (["train", "--steps", "64", "--out", "{ws}/a_file.txt/sub"], 2),
    (["train", "--steps", "0"], 2),
    (["train", "--steps"], 2),
    (["train", "--no-such-flag"], 2),
    (["train", "{tmp}/list.yaml", "--steps", "64"], 2),
    (["train", "{tmp}/date.yaml", "--steps", "64"], 2),
    (["train", "{tmp}/binary.yaml", "--steps", "64"], 2),
    (
        [
            "train",
            "--steps",
            "64",
            "--num-envs",
            "1",
            "--set",
            "trainer.num_steps=64",
            "--quiet",
            "--out",
            "{tmp}/[/x] :smile:",
        ],
        0,
    ),
    (
        [
            "train",
            "--steps",
            "64",
            "--agents",
            "dqn",
            "--set",
            "trainer.buffer_size=4611686018427387904",
            "--set",
            "trainer.learning_starts=0",
            "--set",
            "trainer.train_frequency=8",
            "--quiet",
            "--out",
            "{tmp}/run",
        ],
        2,
    ),
    (["eval", "{ws}/run", "--seed", "-1"], 2),
    (["eval", "{ws}/run", "--episodes", "0"], 2),
    (["eval", "{ws}/bad_config", "--episodes", "1"], 0),  # eval reads the checkpoint, never config.yaml
    (["eval", "{ws}/run", "--episodes", "1", "--video", "{ws}/a_file.txt/v.gif"], 2),
    (["plot", "{ws}/run", "--out", "{tmp}/c.xyz"], 2),
    (["plot", "{ws}/bad_metrics"], 2),
    (["plot", "{ws}/list_config"], 2),
    (["plot", "{ws}/run\nsecond line"], 2),
    (["plot"], 2),
    (["describe", "--set", "trainer.num_steps=0"], 2),
    (["describe", "--agents", "ppo", "--set", "ppo.name='[/x]'"], 2),  # an agent's name is its section's
    (["nosuch"], 2),
    ([], 2),
]
KNOWN_FILES: dict[str, bytes | str] = {
    "list.yaml": "- not\n- a mapping\n",
    "date.yaml": "steps: 2020-13-45\n",
    "binary.yaml": b"\xff\xfe\x00",
}


# rnd.chunk_size (and icm's) below 1 passes construction and fails in the first update (RuntimeError
# from torch.split: an "internal error", exit status 1).
UNCHECKED_CASES = [
    ["train", "--steps", "64", "--agents", "ppo+rnd", "--set", "rnd.chunk_size=0", "--quiet", "--out", "{tmp}/run"],
    ["train", "--steps", "64", "--agents", "ppo+icm", "--set", "icm.chunk_size=-1", "--quiet", "--out", "{tmp}/run"],
]


@pytest.mark.parametrize(
    ("argv", "status"),
    [pytest.param(argv, status, id=" ".join(argv)[:70] or "(empty)") for argv, status in KNOWN_CASES]
    + [pytest.param(argv, 2, id=" ".join(argv)[:70]) for argv in UNCHECKED_CASES],
)
def test_known_odd_command_lines(argv: list[str], status: int, workspace: Path) -> None:
    outcome = check_invocation(Invocation(argv, KNOWN_FILES), workspace)
    assert outcome.code == status, outcome.describe()


@fuzz(60)
@given(invocation=train_invocations())
def test_train_command_lines(invocation: Invocation, workspace: Path) -> None:
    check_invocation(invocation, workspace)


@fuzz(40)
@given(invocation=describe_invocations())
def test_describe_command_lines(invocation: Invocation, workspace: Path) -> None:
    check_invocation(invocation, workspace)


@fuzz(30)
@given(invocation=eval_invocations())
def test_eval_command_lines(invocation: Invocation, workspace: Path) -> None:
    check_invocation(invocation, workspace)


@fuzz(30)
@given(invocation=plot_invocations())
def test_plot_command_lines(invocation: Invocation, workspace: Path) -> None:
    check_invocation(invocation, workspace)


@fuzz(60)
@given(invocation=other_invocations())
def test_other_command_lines(invocation: Invocation, workspace: Path) -> None:
    check_invocation(invocation, workspace)


QUICK_INVOCATIONS = st.one_of(
    # a training that always ends in an error (a subprocess run costs seconds of start-up alone)
    train_invocations().map(lambda invocation: Invocation([*invocation.argv, "--set", "nosuch=1"], invocation.files)),
    describe_invocations(),
    eval_invocations(),
    plot_invocations(),
    other_invocations(),
)


@fuzz(4)
@given(invocation=QUICK_INVOCATIONS)
def test_the_real_entry_point_behaves_like_main(invocation: Invocation, workspace: Path) -> None:
    argv, tmp = invocation.materialize(workspace)
    real = run_subprocess(argv, tmp)
    check_outcome(real)
    argv, tmp_again = invocation.materialize(workspace)  # a fresh directory: the same starting state
    in_process = run_in_process(argv, tmp_again)
    assert real.code == in_process.code, real.describe() + "\n--- in process:\n" + in_process.describe()
    if real.code != 0:
        got = [line.replace(str(tmp), "{tmp}") for line in real.error_lines()]
        expected = [line.replace(str(tmp_again), "{tmp}") for line in in_process.error_lines()]
        assert got == expected
