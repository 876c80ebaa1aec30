"""Intrinsic Curiosity Module: losses and reward by hand, action spaces, invalid rows, composition."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import PPO, RND, CompositionError, EnvContext, RewardStream, Trainer
from rl_agents.agents.icm import ICM
from rl_agents.core.agent import ACTION, NEXT_OBS, OBS, VALID

REWARD = "reward/curiosity"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small networks on a shared 2-core machine: extra intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def bound_icm(
    observation_space: gym.Space, action_space: gym.Space | None = None, num_envs: int = 2, seed: int = 0, **kwargs
) -> ICM:
    icm = ICM(**kwargs)
    action_space = gym.spaces.Discrete(2) if action_space is None else action_space
    ctx = EnvContext(
        observation_space=observation_space,
        action_space=action_space,
        num_envs=num_envs,
        device=torch.device("cpu"),
        streams=icm.reward_streams(),
        generator=torch.Generator().manual_seed(seed),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        icm.bind(ctx)
    return icm


def set_linear(layer: torch.nn.Linear, weight: list, bias: list) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def tiny_icm(**kwargs) -> ICM:
    """1-d observations, 1 feature, hidden width 1, weights set so every number can be worked out by hand.

    phi(s) = s; inverse logits = [h, -h] with h = relu(phi + phi'); forward prediction = 0.5 * relu(phi + 2 * [a == 1]).
    """
    icm = bound_icm(
        gym.spaces.Box(-10.0, 10.0, (1,), np.float32),
        num_envs=1,
        feature_dim=1,
        hidden=(),
        head_hidden=1,
        normalize_obs=False,
        **kwargs,
    )
    set_linear(icm.encoder[-1], [[1.0]], [0.0])
    set_linear(icm.inverse_model[0], [[1.0, 1.0]], [0.0])
    set_linear(icm.inverse_model[2], [[1.0], [-1.0]], [0.0, 0.0])
    set_linear(icm.forward_model[0], [[1.0, 0.0, 2.0]], [0.0])  # inputs: phi, one-hot(a)
    set_linear(icm.forward_model[2], [[0.5]], [0.0])
    return icm


# ---------------------------------------------------------------------------------------------- by hand


def test_inverse_and_forward_losses_match_hand_computation():
    icm = tiny_icm()
    rows = {OBS: torch.tensor([[1.0]]), NEXT_OBS: torch.tensor([[2.0]]), ACTION: torch.tensor([1])}
    terms, metrics = icm.loss(rows)
    # phi = 1, phi' = 2. Inverse: h = relu(1 + 2) = 3, logits [3, -3], action 1: -log softmax = log(1 + e^6).
    inverse = math.log1p(math.exp(6.0))
    # Forward: relu(1 * 1 + 2 * 1) = 3, prediction 0.5 * 3 = 1.5, target 2: 0.5 * 0.5^2 = 0.125.
    forward = 0.125
    assert set(terms) == {"inverse", "forward"}
    assert float(terms["inverse"].detach()) == pytest.approx(0.8 * inverse, rel=1e-6)  # (1 - beta), beta 0.2
    assert float(terms["forward"].detach()) == pytest.approx(0.2 * forward, rel=1e-6)
    assert float(metrics["inverse_loss"]) == pytest.approx(inverse, rel=1e-6)
    assert float(metrics["forward_loss"]) == pytest.approx(forward, rel=1e-6)
    assert float(metrics["inverse_accuracy"]) == 0.0  # predicted action 0

    # The target phi(s') is detached: the encoder weight w (phi = w * s) gets the forward gradient only
    # through phi(s): d/dw 0.5 * (0.5 * relu(w * 1 + 2) - w * 2)^2 with s' held = (1.5 - 2) * 0.5 * 1 = -0.25.
    terms["forward"].backward()
    assert float(icm.encoder[-1].weight.grad) == pytest.approx(0.2 * -0.25, rel=1e-6)


def test_reward_is_eta_times_half_squared_forward_error():
    icm = tiny_icm(eta=2.0, normalize_reward=False)
    # T=2, N=1: (s=1, a=1, s'=2) as above, and (s=2, a=0, s'=0): prediction 0.5 * relu(2) = 1, error 1.
    batch = {
        OBS: torch.tensor([[[1.0]], [[2.0]]]),
        NEXT_OBS: torch.tensor([[[2.0]], [[0.0]]]),
        ACTION: torch.tensor([[1], [0]]),
        VALID: torch.ones(2, 1, dtype=torch.bool),
    }
    metrics = icm.preprocess(batch)
    torch.testing.assert_close(batch[REWARD], torch.tensor([[2.0 * 0.125], [2.0 * 0.5]]))
    assert batch[REWARD].dtype == torch.float32
    assert metrics["curiosity_reward_raw_mean"] == pytest.approx((0.25 + 1.0) / 2)


def test_reward_normalization_by_the_non_episodic_return_matches_hand_computation():
    icm = bound_icm(gym.spaces.Box(-10.0, 10.0, (1,), np.float32), num_envs=2, int_gamma=0.5)
    icm.curiosity = lambda obs, action, next_obs: next_obs[:, 0].float()  # raw rewards chosen here

    # T=3, N=2. Env 1's step 1 is invalid (a reset step): no reward, no statistics.
    raw = torch.tensor([[1.0, 2.0], [2.0, 99.0], [4.0, 4.0]])
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    batch = {
        OBS: torch.zeros(3, 2, 1),
        NEXT_OBS: raw.unsqueeze(-1),
        ACTION: torch.zeros(3, 2, dtype=torch.long),
        VALID: valid,
    }
    icm.preprocess(batch)
    # Returns (gamma 0.5, never reset, invalid step skipped): env 0: 1, 2.5, 5.25; env 1: 2, 5.
    returns = np.array([1.0, 2.5, 5.25, 2.0, 5.0])
    prior, total = 1e-4, 5 + 1e-4  # RunningMeanStd starts at mean 0, var 1, count 1e-4
    merged_var = (prior * 1.0 + returns.var() * 5 + returns.mean() ** 2 * prior * 5 / total) / total
    expected = torch.tensor([[1.0, 2.0], [2.0, 0.0], [4.0, 4.0]]) / math.sqrt(merged_var + 1e-8)
    torch.testing.assert_close(batch[REWARD], expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(icm.reward_scaler.running_return, torch.tensor([5.25, 5.0], dtype=torch.float64))
    assert float(icm.obs_rms.count) == pytest.approx(5 + 1e-4)  # the invalid row's 99 was not counted
    torch.testing.assert_close(icm.obs_rms.mean, torch.tensor([13.0 / (5 + 1e-4)], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------- action spaces


@pytest.mark.parametrize(
    ("action_space", "actions", "encoded", "zero_prediction_loss"),
    [
        (gym.spaces.Discrete(3), torch.tensor([2, 0]), [[0, 0, 1], [1, 0, 0]], [math.log(3)] * 2),
        # Per-dimension cross-entropies, summed: log 3 + log 2 for uniform logits.
        (
            gym.spaces.MultiDiscrete([3, 2]),
            torch.tensor([[1, 0], [2, 1]]),
            [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1]],
            [math.log(6)] * 2,
        ),
        # Clipped to the bounds (what the env executed), MSE against a zero prediction.
        (
            gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            torch.tensor([[5.0, 0.5], [-0.2, -3.0]]),
            [[1.0, 0.5], [-0.2, -1.0]],
            [(1 + 0.25) / 2, (0.04 + 1) / 2],
        ),
    ],
    ids=["discrete", "multidiscrete", "box"],
)
def test_action_spaces_encode_and_score_actions(action_space, actions, encoded, zero_prediction_loss):
    icm = bound_icm(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), action_space)
    torch.testing.assert_close(icm.actions.encode(actions), torch.tensor(encoded, dtype=torch.float32))
    assert icm.inverse_model[-1].out_features == len(encoded[0])
    assert icm.forward_model[0].in_features == icm.num_features + len(encoded[0])
    # With the inverse model's output layer zeroed, its prediction is zero whatever the input.
    set_linear(icm.inverse_model[-1], [[0.0] * icm.head_hidden] * len(encoded[0]), [0.0] * len(encoded[0]))
    rows = {OBS: torch.randn(2, 4), NEXT_OBS: torch.randn(2, 4), ACTION: actions}
    prediction = icm.predict_action(*icm.encode_pair(rows[OBS], rows[NEXT_OBS]))
    torch.testing.assert_close(
        icm.actions.inverse_loss(prediction, actions).detach(), torch.tensor(zero_prediction_loss)
    )
    _, metrics = icm.loss(rows)
    assert float(metrics["inverse_loss"]) == pytest.approx(sum(zero_prediction_loss) / 2, rel=1e-6)


@pytest.mark.parametrize(
    "action_space",
    [gym.spaces.Discrete(4, start=1), gym.spaces.MultiDiscrete([3, 2, 2]), gym.spaces.Box(-2.0, 2.0, (3,), np.float32)],
    ids=["discrete", "multidiscrete", "box"],
)
def test_losses_and_rewards_equal_a_direct_recomputation(action_space):
    obs_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    icm = bound_icm(obs_space, action_space, num_envs=3, normalize_reward=False, eta=0.5)
    action_space.seed(0)
    T, N = 4, 3
    generator = torch.Generator().manual_seed(0)
    obs, next_obs = torch.randn(T, N, 5, generator=generator), torch.randn(T, N, 5, generator=generator)
    actions = torch.as_tensor(np.stack([[action_space.sample() for _ in range(N)] for _ in range(T)]))
    if isinstance(action_space, gym.spaces.Discrete):
        actions = actions - action_space.start  # stored actions are indices counted from 0
    batch = {OBS: obs, NEXT_OBS: next_obs, ACTION: actions, VALID: torch.ones(T, N, dtype=torch.bool)}
    icm.preprocess(batch)

    # Direct recomputation, with the statistics preprocess just updated.
    def phi(x: torch.Tensor) -> torch.Tensor:
        mean, std = icm.obs_rms.mean.float(), (icm.obs_rms.var + 1e-8).sqrt().float()
        return icm.encoder(((x - mean) / std).clamp(-5, 5))

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(T * N, *x.shape[2:])

    phi_s, phi_next = phi(flat(obs)), phi(flat(next_obs))
    a = flat(actions)
    if isinstance(action_space, gym.spaces.Discrete):
        one_hot = torch.nn.functional.one_hot(a.long(), 4).float()
        inverse = torch.nn.functional.cross_entropy(icm.inverse_model(torch.cat([phi_s, phi_next], -1)), a.long())
    elif isinstance(action_space, gym.spaces.MultiDiscrete):
        one_hot = torch.cat(
            [torch.nn.functional.one_hot(a[:, i].long(), n).float() for i, n in enumerate([3, 2, 2])], -1
        )
        logits = icm.inverse_model(torch.cat([phi_s, phi_next], -1)).split([3, 2, 2], -1)
        inverse = sum(torch.nn.functional.cross_entropy(logit, a[:, i].long()) for i, logit in enumerate(logits))
    else:
        one_hot = a.float().clamp(-2.0, 2.0)
        inverse = (icm.inverse_model(torch.cat([phi_s, phi_next], -1)) - one_hot).square().mean()
    prediction = icm.forward_model(torch.cat([phi_s, one_hot], -1))
    per_row = 0.5 * (prediction - phi_next).square().sum(-1)
    torch.testing.assert_close(batch[REWARD], (0.5 * per_row).reshape(T, N).detach())

    # Minibatch rows in any order (as sampled from a replay buffer) give the same loss.
    order = torch.randperm(T * N, generator=generator)
    rows = {key: flat(batch[key])[order] for key in (OBS, NEXT_OBS, ACTION)}
    terms, _ = icm.loss(rows)
    torch.testing.assert_close(terms["inverse"].detach(), 0.8 * inverse.detach())
    torch.testing.assert_close(terms["forward"].detach(), 0.2 * per_row.mean().detach())


# ---------------------------------------------------------------------------------------------- invalid rows


def test_invalid_steps_get_zero_reward_and_move_no_statistics():
    icm = bound_icm(gym.spaces.Box(-1.0, 1.0, (3,), np.float32), num_envs=2, normalize_reward=False)
    generator = torch.Generator().manual_seed(0)
    obs, next_obs = torch.randn(4, 2, 3, generator=generator), torch.randn(4, 2, 3, generator=generator)
    next_obs[2, 1] = 1e6  # an invalid row with an absurd value
    valid = torch.ones(4, 2, dtype=torch.bool)
    valid[2, 1] = False
    batch = {OBS: obs, NEXT_OBS: next_obs, ACTION: torch.zeros(4, 2, dtype=torch.long), VALID: valid}
    icm.preprocess(batch)
    assert batch[REWARD][2, 1] == 0.0
    assert torch.all(batch[REWARD][valid] > 0)
    torch.testing.assert_close(icm.obs_rms.mean, next_obs[valid].double().mean(0) * 7 / (7 + 1e-4))
    assert float(icm.reward_scaler.stats.count) == pytest.approx(1e-4)  # normalization off: untouched

    icm = bound_icm(gym.spaces.Box(-1.0, 1.0, (3,), np.float32), num_envs=2)
    icm.preprocess(batch)
    assert batch[REWARD][2, 1] == 0.0
    assert float(icm.reward_scaler.stats.count) == pytest.approx(7 + 1e-4)  # 7 valid returns


def test_invalid_minibatch_rows_are_left_out_of_the_loss():
    icm = bound_icm(gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Discrete(3))
    generator = torch.Generator().manual_seed(1)
    rows = {
        OBS: torch.randn(6, 3, generator=generator),
        NEXT_OBS: torch.randn(6, 3, generator=generator),
        ACTION: torch.tensor([0, 1, 2, 0, 1, 2]),
    }
    valid = torch.tensor([True, False, True, True, False, True])
    masked, _ = icm.loss({**rows, VALID: valid})
    subset, _ = icm.loss({key: value[valid] for key, value in rows.items()})
    for name in ("inverse", "forward"):
        torch.testing.assert_close(masked[name].detach(), subset[name].detach())


# ---------------------------------------------------------------------------------------------- learning signal


def test_training_lowers_curiosity_on_seen_transitions_more_than_on_novel_ones():
    space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
    space.seed(0)
    icm = bound_icm(space, gym.spaces.Discrete(2), num_envs=32)

    def transitions() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        obs = torch.as_tensor(np.stack([space.sample() for _ in range(32)]))
        action = torch.as_tensor(np.arange(32) % 2)
        next_obs = obs.roll(1, -1) * torch.where(action == 1, 1.0, -1.0).unsqueeze(-1)  # deterministic dynamics
        return obs, action, next_obs

    seen, novel = transitions(), transitions()
    icm.preprocess(
        {
            OBS: torch.stack([seen[0], novel[0]]),
            ACTION: torch.stack([seen[1], novel[1]]),
            NEXT_OBS: torch.stack([seen[2], novel[2]]),
            VALID: torch.ones(2, 32, dtype=torch.bool),
        }
    )
    optimizer = torch.optim.Adam(icm.parameters(), lr=icm.lr)
    with torch.no_grad():
        seen_before, novel_before = float(icm.curiosity(*seen).mean()), float(icm.curiosity(*novel).mean())
    rows = {OBS: seen[0], ACTION: seen[1], NEXT_OBS: seen[2]}
    first, _ = icm.loss(rows)
    for _ in range(200):
        terms, _ = icm.loss(rows)
        optimizer.zero_grad()
        sum(terms.values()).backward()
        optimizer.step()
    assert float(terms["inverse"].detach()) < 0.2 * float(
        first["inverse"].detach()
    )  # the action is recoverable from (s, s')
    with torch.no_grad():
        seen_after, novel_after = float(icm.curiosity(*seen).mean()), float(icm.curiosity(*novel).mean())
    assert seen_after < 0.2 * seen_before, (seen_before, seen_after)
    assert novel_after / novel_before > 3.0 * seen_after / seen_before, (novel_before, novel_after)


# ---------------------------------------------------------------------------------------------- declarations


def test_streams_spec_networks_and_checkpointed_statistics():
    icm = ICM(int_gamma=0.9, int_coef=0.5)
    assert icm.reward_streams() == (RewardStream("curiosity", gamma=0.9, episodic=False, coef=0.5),)
    assert ICM().reward_streams() == (RewardStream("curiosity", gamma=0.99, episodic=False, coef=1.0),)
    assert not ICM.acts and ICM.default_name == "icm" and ICM().lr == 1e-3 and ICM().beta == 0.2 and ICM().eta == 1.0
    icm = bound_icm(gym.spaces.Box(-1.0, 1.0, (4,), np.float32))
    spec = icm.data_spec()
    assert spec.needs == {"obs", "next_obs", "action", "valid"} and spec.provides == {REWARD} and not spec.act_outputs
    assert set(icm.loss_terms()) == {"inverse", "forward"}
    assert icm.num_features == 64
    state = icm.state_dict()
    for key in (
        "obs_rms.mean",
        "obs_rms.var",
        "obs_rms.count",
        "reward_scaler.running_return",
        "reward_scaler.stats.var",
    ):
        assert key in state
    assert all(p.requires_grad for p in icm.parameters())


def test_minigrid_views_use_small_convolutions_and_large_frames_nature_convolutions():
    view = bound_icm(gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7))
    assert [c.kernel_size for c in view.encoder.modules() if isinstance(c, torch.nn.Conv2d)] == [(2, 2)] * 3
    assert view.num_features == 256
    batch = {
        OBS: torch.randint(0, 11, (3, 2, 7, 7, 3), dtype=torch.uint8),
        NEXT_OBS: torch.randint(0, 11, (3, 2, 7, 7, 3), dtype=torch.uint8),
        ACTION: torch.randint(0, 7, (3, 2)),
        VALID: torch.ones(3, 2, dtype=torch.bool),
    }
    view.preprocess(batch)
    assert batch[REWARD].shape == (3, 2) and torch.all(batch[REWARD] > 0)
    terms, _ = view.loss({key: value.reshape(6, *value.shape[2:]) for key, value in batch.items()})
    sum(terms.values()).backward()

    frames = bound_icm(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    convs = [m for m in frames.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size[0], c.stride[0]) for c in convs] == [(8, 4), (4, 2), (3, 1)]


@pytest.mark.parametrize(
    ("observation_space", "action_space"),
    [
        (gym.spaces.Discrete(5), gym.spaces.Discrete(2)),
        (gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.MultiBinary(3)),
        (gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.MultiDiscrete([2, 3], start=[1, 1])),
    ],
    ids=["discrete-obs", "multibinary-actions", "multidiscrete-start"],
)
def test_unsupported_spaces_are_a_composition_error_naming_the_agent(observation_space, action_space):
    with pytest.raises(CompositionError, match="'explorer'"):
        bound_icm(observation_space, action_space, name="explorer")


# ---------------------------------------------------------------------------------------------- composition


def test_ppo_with_icm_has_two_value_heads_and_trains():
    envs = gym.make_vec("CartPole-v1", 4)
    trainer = Trainer(envs, [PPO(), ICM()], seed=3, num_steps=32, num_epochs=2, num_minibatches=2)
    assert [stream.name for stream in trainer.acting.streams] == ["extrinsic", "curiosity"]
    assert trainer.acting.critic[-1].out_features == 2
    assert [agent.name for agent in trainer.composition.order] == ["icm", "ppo"]
    trainer.train(2 * 32 * 4, progress=False)
    envs.close()
    assert trainer.num_updates == 2
    for key in (
        "icm/loss/inverse",
        "icm/loss/forward",
        "icm/curiosity_reward_mean",
        "ppo/value_loss/curiosity",
        "icm/inverse_accuracy",
    ):
        assert math.isfinite(trainer.metrics[key]), key


def test_ppo_rnd_and_icm_compose_with_three_streams():
    envs = gym.make_vec("CartPole-v1", 4)
    trainer = Trainer(envs, [PPO(), RND(), ICM()], seed=3, num_steps=32, num_epochs=2, num_minibatches=2)
    assert [stream.name for stream in trainer.acting.streams] == ["extrinsic", "curiosity", "intrinsic"]
    assert trainer.acting.critic[-1].out_features == 3
    trainer.train(2 * 32 * 4, progress=False)
    envs.close()
    assert trainer.num_updates == 2
    assert "rnd/loss/predictor" in trainer.metrics and "icm/loss/forward" in trainer.metrics
    assert "ppo/value_loss/intrinsic" in trainer.metrics and "ppo/value_loss/curiosity" in trainer.metrics


def test_continuous_actions_train_with_ppo_and_checkpoint_round_trip(tmp_path: Path):
    envs = gym.make_vec("Pendulum-v1", 2)
    trainer = Trainer(envs, [PPO(), ICM()], seed=0, num_steps=16, num_epochs=1, num_minibatches=2)
    trainer.train(2 * 16 * 2, progress=False)
    assert math.isfinite(trainer.metrics["icm/loss/inverse"])
    path = trainer.save(tmp_path)
    restored = Trainer(
        gym.make_vec("Pendulum-v1", 2), [PPO(), ICM()], seed=1, num_steps=16, num_epochs=1, num_minibatches=2
    )
    restored.load_state(path)
    original, loaded = trainer.agents[1].state_dict(), restored.agents[1].state_dict()
    assert original.keys() == loaded.keys()
    for key in original:
        assert torch.equal(original[key], loaded[key]), key
    envs.close()
