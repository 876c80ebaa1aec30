"""Bad numbers and bad environments.

Promise 5: a NaN or inf in a loss, a gradient, an observation or a reward stops training with a
message naming the agent and the loss term (or the env index and the quantity), after saving a last
good checkpoint; ``skip_non_finite_updates`` (off by default) skips such updates instead.

Promise 6: an env that raises in step or reset, returns observations of the wrong shape or dtype, or
(async) whose worker process dies stops training with an error naming the env index, with the trainer
still consistent and savable; with ``max_env_restarts`` training restarts the envs and goes on.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rl_agents import DQN, PPO, Trainer
from rl_agents.agents import AGENTS
from rl_agents.checkpointing import latest_checkpoint
from rl_agents.cli import main
from rl_agents.core.agent import Agent, Batch, DataSpec
from rl_agents.envs import EnvCreationError, EnvError, IndexedEnv, env_factory_of, make_envs
from rl_agents.envs.failures import close_quietly
from rl_agents.training.errors import NonFiniteError, NonFiniteLossError, NonFiniteObservationError
from rl_agents.training.trainer import LAST_GOOD_CHECKPOINT

SMALL = {"num_steps": 8, "num_epochs": 2, "num_minibatches": 2}  # 4 minibatch steps per update

# Faults that should fire only once in this process (so that restarted envs behave), by key.
_FIRED: set[str] = set()


class FaultyEnv(gym.Env):
    """obs = [step in episode, 0.5]; reward 1; episodes of ``length`` steps (truncated).

    ``fault`` fires at the env's ``at``-th call of step (counted over the env's life) or its ``at``-th
    reset: ``step_raises``, ``reset_raises``, ``wrong_shape``, ``nan_obs``, ``inf_reward``,
    ``nan_reset`` (a NaN in the observation of reset number ``at``). With ``once`` (a key), it fires
    once in this process, whichever env instance gets there first.
    """

    def __init__(
        self, fault: str = "none", at: int = 3, length: int = 5, once: str | None = None, dtype: type = np.float32
    ):
        self.observation_space = gym.spaces.Box(
            -np.inf if dtype == np.float32 else 0, np.inf if dtype == np.float32 else 255, (2,), dtype
        )
        self.action_space = gym.spaces.Discrete(2)
        self.fault, self.at, self.length, self.once = fault, at, length, once
        self.steps = 0
        self.resets = 0
        self.t = 0

    def _fires(self, count: int, faults: tuple[str, ...]) -> bool:
        if self.fault not in faults or count != self.at:
            return False
        if self.once is not None:
            if self.once in _FIRED:
                return False
            _FIRED.add(self.once)
        return True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.resets += 1
        self.t = 0
        if self._fires(self.resets, ("reset_raises",)):
            raise RuntimeError(f"reset number {self.resets} failed")
        obs = self._obs()
        if self._fires(self.resets, ("nan_reset",)):
            obs[1] = np.nan
        return obs, {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        if self._fires(self.steps, ("step_raises",)):
            raise RuntimeError(f"boom at step {self.steps}")
        obs, reward = self._obs(), 1.0
        if self._fires(self.steps, ("wrong_shape",)):
            obs = np.zeros(3, dtype=np.float32)
        if self._fires(self.steps, ("nan_obs",)):
            obs[0] = np.nan
        if self._fires(self.steps, ("inf_reward",)):
            reward = math.inf
        if self._fires(self.steps, ("wrong_dtype",)):
            obs = obs.astype(np.float64) + 0.5
        return obs, reward, False, self.t >= self.length, {}

    def _obs(self) -> np.ndarray:
        return np.array([self.t, 0.5], dtype=self.observation_space.dtype)


def faulty_envs(
    fault: str, bad_index: int = 1, num_envs: int = 2, indexed: bool = True, **kwargs
) -> gym.vector.SyncVectorEnv:
    """A sync vector env of FaultyEnvs in which only env ``bad_index`` misbehaves."""

    def make(index: int) -> gym.Env:
        env = FaultyEnv(fault if index == bad_index else "none", **kwargs)
        return IndexedEnv(env, index) if indexed else env

    return gym.vector.SyncVectorEnv([lambda index=index: make(index) for index in range(num_envs)])


class Poison(Agent):
    """A bonus-less agent with one parameter whose loss term ``bad`` is NaN (``kind="loss"``) or has a
    NaN gradient while its value stays finite (``kind="grad"``) on loss calls ``start <= call < stop``."""

    default_name = "poison"
    transient_attributes = frozenset({"calls"})  # test machinery: which loss calls are poisoned, not training state

    def __init__(self, *, kind: str = "loss", start: int = 0, stop: int = 10**9, lr: float = 1e-3, **kwargs):
        super().__init__(lr=lr, **kwargs)
        self.kind, self.start, self.stop = kind, start, stop
        self.calls = 0

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.weight = nn.Parameter(torch.ones(2))

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({"valid"}))

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        call, self.calls = self.calls, self.calls + 1
        value = ((self.weight - 2.0) ** 2).sum()
        if self.start <= call < self.stop:
            if self.kind == "loss":
                value = value + float("nan")
            else:  # sqrt at 0: the value is 0, its gradient 0 * inf = NaN
                value = value + torch.sqrt(self.weight * 0.0).sum()
        return {"bad": value}, {}


def params_of(trainer: Trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for agent in trainer.agents for p in agent.parameters()]


def all_finite(trainer: Trainer) -> bool:
    return all(bool(torch.isfinite(p).all()) for agent in trainer.agents for p in agent.parameters())


def assert_at_boundary_and_savable(trainer: Trainer, directory: Path) -> None:
    assert trainer.collector.step_in_rollout == 0 and not trainer.collector.acted
    assert all_finite(trainer)
    saved = trainer.save(directory)
    restored = Trainer(
        faulty_envs("none"),
        [type(agent)() if not isinstance(agent, Poison) else Poison() for agent in trainer.agents],
        **SMALL,
    )
    restored.load_state(saved)
    assert restored.global_step == trainer.global_step


# ---------------------------------------------------------------------------------------------- 5: loss
def test_nan_loss_names_the_agent_and_the_term_and_changes_nothing(tmp_path: Path) -> None:
    trainer = Trainer(faulty_envs("none"), [PPO(), Poison(start=5)], **SMALL)  # the 2nd update's 2nd step
    with pytest.raises(
        NonFiniteLossError, match=r"agent 'poison' loss term 'bad' is nan \(update 2, step 32\)"
    ) as caught:
        trainer.train(64, progress=False)
    assert "skip_non_finite_updates" in str(caught.value) and caught.value.checkpoint is None
    assert trainer.num_updates == 1  # the failed update is not counted; its first step was finite
    assert_at_boundary_and_savable(trainer, tmp_path)


@pytest.mark.parametrize("max_grad_norm", [0.5, None])
def test_nan_gradient_names_the_agent_whose_parameters_hold_it(max_grad_norm: float | None) -> None:
    trainer = Trainer(faulty_envs("none"), [PPO(), Poison(kind="grad", start=4)], **SMALL)
    trainer.schedule.max_grad_norm = max_grad_norm  # (None as a Trainer argument takes PPO's suggestion)
    trainer.train(16, progress=False)  # one clean update (4 minibatch steps)
    before = params_of(trainer)
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite gradient although every loss term is finite: agent 'poison' in weight "
        r"\(its loss terms: 'bad' = [\d.]+\)",
    ) as caught:
        trainer.train(32, progress=False)
    assert "agent 'ppo'" not in str(caught.value)  # PPO's own gradients are finite
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(trainer)))  # nothing applied
    assert all(torch.isfinite(state["exp_avg"]).all() for state in trainer.optimizer.state.values())


def test_weighted_sum_overflow_is_reported_with_the_loss_weights() -> None:
    trainer = Trainer(faulty_envs("none"), [PPO(), Poison(start=10**9, loss_weight=math.inf)], **SMALL)
    with pytest.raises(
        NonFiniteLossError,
        match=r"every loss term is finite but their weighted sum is not \(loss weights: .*'poison' inf",
    ):
        trainer.train(16, progress=False)


# ---------------------------------------------------------------------------------------------- 5: skip
@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_skip_non_finite_updates_skips_counts_warns_and_goes_on(kind: str) -> None:
    trainer = Trainer(
        faulty_envs("none"), [PPO(), Poison(kind=kind, start=1, stop=3)], skip_non_finite_updates=True, **SMALL
    )
    with pytest.warns(RuntimeWarning, match="skipped a minibatch update: non-finite") as caught:
        trainer.train(48, progress=False)
    assert trainer.global_step == 48 and trainer.num_updates == 3
    assert trainer.learner.skipped_updates == 2 and len([w for w in caught if "skipped" in str(w.message)]) == 2
    assert trainer.metrics["trainer/skipped_updates"] == 2.0
    assert all_finite(trainer) and math.isfinite(trainer.metrics["trainer/loss"])


def test_a_skipped_update_takes_no_optimizer_step() -> None:
    trainer = Trainer(faulty_envs("none"), [PPO(), Poison(kind="grad")], skip_non_finite_updates=True, **SMALL)
    before = params_of(trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trainer.train(32, progress=False)
    assert trainer.learner.skipped_updates == 8 and not trainer.optimizer.state  # Adam never stepped
    assert all(torch.equal(a, b) for a, b in zip(before, params_of(trainer)))


def test_off_policy_skips_too_and_averages_only_the_applied_steps() -> None:
    replay = {"learning_starts": 8, "batch_size": 4, "train_frequency": 1, "gradient_steps": 2, "buffer_size": 100}
    trainer = Trainer(
        faulty_envs("none"), [DQN(), Poison(start=1, stop=2)], skip_non_finite_updates=True, log_interval=8, **replay
    )
    with pytest.warns(RuntimeWarning, match="agent 'poison' loss term 'bad' is nan"):
        trainer.train(32, progress=False)
    assert (
        trainer.learner.skipped_updates == 1 and trainer.learner.total_gradient_steps == 2 * 12
    )  # updates at steps 10, 12, ..., 32
    assert trainer.metrics["trainer/skipped_updates"] == 1.0 and all_finite(trainer)
    assert all(math.isfinite(value) for key, value in trainer.metrics.items() if "loss" in key)


def test_skipping_is_off_by_default() -> None:
    trainer = Trainer(faulty_envs("none"), [PPO()])
    assert trainer.learner.step.skip_non_finite is False and trainer.collector.max_env_restarts == 0
    assert (
        "trainer/skipped_updates"
        not in Trainer(faulty_envs("none"), [PPO()], **SMALL).train(16, progress=False).metrics
    )


# ---------------------------------------------------------------------------------------------- 5: observations
@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("nan_obs", r"non-finite observation of env 1 returned by step at global step 4: element 0 is nan"),
        ("inf_reward", r"non-finite reward of env 1 returned by step at global step 4: inf"),
        ("nan_reset", r"non-finite observation of env 1 passed to act at global step 0: element 1 is nan"),
    ],
)
def test_non_finite_observations_and_rewards_name_the_env(fault: str, match: str, tmp_path: Path) -> None:
    trainer = Trainer(faulty_envs(fault, at=3 if fault != "nan_reset" else 1), [PPO()], **SMALL)
    with pytest.raises(NonFiniteObservationError, match=match) as caught:
        trainer.train(64, progress=False, save_on_error=tmp_path)
    assert caught.value.indices == (1,)
    assert isinstance(caught.value, NonFiniteError) and isinstance(caught.value, EnvError)
    assert caught.value.checkpoint == tmp_path / LAST_GOOD_CHECKPOINT
    assert_at_boundary_and_savable(trainer, tmp_path / "again")


def test_hand_written_loop_sees_the_error_before_anything_is_stored_and_can_restart() -> None:
    envs = faulty_envs("nan_obs", bad_index=0, at=2)
    trainer = Trainer(envs, [PPO()], **SMALL)
    obs, _ = envs.reset(seed=0)
    obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
    trainer.observe(obs, reward, terminated, truncated, info)
    bad = envs.step(trainer.act(obs))  # env 0's 2nd step returns a NaN
    with pytest.raises(
        NonFiniteObservationError, match=r"of env 0 returned by step at global step 2: element 0 is nan"
    ):
        trainer.observe(*bad)
    assert trainer.collector.step_in_rollout == 1 and trainer.global_step == 2  # nothing of the bad step stored
    obs = trainer.restart_envs()
    assert (
        trainer.collector.step_in_rollout == 0
        and not trainer.collector.acted
        and trainer.collector.num_env_restarts == 1
    )
    for _ in range(8):
        obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
        trainer.observe(obs, reward, terminated, truncated, info)
    assert trainer.num_updates == 1 and trainer.global_step == 18 and all_finite(trainer)


# ---------------------------------------------------------------------------------------------- 6: envs
@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("step_raises", r"env 1 failed in step: RuntimeError: boom at step 10"),
        ("reset_raises", r"env 1 failed in reset: RuntimeError: reset number 4 failed"),  # an autoreset
        (
            "wrong_shape",
            r"env 1 returned an observation of shape \(3,\) from step; its observation space has shape \(2,\)",
        ),
    ],
)
def test_a_failing_env_is_named_and_the_trainer_stays_savable(fault: str, match: str, tmp_path: Path) -> None:
    # Env 1 steps 7 times and resets twice in the first 8 vector steps (episodes of 5 steps).
    trainer = Trainer(faulty_envs(fault, at=4 if fault == "reset_raises" else 10), [PPO()], **SMALL)
    trainer.train(16, progress=False)  # one good update first
    with pytest.raises(EnvError, match=match) as caught:
        trainer.train(64, progress=False, save_on_error=tmp_path)
    assert caught.value.indices == (1,)
    assert caught.value.checkpoint == tmp_path / LAST_GOOD_CHECKPOINT
    assert latest_checkpoint(tmp_path) == tmp_path / LAST_GOOD_CHECKPOINT
    assert_at_boundary_and_savable(trainer, tmp_path / "again")


def test_wrong_dtype_is_named() -> None:
    env = IndexedEnv(FaultyEnv("wrong_dtype", at=1, dtype=np.uint8), 3)
    env.reset(seed=0)
    with pytest.raises(
        EnvError,
        match=r"env 3 returned an observation of dtype float64 from step; its observation space has dtype uint8",
    ):
        env.step(0)
    trainer = Trainer(faulty_envs("none"), [PPO()], **SMALL)
    obs, _ = trainer.envs.reset(seed=0)
    with pytest.raises(
        EnvError, match=r"observations passed to act have dtype complex64, not the observation space's float32"
    ):
        trainer.act(obs.astype(np.complex64))
    with pytest.raises(EnvError, match=r"observations passed to act have shape \(2, 3\); expected \(2, 2\)"):
        trainer.act(np.zeros((2, 3), np.float32))


def test_without_indexed_envs_the_error_says_how_to_get_the_index() -> None:
    trainer = Trainer(faulty_envs("step_raises", indexed=False), [PPO()], **SMALL)
    with pytest.raises(
        EnvError,
        match=r"the vector env failed in step: RuntimeError: boom at step 3 "
        r"\(to have the failing env named.*IndexedEnv",
    ) as caught:
        trainer.train(64, progress=False)
    assert caught.value.indices == ()


def test_restart_without_a_factory_resets_the_envs_and_training_reaches_the_end() -> None:
    key = "sync-reset-restart"
    _FIRED.discard(key)
    trainer = Trainer(faulty_envs("step_raises", at=11, once=key), [PPO()], max_env_restarts=1, **SMALL)
    assert trainer.collector.env_factory is None
    envs = trainer.envs
    with pytest.warns(
        RuntimeWarning, match=r"env 1 failed in step.*restarting the environments \(restart 1 of at most 1\)"
    ):
        trainer.train(64, progress=False)
    assert trainer.envs is envs and trainer.collector.num_env_restarts == 1
    # Env 1 raised in the 5th vector step of the 2nd rollout: its first 4 were discarded, still
    # counted in global_step but never trained on; then 3 more rollouts reach the 64 steps.
    assert trainer.global_step == 64 + 4 * 2 and trainer.num_updates == 4
    assert trainer.metrics["trainer/env_restarts"] == 1.0 and all_finite(trainer)


def test_restart_with_a_factory_rebuilds_the_envs_until_the_budget_is_spent(tmp_path: Path) -> None:
    built: list[gym.vector.VectorEnv] = []

    def factory() -> gym.vector.VectorEnv:
        built.append(faulty_envs("step_raises", at=3))  # fails every time
        return built[-1]

    trainer = Trainer(factory(), [PPO()], max_env_restarts=2, env_factory=factory, **SMALL)
    with (
        pytest.warns(RuntimeWarning, match="restarting"),
        pytest.raises(EnvError, match="env 1 failed in step") as caught,
    ):
        trainer.train(64, progress=False, save_on_error=tmp_path)
    assert trainer.collector.num_env_restarts == 2 and len(built) == 3 and trainer.envs is built[-1]
    assert built[0].closed and built[1].closed
    assert caught.value.checkpoint == tmp_path / LAST_GOOD_CHECKPOINT


def test_make_envs_wraps_each_env_with_its_index_and_keeps_a_factory() -> None:
    envs = make_envs("CartPole-v1", 3)
    reference = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="sync")
    assert [env.index for env in envs.envs] == [0, 1, 2] and all(isinstance(env, IndexedEnv) for env in envs.envs)
    obs, _ = envs.reset(seed=4)
    expected, _ = reference.reset(seed=4)
    for _ in range(30):
        np.testing.assert_array_equal(obs, expected)
        action = np.array([0, 1, 1])
        obs, *_ = envs.step(action)
        expected, *_ = reference.step(action)
    again = env_factory_of(envs)()
    assert again is not envs and again.num_envs == 3 and isinstance(again.envs[2], IndexedEnv)
    assert env_factory_of(reference) is None


# ---------------------------------------------------------------------------------------------- 6: async
def _kill_worker(index: int):
    killed = []

    def on_update(trainer: Trainer) -> None:
        if not killed:
            process = trainer.envs.unwrapped.processes[index]
            os.kill(process.pid, signal.SIGKILL)
            process.join(timeout=10)
            killed.append(process.pid)

    return on_update


def test_a_killed_async_worker_is_named(tmp_path: Path) -> None:
    trainer = Trainer(make_envs("CartPole-v1", 2, "async"), [PPO()], **SMALL)
    try:
        with pytest.raises(EnvError, match=r"env 1: its worker process \(pid \d+\) was killed by SIGKILL") as caught:
            trainer.train(64, progress=False, on_update=_kill_worker(1), save_on_error=tmp_path)
        assert caught.value.indices == (1,)
        assert caught.value.checkpoint == tmp_path / LAST_GOOD_CHECKPOINT and trainer.num_updates == 1
    finally:
        close_quietly(trainer.envs)


def test_with_restarts_training_goes_on_after_an_async_worker_dies() -> None:
    envs = make_envs("CartPole-v1", 2, "async")
    trainer = Trainer(envs, [PPO()], max_env_restarts=1, **SMALL)
    try:
        with pytest.warns(RuntimeWarning, match="env 1: its worker process .* killed by SIGKILL.*restarting"):
            trainer.train(64, progress=False, on_update=_kill_worker(1))
        assert trainer.global_step >= 64 and trainer.num_updates == 4 and trainer.collector.num_env_restarts == 1
        assert trainer.envs is not envs and envs.closed
        assert all(process.is_alive() for process in trainer.envs.unwrapped.processes)
    finally:
        close_quietly(trainer.envs)


def test_an_async_worker_that_raises_is_named() -> None:
    fns = [
        lambda index=index: IndexedEnv(FaultyEnv("step_raises" if index == 1 else "none", at=3), index)
        for index in range(2)
    ]
    trainer = Trainer(gym.vector.AsyncVectorEnv(fns), [PPO()], **SMALL)
    try:
        with pytest.raises(EnvError, match="env 1 failed in step: RuntimeError: boom at step 3") as caught:
            trainer.train(64, progress=False)
        assert caught.value.indices == (1,)
    finally:
        close_quietly(trainer.envs)


# ---------------------------------------------------------------------------------------------- CLI
def _register(env_id: str, **kwargs) -> str:
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=FaultyEnv, kwargs=kwargs)
    return env_id


CLI_SMALL = [
    "--steps",
    "64",
    "--num-envs",
    "2",
    "--quiet",
    "--set",
    "trainer.num_steps=8",
    "--set",
    "trainer.num_epochs=2",
    "--set",
    "trainer.num_minibatches=2",
]


def test_cli_saves_last_good_and_exits_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_id = _register("RlAgentsTestNanObs-v0", fault="nan_obs", at=9)  # in the 10th vector step
    run = tmp_path / "run"
    code = main(["train", "--env", env_id, "--agents", "ppo", *CLI_SMALL, "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith(
        "rl-agents: error: training stopped at step 18: non-finite observation of envs 0, 1 returned by step"
    )
    assert f"saved to {run / 'checkpoints' / LAST_GOOD_CHECKPOINT}" in err and f"--resume {run}" in err
    assert latest_checkpoint(run / "checkpoints") == run / "checkpoints" / LAST_GOOD_CHECKPOINT
    restored = Trainer.load(run)
    assert restored.global_step == 18 and restored.num_updates == 1  # the partial 2nd rollout was dropped


def test_cli_options_skip_bad_updates_and_restart_failed_envs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(AGENTS, "poison", Poison)
    _FIRED.discard("cli-restart")
    env_id = _register("RlAgentsTestRaiseOnce-v0", fault="step_raises", at=11, once="cli-restart")
    run = tmp_path / "run"
    code = main(
        ["train", "--env", env_id, "--agents", "ppo+poison", *CLI_SMALL, "--out", str(run),
         "--set", "poison.start=2", "--set", "poison.stop=4",
         "--set", "trainer.skip_non_finite_updates=true", "--set", "trainer.max_env_restarts=1"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "trainer/skipped_updates" in header and "trainer/env_restarts" in header
    last = (run / "metrics.csv").read_text().splitlines()[-1].split(",")
    row = dict(zip(header, last))
    assert float(row["trainer/skipped_updates"]) == 2.0 and float(row["trainer/env_restarts"]) == 1.0


def test_cli_refuses_a_negative_restart_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", *CLI_SMALL, "--out", str(tmp_path / "run"), "--set", "trainer.max_env_restarts=-1"])
    assert code == 2 and "trainer.max_env_restarts must be >= 0" in capsys.readouterr().err


def test_batched_vectorization_of_an_env_without_one_is_a_clear_error() -> None:
    with pytest.raises(EnvCreationError, match="Pendulum-v1 has no batched implementation"):
        make_envs("Pendulum-v1", 2, "vector")
