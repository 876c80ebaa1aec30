"""A trained policy on its own: ``Policy.load`` without environments, ``predict`` on one observation or a
batch, export to TorchScript and ONNX checked against ``predict``, and loading refused like any checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import A2C, DQN, PPO, RND, SAC, Agent, Policy, Trainer
from rl_agents.checkpointing import CheckpointError, read_checkpoint, save_checkpoint
from rl_agents.core.agent import ACTION, Batch
from rl_agents.envs import make_envs
from rl_agents.envs.spaces import space_from_record, space_record
from rl_agents.policy.export import ExportError, sample_observations

ROOT = Path(__file__).resolve().parent.parent

# name -> (env id, agents, trainer settings, steps): each trains for at least one update.
CASES: dict[str, tuple[str, Callable[[], list[Agent]], dict, int]] = {
    "ppo-discrete+rnd": ("CartPole-v1", lambda: [PPO(), RND()], {"num_steps": 32}, 128),
    "ppo-continuous-normalized": ("Pendulum-v1", lambda: [PPO()], {"num_steps": 32, "num_minibatches": 2}, 128),
    "ppo-cnn": ("MiniGrid-Empty-5x5-v0", lambda: [PPO()], {"num_steps": 16}, 64),
    "a2c": ("CartPole-v1", lambda: [A2C()], {}, 64),
    "dqn": ("CartPole-v1", lambda: [DQN()], {"learning_starts": 32, "batch_size": 16}, 128),
    "sac": ("Pendulum-v1", lambda: [SAC()], {"learning_starts": 32, "batch_size": 16}, 64),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Trainer, Path]]:
    """Each case trained briefly and saved; the trainer stays for comparisons."""
    runs = {}
    for name, (env_id, agents, settings, steps) in CASES.items():
        keys = ["image"] if env_id.startswith("MiniGrid") else None  # the view alone: a Box the exports take
        trainer = Trainer(make_envs(env_id, 2, observation_keys=keys), agents(), seed=3, **settings)
        trainer.train(steps, progress=False)
        runs[name] = (trainer, trainer.save(tmp_path_factory.mktemp(name)))
    return runs


def trainer_actions(trainer: Trainer, obs: np.ndarray) -> np.ndarray:
    """What the trainer's acting agent does deterministically, in evaluation mode, as env actions."""
    agent = trainer.acting
    agent.eval()
    try:
        with torch.inference_mode():
            return agent.env_action(agent.act(torch.as_tensor(obs), deterministic=True)).numpy()
    finally:
        agent.train()


def observations(policy: Policy, count: int) -> np.ndarray:
    return sample_observations(policy, count, seed=5).numpy()


# ---------------------------------------------------------------------------------------------- predict
@pytest.mark.parametrize("case", sorted(CASES))
def test_predict_equals_the_trainers_deterministic_act_on_one_observation_and_on_a_batch(case: str, saved) -> None:
    trainer, checkpoint = saved[case]
    policy = Policy.load(checkpoint)
    batch = observations(policy, 64)
    expected = trainer_actions(trainer, batch)
    actions, state = policy.predict(batch)
    assert state is None
    assert actions.dtype == trainer.envs.single_action_space.dtype and actions.shape == expected.shape
    np.testing.assert_array_equal(actions, expected)
    one, _ = policy.predict(batch[7])  # compared with a batch of one: matmul rounding depends on the batch size
    np.testing.assert_array_equal(one, trainer_actions(trainer, batch[7:8])[0])
    assert trainer.envs.single_action_space.contains(one)
    np.testing.assert_array_equal(policy.predict(torch.as_tensor(batch))[0], expected)  # torch in, numpy out
    assert policy.global_step == trainer.global_step and policy.checkpoint == checkpoint


def test_a_run_directory_loads_its_newest_checkpoint_and_from_trainer_copies_the_agent(saved) -> None:
    trainer, checkpoint = saved["ppo-continuous-normalized"]
    assert Policy.load(checkpoint.parent).checkpoint == checkpoint
    copy = Policy.from_trainer(trainer)
    batch = observations(copy, 16)
    np.testing.assert_array_equal(copy.predict(batch)[0], trainer_actions(trainer, batch))
    assert copy.agent is not trainer.acting and trainer.acting.training  # training goes on untouched
    assert float(copy.agent.obs_rms.count) == float(trainer.acting.obs_rms.count) > 1  # the normalizer came along


def test_stochastic_predict_samples_from_the_policys_seeded_generator(saved) -> None:
    _, checkpoint = saved["ppo-continuous-normalized"]
    batch = observations(Policy.load(checkpoint), 32)
    first = Policy.load(checkpoint, seed=1).predict(batch, deterministic=False)[0]
    again = Policy.load(checkpoint, seed=1).predict(batch, deterministic=False)[0]
    other = Policy.load(checkpoint, seed=2).predict(batch, deterministic=False)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_dqn_acts_with_the_epsilon_training_reached(saved) -> None:
    trainer, checkpoint = saved["dqn"]
    policy = Policy.load(checkpoint)
    trainer.acting.set_progress(trainer.global_step, trainer.total_steps)
    assert policy.agent.epsilon == pytest.approx(trainer.acting.epsilon) and policy.agent.epsilon < 1.0


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (np.zeros(5, np.float32), r"observation of shape \(5,\) is neither one observation \(4,\) nor a batch"),
        (np.zeros((2, 3, 4), np.float32), r"shape \(2, 3, 4\) is neither one observation"),
        (np.array([[0, 0, 0, 0], [0, np.nan, 0, 0]], np.float32), "observation 1 of the batch holds NaN or inf"),
        (np.array([0, np.inf, 0, 0]), "observation holds NaN or inf"),
    ],
)
def test_predict_refuses_observations_that_do_not_fit(obs: np.ndarray, message: str, saved) -> None:
    policy = Policy.load(saved["dqn"][1])
    with pytest.raises(ValueError, match=message):
        policy.predict(obs)


def test_predict_refuses_a_recurrent_state_for_an_agent_without_memory(saved) -> None:
    with pytest.raises(ValueError, match="agent 'dqn' keeps no recurrent state: pass state=None"):
        Policy.load(saved["dqn"][1]).predict(np.zeros(4, np.float32), state=np.zeros(3))


# ---------------------------------------------------------------------------------------------- without envs
def test_loading_needs_neither_the_environment_nor_its_registration(tmp_path: Path) -> None:
    """A run on an env registered only in the training process loads in a fresh one, which never
    imports the env's module."""
    gym.register("PolicyTestCorridor-v0", entry_point="tests.own_envs:CorridorEnv", kwargs={"length": 4})
    try:
        trainer = Trainer(make_envs("PolicyTestCorridor-v0", 2), [PPO()], seed=0, num_steps=16)
        trainer.train(32, progress=False)
        checkpoint = trainer.save(tmp_path)
        expected = trainer_actions(trainer, np.arange(5, dtype=np.float32)[:, None])
    finally:
        gym.registry.pop("PolicyTestCorridor-v0")
    script = (
        "import sys, json, numpy as np, gymnasium as gym; from rl_agents import Policy\n"
        f"policy = Policy.load({str(checkpoint)!r})\n"
        "obs = np.arange(5, dtype=np.float32)[:, None]\n"
        "print(json.dumps({'actions': policy.predict(obs)[0].tolist(), 'registered': 'PolicyTestCorridor-v0' in "
        "gym.registry, 'imported': 'tests.own_envs' in sys.modules}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"actions": expected.tolist(), "registered": False, "imported": False}


def test_an_older_checkpoint_without_recorded_spaces_is_rebuilt_with_its_environments(saved, tmp_path: Path) -> None:
    trainer, checkpoint = saved["a2c"]
    _, tree = read_checkpoint(checkpoint)
    for key in ("spaces", "streams", "acting"):
        del tree["run"][key]
    older = save_checkpoint(tree, tmp_path, name="older")
    policy = Policy.load(older)
    batch = observations(policy, 16)
    np.testing.assert_array_equal(policy.predict(batch)[0], trainer_actions(trainer, batch))
    assert policy.checkpoint == older and policy.global_step == trainer.global_step


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Box(-1.0, 2.0, (3, 2), np.float32),
        gym.spaces.Box(np.array([-1.0, -np.inf]), np.array([1.0, np.inf]), dtype=np.float64),
        gym.spaces.Box(0, 255, (84, 84, 4), np.uint8),
        gym.spaces.Discrete(5, start=-2),
        gym.spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [0, 0]]),
        gym.spaces.MultiBinary([2, 3]),
        gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 3), np.uint8), "goal": gym.spaces.Discrete(4)}),
        gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Box(-1, 1, (2,))]),
    ],
)
def test_spaces_survive_their_json_record(space: gym.Space) -> None:
    record = json.loads(json.dumps(space_record(space), allow_nan=True))
    assert space_from_record(record, "here") == space
    if isinstance(space, gym.spaces.Box) and space.dtype == np.uint8:
        assert record["low"] == 0 and record["high"] == 255  # uniform bounds are one number


# ---------------------------------------------------------------------------------------------- refused
def _resaved(checkpoint: Path, tmp_path: Path, change: Callable[[dict], None]) -> Path:
    """The checkpoint with ``change`` applied to its state tree, written as a consistent checkpoint."""
    _, tree = read_checkpoint(checkpoint)
    change(tree)
    return save_checkpoint(tree, tmp_path, name="changed")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda tree: tree["run"]["spaces"]["observation"].update(dtype="object"),
            "run.spaces.observation: dtype must be one of",
        ),
        (
            lambda tree: tree["run"]["spaces"]["observation"].update(shape=[100_000, 100_000]),
            r"run.spaces.observation: shape \[100000, 100000\] has more than 100,000,000 elements",
        ),
        (lambda tree: tree["run"]["spaces"]["action"].update(n=-1), "run.spaces.action: Discrete needs an integer n"),
        (lambda tree: tree["run"]["spaces"].update(action={"type": "Pickle"}), "unknown space type 'Pickle'"),
        (lambda tree: tree["run"].update(acting="ghost"), "run.acting names agent 'ghost'"),
        (lambda tree: tree["run"].update(streams=[{"name": 3}]), r"run.streams\[0\]: key 'name' has the wrong type"),
        (
            lambda tree: tree["run"]["spaces"]["action"].update(n=3),
            r"agent 'dqn': tensor '[\w.]+' has shape \[2, 64\] in the checkpoint, \[3, 64\] here",
        ),
        (
            lambda tree: tree["run"]["composition"][0].update(import_path="os:system"),
            "agent class 'os:system' is neither built in nor a registered entry point",
        ),
    ],
)
def test_a_hostile_or_inconsistent_checkpoint_is_refused_by_name(change, message: str, saved, tmp_path: Path) -> None:
    changed = _resaved(saved["dqn"][1], tmp_path, change)
    with pytest.raises(CheckpointError, match=message):
        Policy.load(changed)


def test_a_damaged_checkpoint_is_refused_like_any_checkpoint(saved, tmp_path: Path) -> None:
    _, checkpoint = saved["dqn"]
    damaged = tmp_path / checkpoint.name
    damaged.mkdir()
    for file in checkpoint.iterdir():
        (damaged / file.name).write_bytes(file.read_bytes())
    (damaged / "state.json").write_text("garbage")
    with pytest.raises(CheckpointError, match="state.json: not valid JSON"):
        Policy.load(damaged)
    tensors = damaged / "tensors.safetensors"
    (damaged / "state.json").write_bytes((checkpoint / "state.json").read_bytes())
    flipped = bytearray(tensors.read_bytes())
    flipped[-1] ^= 1
    tensors.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="tensors.safetensors"):
        Policy.load(damaged)


# ---------------------------------------------------------------------------------------------- export
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("case", ["ppo-discrete+rnd", "ppo-continuous-normalized", "ppo-cnn", "dqn", "sac"])
def test_export_round_trip_acts_as_predict_on_1000_random_observations(case: str, fmt: str, saved, tmp_path) -> None:
    policy = Policy.load(saved[case][1])
    path = tmp_path / f"policy.{fmt}"
    result = policy.export(path, fmt)
    assert result.observations_checked == 1000 and path.is_file()
    # Checked again here, independently of export's own check, on other observations.
    batch = observations(policy, 1000)
    expected = policy.predict(batch)[0]
    if fmt == "torchscript":
        actual = torch.jit.load(str(path))(torch.as_tensor(batch)).numpy()
    else:
        import onnxruntime

        actual = onnxruntime.InferenceSession(str(path)).run(["action"], {"obs": batch})[0]
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(actual, expected)
        assert result.max_difference == 0.0
    else:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5)
        assert result.max_difference <= 1e-5


class ValueBranchingAgent(Agent):
    """Acts with Python control flow on its input's values: tracing captures one branch only."""

    acts = True

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.scale = torch.nn.Parameter(torch.ones(1))  # something to train: a Trainer needs it

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        if float(obs.sum()) > 0:  # the value decides: a graph records whichever branch the example took
            return {ACTION: torch.ones(obs.shape[0], dtype=torch.long)}
        return {ACTION: torch.zeros(obs.shape[0], dtype=torch.long)}


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("torchscript", r"the torchscript export of agent 'value_branching_agent' \(\w+\) acts differently"),
        ("onnx", r"agent 'value_branching_agent' \(ValueBranchingAgent\) cannot be exported to onnx"),
    ],
)
def test_an_agent_whose_act_cannot_be_captured_is_refused_by_name(fmt: str, message: str, tmp_path: Path) -> None:
    trainer = Trainer(make_envs("CartPole-v1", 2), [ValueBranchingAgent(lr=1e-3)], seed=0)
    policy = Policy.from_trainer(trainer)
    out = tmp_path / "policy.bin"
    with pytest.raises(ExportError, match=message):
        policy.export(out, fmt)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written is left


def test_an_acting_agent_named_by_import_path_needs_trust_or_its_class(tmp_path: Path) -> None:
    trainer = Trainer(make_envs("CartPole-v1", 2), [ValueBranchingAgent(lr=1e-3)], seed=0)
    checkpoint = trainer.save(tmp_path)
    with pytest.raises(CheckpointError, match="test_policy:ValueBranchingAgent' is neither built in nor"):
        Policy.load(checkpoint)
    for policy in (
        Policy.load(checkpoint, agent_classes=[ValueBranchingAgent]),
        Policy.load(checkpoint, trust_code=True),
    ):
        assert type(policy.agent).__name__ == "ValueBranchingAgent"
        assert policy.predict(np.ones(4, np.float32))[0] == 1 and policy.predict(-np.ones(4, np.float32))[0] == 0
