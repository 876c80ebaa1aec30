"""Checkpoints: exact round trips, exact resumption, atomic writes, and refusal of anything unsafe or mismatched.

What "exact" means here: a checkpoint holds the agents, the optimizer, the trainer's random generator
and its counters, and (where they can be captured) the environments' state. The tests here drive the
public loop themselves and give the resumed trainer a ``copy.deepcopy`` of the original vector env
taken at the save, plus the last observation; tests/test_reliability.py checks that ``train()`` after
``load_state`` continues from the restored environments exactly.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import rl_agents.checkpointing.format as checkpoint_module
from rl_agents import PPO, RND, Trainer
from rl_agents.checkpointing import CheckpointError, latest_checkpoint
from rl_agents.checkpointing.format import document_sha256
from rl_agents.config import config_from_dict
from rl_agents.training import make_trainer
from tests.helpers import counting_envs

torch.set_num_threads(1)

SCHEDULE = {"num_steps": 16, "num_epochs": 2, "num_minibatches": 2}


def cartpole(num_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def run_updates(trainer: Trainer, envs: gym.vector.VectorEnv, obs: np.ndarray, updates: int) -> np.ndarray:
    """The public environment loop until ``updates`` more updates have run; returns the last observation."""
    target = trainer.num_updates + updates
    while trainer.num_updates < target:
        action = trainer.act(obs)
        obs, reward, terminated, truncated, info = envs.step(action)
        trainer.observe(obs, reward, terminated, truncated, info)
    return obs


def trained(agents: list, updates: int = 2, seed: int = 0) -> tuple[Trainer, gym.vector.VectorEnv, np.ndarray]:
    envs = cartpole()
    trainer = Trainer(envs, agents, seed=seed, total_steps=10 * 16 * 2, **SCHEDULE)
    obs, _ = envs.reset(seed=seed)
    obs = run_updates(trainer, envs, obs, updates)
    return trainer, envs, obs


def assert_same_module_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def assert_same_optimizer_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for index in sa["state"]:
        assert sa["state"][index].keys() == sb["state"][index].keys()
        for key, value in sa["state"][index].items():
            other = sb["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert value.dtype == other.dtype and torch.equal(value, other), (index, key)
            else:
                assert value == other, (index, key)


def assert_same_trainer_state(a: Trainer, b: Trainer) -> None:
    for agent_a, agent_b in zip(sorted(a.agents, key=lambda x: x.name), sorted(b.agents, key=lambda x: x.name)):
        assert agent_a.name == agent_b.name
        assert_same_module_state(agent_a, agent_b)
    assert_same_optimizer_state(a.optimizer, b.optimizer)
    assert torch.equal(a.generator.get_state(), b.generator.get_state())
    assert (a.global_step, a.num_updates, a.collector.step_in_rollout, a.metrics_log.log_from_episode) == (
        b.global_step,
        b.num_updates,
        b.collector.step_in_rollout,
        b.metrics_log.log_from_episode,
    )
    assert a.learner.base_lrs == b.learner.base_lrs and a.total_steps == b.total_steps and a.seed == b.seed
    assert a.episodes == b.episodes
    np.testing.assert_array_equal(a.collector.episodes.running_return, b.collector.episodes.running_return)
    np.testing.assert_array_equal(a.collector.episodes.running_length, b.collector.episodes.running_length)
    np.testing.assert_array_equal(a.collector.reset_pending, b.collector.reset_pending)
    assert (
        a.collector.episodes.running_return.dtype == b.collector.episodes.running_return.dtype
        and a.collector.episodes.running_length.dtype == b.collector.episodes.running_length.dtype
    )


def write_state_json(checkpoint: Path, document: dict) -> None:
    """Write an edited state.json with a matching checksum, so that what is checked after the
    checksum (types, counts, names) is what refuses it."""
    document.pop("state_sha256", None)
    document["state_sha256"] = document_sha256(document)
    (checkpoint / "state.json").write_text(json.dumps(document))


def rewrite_state(checkpoint: Path, **changes) -> None:
    state = json.loads((checkpoint / "state.json").read_text())
    state.update(changes)
    write_state_json(checkpoint, state)


def reseal(checkpoint: Path) -> None:
    """Make state.json's size and SHA-256 match the tensors file, so the safetensors reader itself must object."""
    data = (checkpoint / "tensors.safetensors").read_bytes()
    rewrite_state(checkpoint, tensors_sha256=hashlib.sha256(data).hexdigest(), tensors_bytes=len(data))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Trainer, Path]:
    trainer, _, _ = trained([PPO(normalize_obs=True, normalize_reward=True)])
    return trainer, trainer.save(tmp_path_factory.mktemp("run") / "checkpoints")


def fresh_copy(saved: tuple[Trainer, Path], tmp_path: Path) -> Path:
    _, path = saved
    target = tmp_path / "checkpoints" / path.name
    target.parent.mkdir()
    shutil.copytree(path, target)
    return target


# ---------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    "make_agents",
    [lambda: [PPO(normalize_obs=True, normalize_reward=True)], lambda: [PPO(), RND()]],
    ids=["ppo-normalized", "ppo+rnd"],
)
def test_round_trip_restores_parameters_buffers_optimizer_generator_and_counters(tmp_path: Path, make_agents) -> None:
    original, _, _ = trained(make_agents(), updates=3)
    assert original.optimizer.param_groups[0]["lr"] < original.learner.base_lrs[0]  # annealed: the saved lr matters
    assert (
        len(original.episodes.returns) > 0 and original.collector.episodes.running_length.any()
    )  # mid-episode accumulators
    path = original.save(tmp_path / "checkpoints")
    assert path == tmp_path / "checkpoints" / "step_000000096"

    restored = Trainer(cartpole(), make_agents(), seed=123, **SCHEDULE)  # other seed: other initial weights
    acting = restored.acting
    assert not torch.equal(acting.actor[0].weight, original.acting.actor[0].weight)
    buffers = [key for agent in restored.agents for key in agent.state_dict() if "rms" in key or "scaler" in key]
    assert buffers, "the composition under test has normalizer buffers"
    assert restored.load_state(tmp_path / "checkpoints") == path  # a checkpoints dir resolves to its latest
    assert_same_trainer_state(original, restored)
    assert restored.optimizer.param_groups[0]["lr"] == original.optimizer.param_groups[0]["lr"]
    assert isinstance(restored.optimizer.param_groups[0]["betas"], tuple)


def test_continuing_after_load_matches_continuing_the_original_exactly(tmp_path: Path) -> None:
    original, envs, obs = trained([PPO(normalize_obs=True, normalize_reward=True)], updates=2)
    path = original.save(tmp_path)
    envs_at_save, obs_at_save = copy.deepcopy(envs), obs.copy()  # the env state a checkpoint does not hold

    resumed = Trainer(cartpole(), [PPO(normalize_obs=True, normalize_reward=True)], seed=7, **SCHEDULE)
    resumed.load_state(path)
    run_updates(original, envs, obs, 1)
    run_updates(resumed, envs_at_save, obs_at_save, 1)
    assert_same_trainer_state(original, resumed)
    assert resumed.num_updates == 3 and resumed.global_step == 3 * 16 * 2


def test_pending_autoreset_and_learning_rates_are_restored(tmp_path: Path) -> None:
    # Env 0's episode ends exactly at the rollout boundary, so the next step (its reset) must be invalid.
    def make(lr: float | None = None) -> tuple[Trainer, gym.vector.VectorEnv]:
        envs = counting_envs(2, [4, 3], terminate=False, mode=AutoresetMode.NEXT_STEP)
        return Trainer(envs, [PPO(lr=lr)], num_steps=4, num_epochs=1, num_minibatches=1, total_steps=64), envs

    original, envs = make()
    obs, _ = envs.reset(seed=0)
    obs = run_updates(original, envs, obs, 1)
    assert original.collector.reset_pending.tolist() == [True, False]
    path = original.save(tmp_path)
    envs_at_save, obs_at_save = copy.deepcopy(envs), obs.copy()

    resumed, _ = make(lr=1e-3)  # the checkpoint's learning rates (base and annealed) win
    resumed.load_state(path)
    assert resumed.learner.base_lrs == original.learner.base_lrs != [1e-3]
    run_updates(original, envs, obs, 1)
    run_updates(resumed, envs_at_save, obs_at_save, 1)
    assert resumed.collector.storage.batch()["valid"][0].tolist() == [False, True]
    assert_same_trainer_state(original, resumed)


def test_trainer_load_rebuilds_from_the_run_config_and_continues_exactly(tmp_path: Path) -> None:
    raw = {
        "env": "CartPole-v1",
        "agents": "ppo",
        "seed": 3,
        "steps": 2000,
        "trainer": {"num_envs": 2, **SCHEDULE},
        "ppo": {"normalize_obs": True, "hidden": [32, 32]},
    }
    original = make_trainer(config_from_dict(raw))
    envs = original.envs
    obs, _ = envs.reset(seed=3)
    obs = run_updates(original, envs, obs, 2)
    path = original.save(tmp_path / "checkpoints")
    envs_at_save, obs_at_save = copy.deepcopy(envs), obs.copy()

    resumed = Trainer.load(tmp_path, envs_at_save)  # a run directory: its checkpoints/ latest
    assert resumed.run_config == original.run_config
    assert resumed.acting.hidden == (32, 32)
    assert_same_trainer_state(original, resumed)
    run_updates(original, envs, obs, 1)
    run_updates(resumed, envs_at_save, obs_at_save, 1)
    assert_same_trainer_state(original, resumed)
    assert latest_checkpoint(tmp_path) == path


def test_train_after_load_continues_the_step_and_update_counters(tmp_path: Path) -> None:
    original, _, _ = trained([PPO()], updates=2)
    path = original.save(tmp_path)
    resumed = Trainer(cartpole(), [PPO()], **SCHEDULE)
    resumed.load_state(path)
    resumed.train(4 * 16 * 2, progress=False)
    assert resumed.global_step == 4 * 16 * 2 and resumed.num_updates == 4
    assert len(resumed.episodes.returns) >= len(original.episodes.returns)
    assert resumed.episodes.returns[: len(original.episodes.returns)] == original.episodes.returns


def test_optimizer_kernel_choice_is_the_loading_trainers_own(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    state = json.loads((path / "state.json").read_text())
    for group in state["state"]["learner"]["optimizer"][
        "param_groups"
    ]:  # as if saved where only the foreach kernel exists
        group["hyperparameters"].update(fused=None, foreach=True)
    write_state_json(path, state)
    trainer = Trainer(cartpole(), [PPO(normalize_obs=True, normalize_reward=True)], **SCHEDULE)
    kernels = [(g["fused"], g["foreach"]) for g in trainer.optimizer.param_groups]
    trainer.load_state(path)
    assert [(g["fused"], g["foreach"]) for g in trainer.optimizer.param_groups] == kernels
    assert trainer.optimizer.param_groups[0]["lr"] == saved[0].optimizer.param_groups[0]["lr"]


def test_trainer_load_without_a_run_config_rebuilds_the_python_built_trainer(saved, tmp_path: Path) -> None:
    resumed = Trainer.load(fresh_copy(saved, tmp_path), cartpole())  # from the recorded agents and settings
    assert_same_trainer_state(saved[0], resumed)
    assert resumed.schedule == saved[0].schedule and resumed.seed == saved[0].seed


def test_save_stores_an_explicit_config(tmp_path: Path) -> None:
    trainer, _, _ = trained([PPO()], updates=1)
    config = {"env": "CartPole-v1", "agents": "ppo", "trainer": {"num_envs": 2, **SCHEDULE}}
    path = trainer.save(tmp_path, config=config)
    assert json.loads((path / "state.json").read_text())["state"]["run"]["config"] == config
    resumed = Trainer.load(path, cartpole())
    assert_same_trainer_state(trainer, resumed)


# ---------------------------------------------------------------------------------------------- boundaries, atomicity
def test_saving_mid_rollout_is_refused(tmp_path: Path) -> None:
    envs = cartpole()
    trainer = Trainer(envs, [PPO()], **SCHEDULE)
    obs, _ = envs.reset(seed=0)
    action = trainer.act(obs)
    with pytest.raises(RuntimeError, match="update boundary"):
        trainer.save(tmp_path)  # act() without observe()
    trainer.observe(*envs.step(action))
    with pytest.raises(RuntimeError, match=r"update boundary: the trainer is at step 1 of 16"):
        trainer.save(tmp_path)
    assert not any(tmp_path.iterdir())


def test_latest_pointer_and_fallback_to_highest_complete_checkpoint(tmp_path: Path) -> None:
    trainer, envs, obs = trained([PPO()], updates=1)
    run = tmp_path / "run"
    first = trainer.save(run / "checkpoints")
    run_updates(trainer, envs, obs, 1)
    second = trainer.save(run / "checkpoints")
    assert (run / "checkpoints" / "latest").read_text().strip() == second.name
    assert latest_checkpoint(run) == second and latest_checkpoint(run / "checkpoints") == second
    assert latest_checkpoint(second) == second
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest",
        first.name,
        second.name,
    ]  # no temp leftovers

    # A pointer to a checkpoint not renamed into place yet (a crash mid-save) is skipped.
    (run / "checkpoints" / "latest").write_text("step_999999999\n")
    assert latest_checkpoint(run) == second
    (run / "checkpoints" / "latest").unlink()
    assert latest_checkpoint(run) == second
    # A newer checkpoint directory that is damaged is the newest all the same: readers report it
    # instead of passing over it to an older one (atomic saves never leave one half-written).
    (run / "checkpoints" / "step_999999999").mkdir()
    (run / "checkpoints" / "step_999999999" / "tensors.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(run) == run / "checkpoints" / "step_999999999"
    shutil.rmtree(run / "checkpoints" / "step_999999999")
    # Saving again at the same step replaces the checkpoint.
    assert trainer.save(run / "checkpoints") == second and latest_checkpoint(run) == second
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert latest_checkpoint(tmp_path / "empty") is None


def test_a_failed_write_leaves_no_partial_checkpoint(tmp_path: Path, monkeypatch) -> None:
    trainer, _, _ = trained([PPO()], updates=1)
    first = trainer.save(tmp_path)

    def broken_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    trainer.global_step += 1  # pretend a later step
    monkeypatch.setattr(checkpoint_module, "save_file", broken_save_file)
    with pytest.raises(CheckpointError, match=r"step_000000033: cannot be written: disk full$"):
        trainer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, "latest"])
    assert latest_checkpoint(tmp_path) == first


# ---------------------------------------------------------------------------------------------- corrupt files
def assert_refused(path: Path, match: str, trainer: Trainer | None = None) -> CheckpointError:
    trainer = trainer or Trainer(cartpole(), [PPO(normalize_obs=True, normalize_reward=True)], seed=9, **SCHEDULE)
    before = copy.deepcopy(trainer.acting.state_dict())
    step_before = trainer.global_step
    with pytest.raises(CheckpointError, match=match) as info:
        trainer.load_state(path)
    assert "\n" not in str(info.value)
    for key, value in trainer.acting.state_dict().items():  # nothing was changed
        assert torch.equal(value, before[key]), key
    assert trainer.global_step == step_before
    return info.value


@pytest.mark.parametrize("resealed", [False, True], ids=["as-is", "hash-updated"])
def test_truncated_tensors_file_is_refused(saved, tmp_path: Path, resealed: bool) -> None:
    path = fresh_copy(saved, tmp_path)
    data = (path / "tensors.safetensors").read_bytes()
    (path / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    if resealed:
        reseal(path)
    assert_refused(path, r"tensors\.safetensors: .*(truncated|not a readable safetensors)")


def test_corrupt_tensor_bytes_are_detected(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    data = bytearray((path / "tensors.safetensors").read_bytes())
    data[-10] ^= 0xFF  # inside the tensor data: still parses, but the values are wrong
    (path / "tensors.safetensors").write_bytes(bytes(data))
    assert_refused(path, r"tensors\.safetensors: SHA-256 does not match")


def test_corrupt_safetensors_header_is_refused(saved, tmp_path: Path) -> None:
    path = fresh_copy(saved, tmp_path)
    data = bytearray((path / "tensors.safetensors").read_bytes())
    data[8:16] = b"\x00garbage"  # the JSON header
    (path / "tensors.safetensors").write_bytes(bytes(data))
    reseal(path)
    assert_refused(path, r"tensors\.safetensors: not a readable safetensors file")


@pytest.mark.parametrize(
    "content, match",
    [
        (b"{not json", r"state\.json: not valid JSON"),
        (None, r"state\.json: not valid JSON"),  # truncated
        (b"[1, 2]", r"state\.json: expected a JSON object"),
        (b'{"format": "something else"}', r"state\.json: not an rl_agents checkpoint"),
        (b"\x80\x04\x95pickle", r"state\.json: not valid JSON"),
    ],
    ids=["garbage", "truncated", "array", "foreign", "binary"],
)
def test_bad_state_json_is_refused(saved, tmp_path: Path, content: bytes | None, match: str) -> None:
    path = fresh_copy(saved, tmp_path)
    if content is None:
        content = (path / "state.json").read_bytes()[:200]
    (path / "state.json").write_bytes(content)
    assert_refused(path, match)


@pytest.mark.parametrize(
    "where, value, match",
    [
        (("state", "collector", "global_step"), "96", r"state\.json: collector: key 'global_step' has the wrong type"),
        (("state", "learner", "num_updates"), -1, r"state\.json: learner: key 'num_updates' is negative"),
        (
            ("state", "collector", "reset_pending"),
            [False],
            r"state\.json: collector: reset_pending must hold one bool per env \(2\)",
        ),
        (("state", "run", "num_envs"), 3, r"state\.json: saved with 3 envs, but this trainer has 2"),
        (
            ("state", "agents", "ppo", "actor.0.weight"),
            [1.0],
            r"tensors\.safetensors: holds tensor 'agents/ppo/actor\.0\.weight' that state\.json does not name",
        ),
        (("version",), 99, r"state\.json: format version 99 is not supported"),
        (("version",), 1, r"state\.json: a checkpoint of the earlier format \(version 1"),
    ],
    ids=["wrong-type", "negative", "per-env", "num-envs", "tensor-replaced", "version", "earlier-format"],
)
def test_inconsistent_state_json_is_refused(saved, tmp_path: Path, where: tuple, value, match: str) -> None:
    path = fresh_copy(saved, tmp_path)
    state = json.loads((path / "state.json").read_text())
    node = state
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    write_state_json(path, state)
    error = assert_refused(path, match)
    assert "\n" not in str(error)


@pytest.mark.parametrize("missing", ["state.json", "tensors.safetensors"])
def test_missing_file_is_refused(saved, tmp_path: Path, missing: str) -> None:
    path = fresh_copy(saved, tmp_path)
    (path / missing).unlink()
    assert_refused(path, rf"{missing.replace('.', r'[.]')}: missing")


# ---------------------------------------------------------------------------------------------- pickles
class Payload:
    """Unpickling this creates ``marker`` (a stand-in for arbitrary code execution)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_bytes(kind: str, marker: Path, scratch: Path) -> bytes:
    if kind == "pickle":
        return pickle.dumps({"weights": Payload(marker)})
    torch.save({"weights": Payload(marker), "tensor": torch.zeros(3)}, scratch)
    return scratch.read_bytes()


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
@pytest.mark.parametrize("resealed", [False, True], ids=["as-is", "hash-updated"])
def test_a_pickle_posing_as_tensors_file_is_refused_without_being_unpickled(
    saved, tmp_path: Path, kind: str, resealed: bool
) -> None:
    # The payload is live: unpickling a copy of it does create its marker.
    control = tmp_path / "control-marker"
    live = pickle_bytes(kind, control, tmp_path / "control.pt")
    if kind == "pickle":
        pickle.loads(live)
    else:
        torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.exists()

    marker = tmp_path / "marker"
    path = fresh_copy(saved, tmp_path)
    (path / "tensors.safetensors").write_bytes(pickle_bytes(kind, marker, tmp_path / "payload.pt"))
    if resealed:
        reseal(path)
    assert_refused(path, r"tensors\.safetensors: ")
    with pytest.raises(CheckpointError):
        Trainer.load(path, cartpole())
    assert not marker.exists()


@pytest.mark.parametrize(
    "module", sorted(Path(checkpoint_module.__file__).parent.glob("*.py")), ids=lambda path: path.name
)
def test_the_checkpoint_modules_have_no_unpickling_code_path(module: Path) -> None:
    tree = ast.parse(module.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    } | {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}
    calls = {ast.unparse(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    assert not {
        call for call in calls if call.endswith(("torch.load", "np.load", "numpy.load", "pickle.load", "pickle.loads"))
    }
    if module.name == "format.py":
        assert "load_file" in calls and "json.loads" in calls


# ---------------------------------------------------------------------------------------------- composition
@pytest.mark.parametrize(
    "make_agents, match",
    [
        (
            lambda: [PPO(name="actor", normalize_obs=True, normalize_reward=True)],
            r"checkpoint has agent 'ppo', which this trainer lacks",
        ),
        (
            lambda: [PPO(normalize_obs=True, normalize_reward=True), RND()],
            r"trainer agent 'rnd' is not in the checkpoint",
        ),
        (
            lambda: [PPO(normalize_obs=False, normalize_reward=True)],
            r"agent 'ppo': checkpoint has tensor 'agents/ppo/obs_rms\.\w+'",
        ),
        (
            lambda: [PPO(normalize_obs=True, normalize_reward=True, hidden=(32, 32))],
            r"agent 'ppo': tensor 'actor\.0\.(weight|bias)' has shape \[64(, 4)?\] in the checkpoint, \[32.*here",
        ),
        (
            lambda: [type("MyPPO", (PPO,), {})(normalize_obs=True, normalize_reward=True)],
            r"agent 'ppo' was a rl_agents\.agents\.ppo\.PPO",
        ),
    ],
    ids=["renamed", "extra-agent", "fewer-buffers", "shape", "class"],
)
def test_mismatched_composition_is_refused_naming_the_agent(saved, tmp_path: Path, make_agents, match: str) -> None:
    trainer = Trainer(cartpole(), make_agents(), **SCHEDULE)
    assert_refused(fresh_copy(saved, tmp_path), match, trainer)


def test_missing_buffer_is_refused_naming_the_agent(tmp_path: Path) -> None:
    original, _, _ = trained([PPO()], updates=1)
    path = original.save(tmp_path)
    trainer = Trainer(cartpole(), [PPO(normalize_obs=True)], **SCHEDULE)
    assert_refused(path, r"agent 'ppo': missing tensor 'obs_rms\.(mean|var|count)'", trainer)


def test_other_number_of_envs_is_refused(saved, tmp_path: Path) -> None:
    trainer = Trainer(cartpole(3), [PPO(normalize_obs=True, normalize_reward=True)], **SCHEDULE)
    assert_refused(fresh_copy(saved, tmp_path), r"saved with 2 envs, but this trainer has 3", trainer)
