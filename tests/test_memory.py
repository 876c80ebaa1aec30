"""Memory: carried state through the Collector, sequence minibatches, recurrent PPO, checkpoints, Policy."""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from rl_agents import PPO, RND, Trainer
from rl_agents.core.agent import (
    ACTION,
    EPISODE_START,
    OBS,
    Agent,
    Batch,
    CompositionError,
    ContractError,
    DataSpec,
    EnvContext,
    carried_key,
    next_carried_key,
)
from rl_agents.core.recurrent import RecurrentCore, _pieces
from rl_agents.envs import make_envs
from rl_agents.policy import Policy
from rl_agents.training.minibatches import sequence_minibatch
from tests.helpers import ConstantBonus, counting_envs

torch.set_num_threads(1)


class StepCounter(Agent):
    """Carries one number per env: the steps it has acted in this episode. With CountingEnv (obs[0]:
    steps taken in the episode) the state it acts from equals obs[0] at every step exactly when the
    machinery resets it at episode starts and nowhere else."""

    acts = True
    default_name = "counter"

    def __init__(self) -> None:
        super().__init__(lr=1e-3)
        self.seen: list[tuple[list[float], list[float]]] = []
        self.anchor = torch.nn.Linear(1, 1)  # a parameter for the optimizer

    def carried_state(self) -> dict[str, tuple[int, ...]]:
        return {"count": (1,)}

    def data_spec(self) -> DataSpec:
        return DataSpec(needs=frozenset({carried_key("count"), EPISODE_START}), act_outputs=frozenset({ACTION}))

    def act(self, obs: torch.Tensor, deterministic: bool = False, state: Batch | None = None) -> Batch:
        assert state is not None
        self.seen.append((obs[:, 0].tolist(), state["count"][:, 0].tolist()))
        actions = torch.zeros(len(obs), dtype=torch.long)
        return {ACTION: actions, next_carried_key("count"): state["count"] + 1}

    def loss(self, minibatch: Batch) -> tuple[dict[str, torch.Tensor], dict]:
        return {"zero": self.anchor.weight.sum() * 0.0}, {}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_carried_state_is_reset_exactly_at_episode_starts(mode: AutoresetMode) -> None:
    envs = counting_envs(2, [3, 5], terminate=True, mode=mode)
    agent = StepCounter()
    trainer = Trainer(envs, [agent], num_steps=4, num_epochs=1, num_minibatches=1)
    trainer.collector.begin(seed=0)
    batches = [trainer.collector.collect() for _ in range(4)]  # 16 steps: several episodes per env
    for obs_steps, counts in agent.seen:
        assert counts == obs_steps  # reset at every episode start, carried everywhere else
    # The stored flags and states are the ones act saw.
    starts = torch.cat([batch[EPISODE_START] for batch in batches])
    observed = torch.cat([batch[OBS][..., 0] for batch in batches])
    stored = torch.cat([batch[carried_key("count")][..., 0] for batch in batches])
    assert torch.equal(starts, observed == 0)
    assert torch.equal(stored, observed)


def test_a_part_that_declares_carried_state_is_refused() -> None:
    class Remembering(ConstantBonus):
        def carried_state(self) -> dict[str, tuple[int, ...]]:
            return {"h": (4,)}

    with pytest.raises(CompositionError, match="declares carried state but does not act"):
        Trainer(gym.make_vec("CartPole-v1", 2), [PPO(), Remembering()])


def test_act_that_does_not_return_its_carried_state_breaks_the_contract() -> None:
    class Forgetful(StepCounter):
        def act(self, obs: torch.Tensor, deterministic: bool = False, state: Batch | None = None) -> Batch:
            return {ACTION: torch.zeros(len(obs), dtype=torch.long)}

    trainer = Trainer(counting_envs(2, [3, 3], True, AutoresetMode.NEXT_STEP), [Forgetful()], num_steps=2)
    with pytest.raises(ContractError, match="declared carried state 'count'.*did not return 'next_carried/count'"):
        trainer.collector.begin(seed=0)
        trainer.collector.collect()


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_both_replays_equal_a_step_by_step_loop(kind: str) -> None:
    torch.manual_seed(0)
    core = RecurrentCore(kind, 5, 7)
    steps, envs = 13, 4
    features = torch.randn(steps, envs, 5)
    starts = torch.rand(steps, envs) < 0.25
    starts[0, 1] = True  # an env starting an episode at the first step
    state = {name: torch.randn(envs, 7) for name in core.state_shapes()}
    expected, current = [], dict(state)
    for t in range(steps):
        current = {name: value * (~starts[t]).float().unsqueeze(-1) for name, value in current.items()}
        output, current = core.step(features[t], current)
        expected.append(output)
    reference = torch.stack(expected)
    cuts = starts[1:].any(dim=1).nonzero().flatten().add(1).tolist()
    torch.testing.assert_close(core._sequence_by_cuts(features, starts, state, cuts), reference, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        core._sequence_padded(features, starts, state, _pieces(starts)), reference, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(core.sequence(features, starts, state), reference, atol=1e-6, rtol=0)


def test_pieces_split_each_env_at_its_episode_starts() -> None:
    starts = torch.tensor([[False, True], [True, False], [False, False], [False, True]])  # [T=4, B=2]
    pieces = _pieces(starts)
    # env 0: steps 0 | 1 2 3 -> pieces 0, 1; env 1: steps 0 1 2 | 3 -> pieces 2, 3
    assert pieces.piece.t().tolist() == [[0, 1, 1, 1], [2, 2, 2, 3]]
    assert pieces.position.t().tolist() == [[0, 0, 1, 2], [0, 1, 2, 0]]
    assert (pieces.count, pieces.length) == (4, 3)


def recurrent_trainer(
    kind: str, mode: AutoresetMode = AutoresetMode.NEXT_STEP, seed: int = 0, **options: object
) -> Trainer:
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 4, autoreset_mode=mode)
    agent = PPO(memory=kind, memory_size=16, hidden=(16,), **options)
    return Trainer(envs, [agent], seed=seed, num_steps=48, num_epochs=2, num_minibatches=2, total_steps=10_000)


@pytest.mark.parametrize("critic_memory", [False, True])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_replay_reproduces_the_acting_log_probs_and_values(
    kind: str, mode: AutoresetMode, critic_memory: bool
) -> None:
    trainer = recurrent_trainer(kind, mode, normalize_obs=True, critic_memory=critic_memory)
    trainer.collector.begin(seed=3)
    batch = trainer.collector.collect()  # 48 steps of a random-ish policy: several episodes per env
    assert batch[EPISODE_START][1:].any()
    agent, learner = trainer.acting, trainer.learner
    columns = {key: value for key, value in batch.items() if key in learner.composition.used_keys | {"valid"}}
    for envs in (torch.tensor([0, 2]), torch.tensor([3, 1])):
        minibatch = sequence_minibatch(columns, envs, learner.sequence_keys)
        with torch.no_grad():
            actor_in, critic_in = agent._recurrent_sequence(minibatch, "policy_obs")
            log_prob = agent.action_head.log_prob(agent.actor(actor_in), minibatch[ACTION])
            values = agent.critic(critic_in)
        ratio = (log_prob - minibatch["logprob"]).exp()
        torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-6, rtol=0)
        torch.testing.assert_close(values, minibatch["values"], atol=1e-6, rtol=0)


def test_a_recurrent_update_starts_at_ratio_one_and_changes_the_memory() -> None:
    trainer = recurrent_trainer("lstm")
    before = [p.detach().clone() for p in trainer.acting.core.parameters()]
    trainer.train(2 * 48 * 4)
    assert trainer.num_updates == 2
    assert abs(trainer.metrics["ppo/old_approx_kl"]) < 0.1
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.acting.core.parameters()))


def test_sequence_minibatches_refuse_more_minibatches_than_envs_when_set_and_fit_a_suggestion() -> None:
    envs = gym.make_vec("CartPole-v1", 2)
    with pytest.raises(CompositionError, match="num_minibatches=4 with sequence_minibatches.*only 2 envs"):
        Trainer(envs, [PPO(memory="gru")], num_minibatches=4)
    assert Trainer(envs, [PPO(memory="gru")]).schedule.num_minibatches == 2  # suggested 4, lowered to the envs


def test_sequence_minibatch_rows_line_up_with_the_sequences() -> None:
    columns = {
        "valid": torch.tensor([[True, False, True], [False, True, True]]),
        "x": torch.arange(6.0).reshape(2, 3),
    }
    minibatch = sequence_minibatch(columns, torch.tensor([2, 0]), frozenset({"x"}))
    assert minibatch["x"].tolist() == [2.0, 0.0, 5.0]  # time-major over envs 2, 0; the invalid row dropped
    assert minibatch["sequence/x"].tolist() == [[2.0, 0.0], [5.0, 3.0]]
    assert torch.equal(minibatch["sequence/x"][minibatch["sequence/valid"]], minibatch["x"])


def test_resuming_mid_episode_continues_exactly(tmp_path: Path) -> None:
    def run_updates(trainer: Trainer, envs: gym.vector.VectorEnv, obs: np.ndarray, updates: int) -> np.ndarray:
        target = trainer.num_updates + updates
        while trainer.num_updates < target:
            obs, reward, terminated, truncated, info = envs.step(trainer.act(obs))
            trainer.observe(obs, reward, terminated, truncated, info)
        return obs

    original = recurrent_trainer("lstm", seed=1)
    envs = original.envs
    obs, _ = envs.reset(seed=1)
    obs = run_updates(original, envs, obs, 2)
    assert (original.collector.episodes.running_length > 0).all()  # every env is mid-episode
    path = original.save(tmp_path)
    envs_at_save, obs_at_save = copy.deepcopy(envs), obs.copy()

    resumed = recurrent_trainer("lstm", seed=5)
    resumed.load_state(path)
    for name, value in original.collector.memory.values.items():
        assert torch.equal(resumed.collector.memory.values[name], value)
    run_updates(original, envs, obs, 2)
    run_updates(resumed, envs_at_save, obs_at_save, 2)
    for a, b in zip(original.acting.state_dict().values(), resumed.acting.state_dict().values()):
        assert torch.equal(a, b)
    for name, value in original.collector.memory.values.items():
        assert torch.equal(resumed.collector.memory.values[name], value)


def test_recurrent_ppo_with_rnd_trains() -> None:
    envs = make_envs("CartPoleNoVel-v1", 4)
    trainer = Trainer(envs, [PPO(memory="lstm", memory_size=16), RND()], seed=0, num_steps=32, total_steps=512)
    trainer.train(512)
    assert trainer.num_updates == 4
    for key in ("ppo/value_loss/intrinsic", "ppo/value_loss/extrinsic", "rnd/predictor_loss"):
        assert np.isfinite(trainer.metrics[key]), key


def test_policy_predict_carries_the_state_like_evaluation() -> None:
    trainer = recurrent_trainer("gru", seed=2)
    trainer.train(48 * 4)
    policy = Policy.from_trainer(trainer)
    assert policy.has_memory
    env = gym.make("CartPoleNoVel-v1") if "CartPoleNoVel-v1" in gym.registry else None
    envs = make_envs("CartPoleNoVel-v1", 1)
    obs, _ = envs.reset(seed=4)
    state = None
    memory = trainer.collector.memory.__class__(trainer.acting, 1, trainer.device)
    trainer.acting.eval()
    for step in range(30):
        action, state = policy.predict(obs, state, episode_start=np.array([step == 0]))
        with torch.inference_mode():
            expected = trainer.acting.action_head.to_env(memory.act(torch.as_tensor(obs), deterministic=True)[ACTION])
        assert action.tolist() == expected.tolist()
        obs, *_ = envs.step(action)
    assert env is None  # the NoVel ids are rl_agents' own, not registered with Gymnasium
    single_action, single_state = policy.predict(obs[0], None)
    assert np.shape(single_action) == () and single_state["h"].shape == (16,)
    with pytest.raises(ValueError, match="state must be the dict predict returned"):
        policy.predict(obs, {"x": np.zeros((1, 16))})
    with pytest.raises(ValueError, match="has memory: use predict"):
        policy.act_batch(torch.as_tensor(obs))


def test_evaluation_starts_every_episode_from_the_initial_state() -> None:
    envs = counting_envs(2, [3, 4], terminate=True, mode=AutoresetMode.SAME_STEP)
    agent = StepCounter()
    trainer = Trainer(envs, [agent], num_steps=4)
    agent.seen.clear()
    from rl_agents.evaluation import evaluate_agent

    evaluate_agent(agent, counting_envs(2, [3, 4], True, AutoresetMode.SAME_STEP), episodes=6)
    evaluate_agent(agent, counting_envs(2, [3, 4], True, AutoresetMode.NEXT_STEP), episodes=6)
    assert agent.seen and all(counts == steps for steps, counts in agent.seen)
    assert trainer.num_updates == 0


def test_masked_velocity_envs_zero_the_velocities() -> None:
    envs = make_envs("CartPoleNoVel-v1", 2)
    obs, _ = envs.reset(seed=0)
    for _ in range(5):
        obs, *_ = envs.step(np.array([0, 1]))
        assert (obs[:, [1, 3]] == 0).all() and (obs[:, [0, 2]] != 0).any()
    pendulum = make_envs("PendulumNoVel-v1", 1)
    obs, _ = pendulum.reset(seed=0)
    assert obs.shape == (1, 3) and obs[0, 2] == 0.0


def test_bound_context_is_unchanged_for_agents_without_memory() -> None:
    agent = PPO()
    agent.bind(
        EnvContext(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), 1, torch.device("cpu"), agent.reward_streams())
    )
    assert agent.carried_state() == {} and agent.data_spec().sequence_needs == frozenset()


def test_a_rollout_worker_starts_each_round_from_the_state_it_carried() -> None:
    import functools

    from rl_agents.training.workers import RolloutWorker

    def agents() -> list:
        return [PPO(memory="lstm", memory_size=8)]

    learner = Trainer(make_envs("CartPoleNoVel-v1", 4), agents(), seed=3, num_steps=8, num_minibatches=2)
    worker = RolloutWorker(
        functools.partial(make_envs, "CartPoleNoVel-v1", 2),
        agents,
        index=0,
        seed=3,
        schedule=dict(vars(learner.schedule)),
        learner_num_envs=4,
    )
    states = {agent.name: agent.state_dict() for agent in learner.agents}
    first = worker.collect(states, restarts=0, global_step=0, total_steps=None)
    assert first.batch[EPISODE_START][0].all()  # the first round starts every episode
    carried = {name: value.clone() for name, value in worker.collector.memory.values.items()}
    second = worker.collect(states, restarts=0, global_step=16, total_steps=None)
    assert not second.batch[EPISODE_START][0].any()  # the episodes go on: CartPole lasts longer than 8 steps
    for name, value in carried.items():
        torch.testing.assert_close(torch.as_tensor(second.batch[carried_key(name)][0]), value, rtol=0, atol=0)
