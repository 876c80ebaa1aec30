"""The Collector and the Learner, each on its own: the Collector driven by hand on scripted envs with
a stub acting agent, the Learner fed hand-built batches."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from rl_agents.agents import DQN, PPO
from rl_agents.core.agent import ACTION, ENV_KEYS, NEXT_OBS, OBS, TERMINATED, TRUNCATED, VALID, Agent, Batch, DataSpec
from rl_agents.training import EnvSpaces, Learner
from rl_agents.training.collector import Collector
from tests.helpers import ConstantBonus, counting_envs

CPU = torch.device("cpu")
STUB_OUT = "stub_out"
FIXED_ACTION = 1


class StubActor(Agent):
    """Always action 1; its declared act output is ``100 + sum(obs)``, so the stored value shows which
    observation it was computed from."""

    acts = True
    default_name = "stub"

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({OBS}), act_outputs=frozenset({ACTION, STUB_OUT}))

    def suggested_schedule(self) -> None:
        return None

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> Batch:
        return {ACTION: torch.full((obs.shape[0],), FIXED_ACTION, dtype=torch.long), STUB_OUT: 100.0 + obs.sum(-1)}


def make_collector(terminate: bool) -> Collector:
    # Env 0's episodes last 2 steps, env 1's 3; next-step autoreset.
    envs = counting_envs(2, [2, 3], terminate, AutoresetMode.NEXT_STEP)
    return Collector(
        envs,
        StubActor(),
        collected_keys=ENV_KEYS | {STUB_OUT},
        rollout_steps=3,
        random_steps=0,
        store_next_obs=True,
        device=CPU,
        seed=0,
    )


def assert_values(batch: Batch, key: str, expected) -> None:
    expected = torch.as_tensor(np.asarray(expected))
    assert batch[key].shape == expected.shape, (key, batch[key].shape, expected.shape)
    assert torch.equal(batch[key].to(expected.dtype), expected), (key, batch[key], expected)


def flags(ended: list[list[bool]], terminate: bool) -> tuple[list, list]:
    none = [[False, False] for _ in ended]
    return (ended, none) if terminate else (none, ended)


@pytest.mark.parametrize("terminate", [True, False], ids=["terminated", "truncated"])
def test_collector_by_hand(terminate: bool):
    collector = make_collector(terminate)
    envs = collector.envs
    obs = collector.begin(seed=0)
    assert obs.tolist() == [[0, 0], [0, 0]]

    batch = None
    for step in range(3):
        action = collector.act(obs)
        assert action.tolist() == [FIXED_ACTION, FIXED_ACTION]
        obs, reward, terminated, truncated, info = envs.step(action)
        batch = collector.observe(obs, reward, terminated, truncated, info)
        if step < 2:
            assert batch is None, f"a batch after {step + 1} of 3 steps"
    assert batch is not None

    # CountingEnv: obs = [t, episode]. Env 0 ends at step 2 and resets at step 3 (an invalid step);
    # env 1 ends at step 3.
    for key in (OBS, NEXT_OBS, ACTION, VALID, TERMINATED, TRUNCATED, "reward/extrinsic", STUB_OUT):
        assert batch[key].shape[:2] == (3, 2), key
    assert_values(batch, OBS, np.array([[[0, 0], [0, 0]], [[1, 0], [1, 0]], [[2, 0], [2, 0]]], dtype=np.float32))
    assert_values(batch, NEXT_OBS, np.array([[[1, 0], [1, 0]], [[2, 0], [2, 0]], [[0, 1], [3, 0]]], dtype=np.float32))
    assert_values(batch, ACTION, [[1, 1], [1, 1], [1, 1]])
    assert_values(batch, VALID, [[True, True], [True, True], [False, True]])
    ended_terminated, ended_truncated = flags([[False, False], [True, False], [False, True]], terminate)
    assert_values(batch, TERMINATED, ended_terminated)
    assert_values(batch, TRUNCATED, ended_truncated)
    assert_values(batch, "reward/extrinsic", np.array([[1, 1], [1, 1], [0, 1]], dtype=np.float32))
    assert_values(batch, STUB_OUT, np.array([[100, 100], [101, 101], [102, 102]], dtype=np.float32))
    assert collector.global_step == 6
    finished = collector.episodes.finished
    assert (finished.returns, finished.lengths, finished.end_steps) == ([2.0, 3.0], [2, 3], [4, 6])
    assert collector.reset_pending.tolist() == [False, True]
    assert collector.at_boundary

    # collect() goes on from the last observation: env 0's second episode, env 1's reset step.
    second = collector.collect()
    assert_values(second, OBS, np.array([[[0, 1], [3, 0]], [[1, 1], [0, 1]], [[2, 1], [1, 1]]], dtype=np.float32))
    assert_values(second, NEXT_OBS, np.array([[[1, 1], [0, 1]], [[2, 1], [1, 1]], [[0, 2], [2, 1]]], dtype=np.float32))
    assert_values(second, VALID, [[True, False], [True, True], [False, True]])
    ended_terminated, ended_truncated = flags([[False, False], [True, False], [False, False]], terminate)
    assert_values(second, TERMINATED, ended_terminated)
    assert_values(second, TRUNCATED, ended_truncated)
    assert_values(second, "reward/extrinsic", np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32))
    assert_values(second, STUB_OUT, np.array([[101, 103], [102, 101], [103, 102]], dtype=np.float32))
    assert collector.global_step == 12
    assert (finished.returns, finished.lengths, finished.end_steps) == ([2.0, 3.0, 2.0], [2, 3, 2], [4, 6, 10])


def test_collector_state_round_trip():
    original = make_collector(terminate=True)
    obs = original.begin(seed=0)
    for _ in range(3):
        action = original.act(obs)
        obs, *outcome = original.envs.step(action)
        batch = original.observe(obs, *outcome)
    assert batch is not None
    state = original.state_dict()
    assert state["global_step"] == 6 and state["reset_pending"] == [False, True]

    restored = make_collector(terminate=True)
    restored.prepare_load(state)()
    assert restored.global_step == 6
    assert restored.reset_pending.tolist() == [False, True]
    assert restored.episodes.state_dict() == original.episodes.state_dict()
    assert restored.episodes.finished.returns == [2.0, 3.0]
    assert restored.episodes.running_length.tolist() == [0, 0]

    # The envs' state came along, so both go on identically (env 1's reset step included).
    expected = original.collect()
    restored.begin()
    resumed = restored.collect()
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    assert restored.global_step == original.global_step == 12
    assert restored.episodes.state_dict() == original.episodes.state_dict()


# ---------------------------------------------------------------------------------------- the Learner
OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


def params_of(agent: Agent) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in agent.named_parameters() if p.requires_grad}


def changed(before: dict[str, torch.Tensor], agent: Agent) -> bool:
    return any(not torch.equal(before[name], p) for name, p in agent.named_parameters() if name in before)


def env_batch(steps: int, num_envs: int, generator: torch.Generator) -> Batch:
    valid = torch.ones(steps, num_envs, dtype=torch.bool)
    valid[2, 1] = False  # a reset step after env 1's episode ended at step 1
    terminated = torch.zeros(steps, num_envs, dtype=torch.bool)
    terminated[1, 1] = True
    truncated = torch.zeros(steps, num_envs, dtype=torch.bool)
    truncated[3, 0] = True
    return {
        OBS: torch.rand(steps, num_envs, 3, generator=generator) * 2 - 1,
        NEXT_OBS: torch.rand(steps, num_envs, 3, generator=generator) * 2 - 1,
        VALID: valid,
        TERMINATED: terminated,
        TRUNCATED: truncated,
        "reward/extrinsic": torch.rand(steps, num_envs, generator=generator) * valid,
    }


def test_learner_on_policy_update():
    bonus = ConstantBonus(value=0.5, lr=1e-3)
    learner = Learner(
        EnvSpaces(OBS_SPACE, gym.spaces.Discrete(2), 2),
        [PPO(hidden=(8,)), bonus],
        seed=0,
        device=CPU,
        num_steps=4,
        num_epochs=1,
        num_minibatches=1,
    )
    ppo = learner.acting
    assert learner.rollout_steps == 4 and not learner.off_policy and learner.replay is None
    batch = env_batch(4, 2, torch.Generator().manual_seed(0))
    outputs = [ppo.act(batch[OBS][t]) for t in range(4)]
    act_outputs = learner.composition.specs[ppo.name].act_outputs
    assert set(outputs[0]) == act_outputs
    for key in act_outputs:
        batch[key] = torch.stack([out[key] for out in outputs])
    assert learner.composition.collected_keys <= batch.keys()
    assert "reward/bonus" not in batch
    before = params_of(ppo)

    metrics = learner.update(batch, global_step=8, total_steps=None)

    expected_bonus = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.0], [0.5, 0.5]])
    assert torch.equal(batch["reward/bonus"], expected_bonus)
    assert batch["advantages"].shape == (4, 2)
    assert batch["returns"].shape == (4, 2, 2)  # one return per stream: extrinsic and bonus
    assert [stream.name for stream in learner.streams] == ["extrinsic", "bonus"]
    assert learner.num_updates == 1
    assert changed(before, ppo)
    for term in ("ppo/loss/policy", "ppo/loss/value", "ppo/loss/entropy", "trainer/loss", "trainer/grad_norm"):
        assert term in metrics, term
    assert metrics["bonus/bonus_mean"] == pytest.approx(float(expected_bonus.mean()))
    assert all(isinstance(value, float) for value in metrics.values())


def test_learner_off_policy_updates():
    learner = Learner(
        EnvSpaces(OBS_SPACE, gym.spaces.Discrete(2), 2),
        [DQN(hidden=(8,))],
        seed=0,
        device=CPU,
        learning_starts=8,
        batch_size=4,
        train_frequency=2,
        gradient_steps=1,
        buffer_size=32,
    )
    dqn = learner.acting
    assert learner.off_policy and learner.rollout_steps == 2 and learner.random_steps == 8
    assert learner.replay is not None and learner.replay.capacity == 16
    generator = torch.Generator().manual_seed(1)
    before = params_of(dqn)

    def update(global_step: int) -> dict[str, float]:
        batch = env_batch(4, 2, generator)
        batch = {key: value[:2] for key, value in batch.items()}  # two vector steps, all valid
        batch[ACTION] = torch.randint(2, (2, 2), generator=generator)
        assert learner.composition.collected_keys <= batch.keys()
        return learner.update(batch, global_step=global_step, total_steps=None)

    for global_step in (4, 8):  # at most learning_starts steps seen: stored, not trained on
        metrics = update(global_step)
        assert "dqn/loss/td" not in metrics
        assert learner.total_gradient_steps == 0
        assert not changed(before, dqn)
    assert learner.replay.size == 4 and len(learner.replay) == 8
    assert learner.num_updates == 2

    metrics = update(12)
    assert learner.replay.size == 6
    assert learner.total_gradient_steps == 1
    assert "dqn/loss/td" in metrics and np.isfinite(metrics["dqn/loss/td"])
    assert changed(before, dqn)
    assert learner.num_updates == 3
