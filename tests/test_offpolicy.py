"""Off-policy training: the replay schedule in the Trainer, DQN's and SAC's math against hand-computed
references, target-network updates, and checkpoints that carry the replay buffer."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rl_agents import DQN, PPO, RND, SAC, CompositionError, ReplaySchedule, Trainer
from rl_agents.core.agent import (
    ACTION,
    BOOTSTRAP_OBS,
    N_STEPS,
    OBS,
    PRIORITY,
    SAMPLE_WEIGHT,
    TERMINATED,
    RewardStream,
)
from tests.helpers import bind_standalone


def cartpole(num_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def pendulum(num_envs: int = 1) -> gym.vector.VectorEnv:
    return gym.make_vec("Pendulum-v1", num_envs=num_envs, vectorization_mode="sync")


class TableQ(nn.Module):
    """Q-values looked up by the integer in obs[:, 0]: table[row] is [actions, streams]."""

    def __init__(self, table: list[list[list[float]]]):
        super().__init__()
        self.table = torch.tensor(table)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.table[obs[:, 0].long()]


def tabular_dqn(online, target, *, double=True, streams=None) -> DQN:
    agent = DQN(double=double, gamma=0.5)
    space = gym.spaces.Box(-10, 10, (1,), np.float32)
    if streams is not None:
        agent.reward_streams = lambda: streams  # type: ignore[method-assign]
    bind_standalone(agent, space, gym.spaces.Discrete(2))
    agent.q_network, agent.target_network = TableQ(online), TableQ(target)
    return agent


# ---------------------------------------------------------------------------------------------- DQN
def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_network() -> None:
    # next state 1: online prefers action 0, target prefers action 1
    online = [[[0.0], [0.0]], [[5.0], [1.0]]]
    target = [[[0.0], [0.0]], [[2.0], [7.0]]]
    batch = {
        BOOTSTRAP_OBS: torch.tensor([[1.0], [1.0]]),
        "reward/extrinsic": torch.tensor([1.0, 1.0]),
        TERMINATED: torch.tensor([False, True]),
        N_STEPS: torch.tensor([1.0, 1.0]),
    }
    double = tabular_dqn(online, target, double=True).td_target(batch)
    assert double[:, 0].tolist() == pytest.approx([1.0 + 0.5 * 2.0, 1.0])  # online argmax 0 -> target 2.0
    vanilla = tabular_dqn(online, target, double=False).td_target(batch)
    assert vanilla[:, 0].tolist() == pytest.approx([1.0 + 0.5 * 7.0, 1.0])  # max of the target


def test_dqn_target_uses_gamma_to_the_n_and_bootstraps_non_episodic_streams_through_terminals() -> None:
    streams = (RewardStream("extrinsic", gamma=0.5), RewardStream("bonus", gamma=0.9, episodic=False, coef=0.1))
    online = [[[0.0, 0.0], [0.0, 0.0]], [[3.0, 10.0], [2.0, 50.0]]]  # weighted: 4.0 vs 7.0 -> action 1
    target = [[[0.0, 0.0], [0.0, 0.0]], [[8.0, 20.0], [4.0, 30.0]]]
    agent = tabular_dqn(online, target, streams=streams)
    batch = {
        BOOTSTRAP_OBS: torch.tensor([[1.0]]),
        "reward/extrinsic": torch.tensor([1.0]),
        "reward/bonus": torch.tensor([2.0]),
        TERMINATED: torch.tensor([True]),
        N_STEPS: torch.tensor([3.0]),
    }
    target_values = agent.td_target(batch)[0].tolist()
    assert target_values == pytest.approx([1.0, 2.0 + 0.9**3 * 30.0])


def test_dqn_huber_loss_on_the_taken_action() -> None:
    online = [[[1.0], [4.0]], [[0.0], [0.0]]]
    target = [[[0.0], [0.0]], [[0.0], [0.0]]]
    agent = tabular_dqn(online, target)
    batch = {
        OBS: torch.tensor([[0.0], [0.0]]),
        ACTION: torch.tensor([0, 1]),
        BOOTSTRAP_OBS: torch.tensor([[1.0], [1.0]]),
        "reward/extrinsic": torch.tensor([1.5, 1.0]),
        TERMINATED: torch.tensor([True, True]),
        N_STEPS: torch.tensor([1.0, 1.0]),
        SAMPLE_WEIGHT: torch.tensor([1.0, 1.0]),
    }
    terms, _ = agent.loss(batch)
    # errors 0.5 (quadratic: 0.125) and 3.0 (linear: 2.5)
    assert float(terms["td"]) == pytest.approx((0.125 + 2.5) / 2)
    assert batch[PRIORITY].tolist() == pytest.approx([0.5, 3.0])  # |TD error|, for a prioritized sampler
    weighted, _ = agent.loss(batch | {SAMPLE_WEIGHT: torch.tensor([1.0, 0.5])})
    assert float(weighted["td"]) == pytest.approx((0.125 + 0.5 * 2.5) / 2)


def test_epsilon_decays_linearly_then_stays() -> None:
    agent = DQN(initial_epsilon=1.0, final_epsilon=0.1, exploration_fraction=0.5)
    agent.set_progress(0, 1000)
    assert agent.epsilon == pytest.approx(1.0)
    agent.set_progress(250, 1000)
    assert agent.epsilon == pytest.approx(0.55)
    agent.set_progress(900, 1000)
    assert agent.epsilon == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------- SAC
def bound_sac(**kwargs) -> SAC:
    agent = SAC(hidden=(8, 8), **kwargs)
    return bind_standalone(agent, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Box(-2, 2, (2,), np.float32))


def test_squashed_gaussian_log_prob_matches_torch_distributions() -> None:
    agent = bound_sac()
    obs = torch.randn(5, 3)
    generator = torch.Generator().manual_seed(1)
    action, log_prob = agent.actor.sample(obs, generator)
    mean, log_std = agent.actor(obs)
    reference = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()), [torch.distributions.transforms.TanhTransform()]
    )
    expected = reference.log_prob(action.clamp(-0.999999, 0.999999)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-3)
    assert action.abs().max() < 1


def test_sac_temperature_loss_and_its_gradient() -> None:
    agent = bound_sac(alpha=0.5)
    batch = {
        OBS: torch.randn(4, 3),
        ACTION: torch.rand(4, 2) * 2 - 1,
        BOOTSTRAP_OBS: torch.randn(4, 3),
        "reward/extrinsic": torch.ones(4),
        TERMINATED: torch.zeros(4, dtype=torch.bool),
        N_STEPS: torch.ones(4),
        SAMPLE_WEIGHT: torch.ones(4),
    }
    state = agent.generator.get_state()
    terms, metrics = agent.loss(batch)
    # replay the two draws the loss made (next actions, then policy actions) to get its log-probs
    agent.generator.set_state(state)
    agent.actor.sample(batch[BOOTSTRAP_OBS], agent.generator)
    _, log_prob = agent.actor.sample(batch[OBS], agent.generator)
    expected = -math.log(0.5) * float((log_prob.detach() + agent.target_entropy).mean())
    assert float(terms["alpha"].detach()) == pytest.approx(expected, rel=1e-5)
    assert agent.target_entropy == -2.0
    terms["alpha"].backward()
    # d/d log_alpha = -(log pi + target entropy): alpha grows when the policy's entropy is below target
    assert float(agent.log_alpha.grad) == pytest.approx(
        -float((log_prob.detach() + agent.target_entropy).mean()), rel=1e-5
    )
    assert metrics["alpha"] == pytest.approx(0.5)


def test_sac_soft_target_hand_computed() -> None:
    agent = bound_sac(alpha=0.25, gamma=0.9)
    for critic, offset in zip(agent.target_critics, (1.0, 3.0)):  # Q1 = 1, Q2 = 3 everywhere -> min 1
        for param in critic.parameters():
            nn.init.zeros_(param)
        critic.net[-1].bias.data.fill_(offset)
    batch = {
        BOOTSTRAP_OBS: torch.randn(2, 3),
        "reward/extrinsic": torch.tensor([1.0, 2.0]),
        TERMINATED: torch.tensor([False, True]),
        N_STEPS: torch.tensor([1.0, 2.0]),
    }
    state = agent.generator.get_state()
    target = agent._soft_target(batch)[:, 0]
    agent.generator.set_state(state)
    _, next_log_prob = agent.actor.sample(batch[BOOTSTRAP_OBS], agent.generator)
    expected_first = 1.0 + 0.9 * (1.0 - 0.25 * float(next_log_prob[0]))
    assert target.tolist() == pytest.approx([expected_first, 2.0], rel=1e-5)


def test_sac_actor_gradient_never_reaches_the_critics() -> None:
    agent = bound_sac()
    obs = torch.randn(6, 3)
    action, log_prob = agent.actor.sample(obs, agent.generator)
    (agent.alpha * log_prob - agent._policy_value(obs, action)).mean().backward()
    assert all(p.grad is None for p in agent.critics.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())


def test_sac_env_action_rescales_to_the_bounds() -> None:
    agent = bound_sac()
    out = agent.env_action({ACTION: torch.tensor([[-1.0, 1.0], [0.0, 0.5]])})
    assert out.tolist() == [[-2.0, 2.0], [0.0, 1.0]]


# ---------------------------------------------------------------------------------------------- Trainer
def test_replay_schedule_comes_from_the_acting_agent_and_settings_override_it() -> None:
    trainer = Trainer(cartpole(), [DQN()], seed=0, batch_size=16, learning_starts=40)
    assert isinstance(trainer.schedule, ReplaySchedule) and trainer.learner.off_policy
    assert (trainer.schedule.batch_size, trainer.schedule.learning_starts, trainer.schedule.train_frequency) == (
        16,
        40,
        4,
    )
    assert trainer.replay is not None and trainer.replay.capacity == 1_000_000 // 2


def test_on_policy_settings_are_refused_for_an_off_policy_agent_and_vice_versa() -> None:
    with pytest.raises(CompositionError, match="'num_epochs' does not apply: agent 'dqn' trains off-policy"):
        Trainer(cartpole(), [DQN()], num_epochs=3)
    with pytest.raises(CompositionError, match="'buffer_size' does not apply: agent 'ppo' trains on-policy"):
        Trainer(cartpole(), [PPO()], buffer_size=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_epoch'"):
        Trainer(cartpole(), [PPO()], num_epoch=3)
    with pytest.raises(ValueError, match="tau must be in"):
        Trainer(cartpole(), [DQN()], tau=0.0)


def test_agents_refuse_action_spaces_they_cannot_act_in() -> None:
    with pytest.raises(CompositionError, match="'dqn' needs a Discrete action space"):
        Trainer(pendulum(), [DQN()])
    with pytest.raises(CompositionError, match="'sac' needs a float Box action space"):
        Trainer(cartpole(), [SAC()])
    with pytest.raises(CompositionError, match="both want to act"):
        Trainer(pendulum(), [SAC(), PPO()])


def test_random_actions_and_no_training_before_learning_starts_then_the_schedule() -> None:
    trainer = Trainer(
        cartpole(num_envs=2), [DQN()], seed=0, learning_starts=40, train_frequency=4, gradient_steps=3, batch_size=8
    )
    before = [p.clone() for p in trainer.acting.q_network.parameters()]
    trainer.train(40, progress=False)  # 20 vector steps = 40 env steps
    assert trainer.learner.total_gradient_steps == 0
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.acting.q_network.parameters()))
    assert len(trainer.replay) == 40
    trainer.train(80, progress=False)  # 5 more training phases of 3 gradient steps
    assert trainer.learner.total_gradient_steps == 15
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.acting.q_network.parameters()))


def test_hard_and_polyak_target_updates() -> None:
    trainer = Trainer(pendulum(), [SAC(hidden=(8,))], seed=0)
    online = list(trainer.acting.critics.parameters())
    target = list(trainer.acting.target_critics.parameters())
    assert all(torch.equal(a, b) for a, b in zip(online, target))  # targets start as copies
    with torch.no_grad():
        for param in online:
            param.add_(1.0)
    old_target = [p.clone() for p in target]
    trainer.learner.update_targets(0.25)
    for new, old, source in zip(target, old_target, online):
        assert torch.allclose(new, 0.75 * old + 0.25 * source)
    trainer.learner.update_targets(1.0)
    assert all(torch.equal(a, b) for a, b in zip(online, target))


def test_sac_polyak_updates_every_gradient_step_during_training() -> None:
    trainer = Trainer(pendulum(), [SAC(hidden=(8,))], seed=0, learning_starts=10, batch_size=4)
    trainer.train(12, progress=False)
    assert trainer.learner.total_gradient_steps == 2
    online = list(trainer.acting.critics.parameters())
    target = list(trainer.acting.target_critics.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(online, target))
    assert all(torch.allclose(a, b, atol=0.05) for a, b in zip(online, target))  # moved by tau 0.005 only


@pytest.mark.parametrize(
    ("make_envs", "agents"),
    [(cartpole, lambda: [DQN(), RND()]), (pendulum, lambda: [SAC(hidden=(16,)), RND()])],
    ids=["dqn+rnd", "sac+rnd"],
)
def test_off_policy_learners_train_with_an_exploration_bonus(make_envs, agents) -> None:
    trainer = Trainer(make_envs(), agents(), seed=0, learning_starts=64, batch_size=32, log_interval=64)
    trainer.train(300, progress=False)
    assert [s.name for s in trainer.learner.streams] == ["extrinsic", "intrinsic"]
    assert "reward/intrinsic" in trainer.replay.data
    intrinsic = trainer.replay.data["reward/intrinsic"][: trainer.replay.size]
    assert intrinsic.abs().sum() > 0  # the bonus rewards were stored with the transitions
    assert math.isfinite(trainer.metrics["rnd/loss/predictor"])
    assert trainer.learner.total_gradient_steps > 0


def test_checkpoint_carries_the_replay_buffer_and_resumes_identically(tmp_path) -> None:
    def build() -> Trainer:
        return Trainer(
            cartpole(), [DQN()], seed=3, learning_starts=32, batch_size=16, train_frequency=2, target_update_interval=5
        )

    original = build()
    original.train(100, progress=False)
    path = original.save(tmp_path)
    restored = build()
    restored.load_state(path)
    assert (
        restored.replay.size == original.replay.size
        and restored.learner.total_gradient_steps == original.learner.total_gradient_steps
    )
    for key in original.replay.data:
        assert torch.equal(restored.replay.data[key], original.replay.data[key])
    # Same data, same generator, same counters: the next gradient steps are identical.
    for trainer in (original, restored):
        trainer.learner._optimize_replay(trainer.global_step, None, "the next update")
    for a, b in zip(original.acting.parameters(), restored.acting.parameters()):
        assert torch.equal(a, b)
