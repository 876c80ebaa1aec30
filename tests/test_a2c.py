"""A2C: loss terms and n-step returns against hand-computed numbers, SB3 defaults, composition with
RND, and a seeded CartPole learning run."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rl_agents.agents.a2c import A2C
from rl_agents.agents.rnd import RND
from rl_agents.core.agent import EXTRINSIC, CompositionError, EnvContext, RewardStream
from rl_agents.training.trainer import Trainer
from tests.helpers import bind_standalone

VECTOR_OBS = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
INTRINSIC = RewardStream("intrinsic", gamma=0.9, episodic=False, coef=0.5)


def bind_with_streams(agent: A2C, streams: tuple[RewardStream, ...]) -> A2C:
    agent.bind(
        EnvContext(
            VECTOR_OBS, gym.spaces.Discrete(2), 1, torch.device("cpu"), streams, torch.Generator().manual_seed(0)
        )
    )
    return agent


def two_stream_a2c(**kwargs) -> A2C:
    return bind_with_streams(A2C(**kwargs), (RewardStream(EXTRINSIC, gamma=kwargs.get("gamma", 0.99)), INTRINSIC))


# ---------------------------------------------------------------------------- loss


def test_loss_terms_against_hand_computed_numbers() -> None:
    """pi = [0.25, 0.75] and values (2, -1) for every observation; two reward streams."""
    a2c = two_stream_a2c(ent_coef=0.01, vf_coef=0.5)
    with torch.no_grad():
        for param in a2c.parameters():
            param.zero_()
        a2c.actor[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))
        a2c.critic[-1].bias.copy_(torch.tensor([2.0, -1.0]))
    minibatch = {
        "obs": torch.zeros(3, 2),
        "action": torch.tensor([1, 1, 0]),
        "advantages": torch.tensor([2.0, -1.0, 1.0]),
        "returns": torch.tensor([[3.0, -1.0], [2.0, 1.0], [0.0, -1.0]]),
    }
    terms, metrics = a2c.loss(minibatch)
    terms = {name: term.detach() for name, term in terms.items()}
    log_p1, log_p0 = math.log(0.75), math.log(0.25)
    # -(2 log .75 - 1 log .75 + 1 log .25) / 3
    assert float(terms["policy"]) == pytest.approx(-(2 * log_p1 - log_p1 + log_p0) / 3, rel=1e-5)
    # extrinsic: ((2-3)^2 + 0 + (2-0)^2) / 3 = 5/3; intrinsic: (0 + (-1-1)^2 + 0) / 3 = 4/3; no factor 1/2
    assert float(terms["value"]) == pytest.approx(0.5 * (5 / 3 + 4 / 3), rel=1e-5)
    assert float(metrics["value_loss/extrinsic"]) == pytest.approx(5 / 3, rel=1e-5)
    assert float(metrics["value_loss/intrinsic"]) == pytest.approx(4 / 3, rel=1e-5)
    entropy = -(0.25 * log_p0 + 0.75 * log_p1)
    assert float(terms["entropy"]) == pytest.approx(-0.01 * entropy, rel=1e-5)
    assert set(terms) == set(a2c.loss_terms())


def test_advantage_normalization_is_off_by_default_and_applied_when_asked() -> None:
    a2c = bind_standalone(A2C(), VECTOR_OBS, gym.spaces.Discrete(2))
    with torch.no_grad():
        for param in a2c.parameters():
            param.zero_()  # pi = [0.5, 0.5]: log-probability log 0.5 for every action
    minibatch = {
        "obs": torch.zeros(2, 2),
        "action": torch.tensor([0, 1]),
        "advantages": torch.tensor([10.0, 30.0]),
        "returns": torch.zeros(2, 1),
    }
    raw, _ = a2c.loss(minibatch)
    assert float(raw["policy"].detach()) == pytest.approx(-20.0 * math.log(0.5), rel=1e-5)
    a2c.normalize_advantage = True
    normalized, _ = a2c.loss(minibatch)  # mean zero after normalization
    assert float(normalized["policy"].detach()) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------- n-step returns

GAMMA = 0.5
REWARDS = [1.0, 2.0, 4.0]
STORED_VALUES = [1.0, 2.0, 3.0]  # with lambda = 1 they cancel out of the returns except as bootstraps
NEXT_OBS = [[10.0, 0.0], [20.0, 5.0], [40.0, 10.0]]  # V_extrinsic(x) = x[0], V_intrinsic(x) = x[1]


def linear_critic(a2c: A2C, num_streams: int) -> A2C:
    """Replace the critic by V_i(x) = x[i], so each next observation has a known value."""
    critic = nn.Linear(2, num_streams)
    with torch.no_grad():
        critic.weight.copy_(torch.eye(2)[:num_streams])
        critic.bias.zero_()
    a2c.critic = critic
    return a2c


def rollout(
    terminated: list[bool], truncated: list[bool], intrinsic: list[float] | None = None
) -> dict[str, torch.Tensor]:
    """A [T=3, N=1] batch with same-step autoreset semantics (every step valid)."""

    def column(values: list, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype).reshape(3, 1)

    batch = {
        "obs": torch.zeros(3, 1, 2),
        "next_obs": torch.tensor(NEXT_OBS).reshape(3, 1, 2),
        "action": torch.zeros(3, 1, dtype=torch.long),
        "values": column(STORED_VALUES).unsqueeze(-1),
        "terminated": column(terminated, torch.bool),
        "truncated": column(truncated, torch.bool),
        "valid": torch.ones(3, 1, dtype=torch.bool),
        "reward/extrinsic": column(REWARDS),
    }
    if intrinsic is not None:
        batch["values"] = torch.cat([batch["values"], torch.full((3, 1, 1), 0.5)], dim=-1)
        batch["reward/intrinsic"] = column(intrinsic)
    return batch


@pytest.mark.parametrize(
    ("terminated", "truncated", "expected"),
    [
        # no episode end: R2 = 4 + .5 V(next_obs[2]) = 24, R1 = 2 + .5 * 24 = 14, R0 = 1 + .5 * 14 = 8
        ([False, False, False], [False, False, False], [8.0, 14.0, 24.0]),
        # truncated at 1 (bootstrap V(next_obs[1]) = 20), terminated at 2 (no bootstrap):
        # R2 = 4, R1 = 2 + .5 * 20 = 12, R0 = 1 + .5 * 12 = 7
        ([False, False, True], [False, True, False], [7.0, 12.0, 4.0]),
        # terminated at 0, truncated at 1, last step bootstraps from V(next_obs[2]) = 40:
        # R0 = 1, R1 = 2 + .5 * 20 = 12, R2 = 4 + .5 * 40 = 24
        ([True, False, False], [False, True, False], [1.0, 12.0, 24.0]),
    ],
)
def test_lambda_one_gives_discounted_n_step_returns(
    terminated: list[bool], truncated: list[bool], expected: list[float]
) -> None:
    a2c = linear_critic(bind_standalone(A2C(gamma=GAMMA), VECTOR_OBS, gym.spaces.Discrete(2)), num_streams=1)
    assert a2c.gae_lambda == 1.0
    batch = rollout(terminated, truncated)
    a2c.preprocess(batch)
    assert batch["returns"][:, 0, 0].tolist() == pytest.approx(expected)
    assert batch["advantages"][:, 0].tolist() == pytest.approx([r - v for r, v in zip(expected, STORED_VALUES)])


def test_each_stream_gets_its_own_discount_and_episodic_setting_and_coef() -> None:
    a2c = linear_critic(two_stream_a2c(gamma=GAMMA), num_streams=2)
    # truncated at 1, terminated at 2: the extrinsic stream stops at the terminal state, the
    # non-episodic intrinsic one (gamma 0.9) bootstraps through it from V_int(next_obs[2]) = 10.
    batch = rollout([False, False, True], [False, True, False], intrinsic=[1.0, 0.0, 2.0])
    a2c.preprocess(batch)
    extrinsic = [7.0, 12.0, 4.0]
    intrinsic = [1.0 + 0.9 * 4.5, 0.0 + 0.9 * 5.0, 2.0 + 0.9 * 10.0]
    assert batch["returns"][:, 0, 0].tolist() == pytest.approx(extrinsic)
    assert batch["returns"][:, 0, 1].tolist() == pytest.approx(intrinsic)
    expected_adv = [(re - v) + 0.5 * (ri - 0.5) for re, ri, v in zip(extrinsic, intrinsic, STORED_VALUES)]
    assert batch["advantages"][:, 0].tolist() == pytest.approx(expected_adv)


# ---------------------------------------------------------------------------- defaults and spaces


def test_sb3_defaults_and_one_constant_rate_gradient_step_per_rollout() -> None:
    a2c = A2C()
    assert (a2c.lr, a2c.gamma, a2c.gae_lambda, a2c.ent_coef, a2c.vf_coef, a2c.normalize_advantage) == (
        7e-4,
        0.99,
        1.0,
        0.0,
        0.5,
        False,
    )
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    trainer = Trainer(envs, [a2c])
    assert vars(trainer.schedule) == {
        "num_steps": 5,
        "num_epochs": 1,
        "num_minibatches": 1,
        "max_grad_norm": 0.5,
        "anneal_lr": False,
        "sequence_minibatches": False,
    }
    trainer.train(3 * 5 * 2, progress=False)
    first_param = trainer.optimizer.param_groups[0]["params"][0]
    assert int(trainer.optimizer.state[first_param]["step"]) == 3
    assert trainer.optimizer.param_groups[0]["lr"] == 7e-4
    # separate actor and critic (64, 64) tanh networks
    assert [m.out_features for m in a2c.actor if isinstance(m, nn.Linear)] == [64, 64, 2]
    assert [m.out_features for m in a2c.critic if isinstance(m, nn.Linear)] == [64, 64, 1]
    assert isinstance(a2c.actor[1], nn.Tanh) and not set(a2c.actor.parameters()) & set(a2c.critic.parameters())


@pytest.mark.parametrize(
    "action_space",
    [gym.spaces.Discrete(3, start=1), gym.spaces.MultiDiscrete([2, 3]), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)],
)
def test_act_gives_actions_in_space_and_one_value_per_stream(action_space: gym.Space) -> None:
    a2c = bind_standalone(A2C(), gym.spaces.Box(-1, 1, (4,), np.float32), action_space, num_envs=5)
    outputs = a2c.act(torch.randn(5, 4) * 3)
    assert set(outputs) == {"action", "values"} and outputs["values"].shape == (5, 1)
    env_actions = a2c.env_action(outputs).numpy()
    assert all(action_space.contains(a.astype(action_space.dtype)) for a in env_actions)
    _, values = a2c.actor_critic(torch.randn(5, 4))
    assert values.shape == (5, 1)


def test_image_observations_use_a_cnn() -> None:
    a2c = bind_standalone(A2C(), gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), num_envs=2)
    outputs = a2c.act(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))
    assert outputs["action"].shape == (2,) and outputs["values"].shape == (2, 1)


@pytest.mark.parametrize("action_space", [gym.spaces.MultiBinary(3), gym.spaces.Tuple((gym.spaces.Discrete(2),))])
def test_unsupported_action_space_is_a_composition_error_naming_the_agent(action_space: gym.Space) -> None:
    with pytest.raises(CompositionError, match="'a2c'"):
        bind_standalone(A2C(), VECTOR_OBS, action_space)


# ---------------------------------------------------------------------------- composition


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_a2c_with_rnd_learns_an_intrinsic_value_and_neither_file_imports_the_other() -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    a2c, rnd = A2C(), RND()
    trainer = Trainer(envs, [a2c, rnd], seed=3)
    assert [stream.name for stream in a2c.streams] == ["extrinsic", "intrinsic"]
    assert a2c.critic[-1].out_features == 2
    assert [agent.name for agent in trainer.composition.order] == ["rnd", "a2c"]
    trainer.train(4 * 5 * 4, progress=False)
    assert trainer.num_updates == 4
    for key in ("a2c/value_loss/intrinsic", "a2c/loss/value", "rnd/loss/predictor"):
        assert math.isfinite(trainer.metrics[key]), key
    assert trainer.metrics["rnd/intrinsic_reward_mean"] > 0.0

    agents_dir = Path(__file__).resolve().parents[1] / "rl_agents" / "agents"
    a2c_imports = _imported_modules(agents_dir / "a2c.py")
    assert not {m for m in a2c_imports if m.startswith(("rl_agents.agents.ppo", "rl_agents.agents.rnd"))}
    for other in ("rnd.py", "ppo.py"):
        assert not {m for m in _imported_modules(agents_dir / other) if "a2c" in m}


# ---------------------------------------------------------------------------- learning


def _reached(threshold: float, window: int = 20):
    def check(trainer: Trainer) -> bool:
        returns = trainer.episodes.returns
        return len(returns) >= window and float(np.mean(returns[-window:])) >= threshold

    return check


@pytest.mark.learning
def test_a2c_reaches_200_on_cartpole_within_200k_steps() -> None:
    envs = gym.make_vec("CartPole-v1", num_envs=8, vectorization_mode="sync")
    trainer = Trainer(envs, [A2C()], seed=1)
    trainer.episodes.window = None  # every episode: the assertions read the first ones
    trainer.train(200_000, progress=False, stop_when=_reached(200.0))
    last = float(np.mean(trainer.episodes.returns[-20:]))
    assert trainer.global_step <= 200_000
    assert last >= 200.0, f"last-20 mean {last} after {trainer.global_step} steps"
    assert np.mean(trainer.episodes.returns[:20]) < 50.0  # it started from a policy that could not balance
