"""PPO loss terms on fixed tensors against hand-computed numbers."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import PPO
from rl_agents.agents.ppo import clipped_surrogate_loss, value_loss
from tests.helpers import bind_standalone


def test_clipped_surrogate_with_clipping_active() -> None:
    ratio = torch.tensor([0.5, 1.0, 1.5])
    advantages = torch.tensor([1.0, -1.0, 2.0])
    # per sample max(-A*r, -A*clip(r)): max(-.5, -.8) = -.5; max(1, 1) = 1; max(-3, -2.4) = -2.4
    assert float(clipped_surrogate_loss(ratio, advantages, 0.2)) == pytest.approx((-0.5 + 1.0 - 2.4) / 3)


def test_clipped_surrogate_with_clipping_inactive_is_plain_surrogate() -> None:
    ratio = torch.tensor([1.1, 0.9])
    advantages = torch.tensor([1.0, 1.0])
    assert float(clipped_surrogate_loss(ratio, advantages, 0.2)) == pytest.approx(-1.0)


def test_value_loss_clipped_and_unclipped() -> None:
    new, old, returns = torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]])
    # clipped prediction 1.2 -> (1.2 - 3)^2 = 3.24 beats (2 - 3)^2 = 1
    assert value_loss(new, old, returns, clip=0.2).tolist() == pytest.approx([0.5 * 3.24])
    assert value_loss(new, old, returns, clip=None).tolist() == pytest.approx([0.5])


def fixed_ppo(**kwargs) -> PPO:
    """A discrete PPO whose policy is pi = [0.25, 0.75] and whose value is 2.0 for every observation."""
    ppo = bind_standalone(PPO(**kwargs), gym.spaces.Box(-1, 1, (2,), np.float32), gym.spaces.Discrete(2))
    with torch.no_grad():
        for param in ppo.parameters():
            param.zero_()
        ppo.actor[-1].bias.copy_(torch.tensor([0.0, math.log(3.0)]))
        ppo.critic[-1].bias.fill_(2.0)
    return ppo


def test_ppo_loss_terms_against_hand_computed_numbers() -> None:
    ppo = fixed_ppo(norm_adv=False, ent_coef=0.01, vf_coef=0.5, clip_coef=0.2)
    log_p1, log_p0 = math.log(0.75), math.log(0.25)
    minibatch = {
        "obs": torch.zeros(3, 2),
        "action": torch.tensor([1, 1, 0]),
        # ratios 1.5, 1.0, 0.5
        "logprob": torch.tensor([log_p1 - math.log(1.5), log_p1, log_p0 - math.log(0.5)]),
        "advantages": torch.tensor([2.0, -1.0, 1.0]),
        "values": torch.tensor([[1.0], [2.0], [2.5]]),
        "returns": torch.tensor([[3.0], [2.0], [2.0]]),
    }
    terms, metrics = ppo.loss(minibatch)
    terms = {k: v.detach() for k, v in terms.items()}
    # policy: max(-3, -2.4) = -2.4; max(1, 1) = 1; max(-.5, -.8) = -.5
    assert float(terms["policy"]) == pytest.approx((-2.4 + 1.0 - 0.5) / 3, rel=1e-5)
    # value (new 2.0): max(1, (1.2-3)^2=3.24) = 3.24; 0; max(0, (2.3-2)^2=.09) = .09
    assert float(terms["value"]) == pytest.approx(0.5 * 0.5 * (3.24 + 0.0 + 0.09) / 3, rel=1e-5)
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(terms["entropy"]) == pytest.approx(-0.01 * entropy, rel=1e-5)
    assert float(metrics["clipfrac"]) == pytest.approx(2 / 3)


def test_ppo_normalizes_advantages_per_minibatch() -> None:
    ppo = fixed_ppo(norm_adv=True, ent_coef=0.0)
    log_p1 = math.log(0.75)
    minibatch = {
        "obs": torch.zeros(2, 2),
        "action": torch.tensor([1, 1]),
        "logprob": torch.tensor([log_p1, log_p1]),  # ratio 1
        "advantages": torch.tensor([10.0, 30.0]),  # normalized: -1/sqrt(2), +1/sqrt(2) (unbiased std)
        "values": torch.full((2, 1), 2.0),
        "returns": torch.full((2, 1), 2.0),
    }
    terms, _ = ppo.loss(minibatch)
    assert float(terms["policy"]) == pytest.approx(0.0, abs=1e-6)
    minibatch["advantages"] = torch.tensor([10.0, 10.0])  # zero std: the epsilon keeps it finite
    terms_constant, _ = ppo.loss(minibatch)
    assert float(terms_constant["policy"]) == pytest.approx(0.0, abs=1e-6)
    ppo.norm_adv = False
    minibatch["advantages"] = torch.tensor([10.0, 30.0])
    terms_raw, _ = ppo.loss(minibatch)
    assert float(terms_raw["policy"]) == pytest.approx(-20.0, rel=1e-5)


def test_ppo_defaults_follow_the_spaces() -> None:
    discrete = bind_standalone(PPO(), gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    assert (discrete.lr, discrete.ent_coef, discrete.normalize_obs) == (2.5e-4, 0.01, False)
    assert vars(discrete.suggested_schedule()) == dict(  # CleanRL's ppo.py
        num_steps=128, num_epochs=4, num_minibatches=4, max_grad_norm=0.5, anneal_lr=True, sequence_minibatches=False
    )
    grid = bind_standalone(PPO(), gym.spaces.Box(0, 10, (7, 7, 3), np.uint8), gym.spaces.Discrete(7))
    assert (grid.lr, grid.ent_coef, grid.normalize_obs) == (2.5e-4, 0.0, False)
    assert vars(grid.suggested_schedule()) == dict(  # rl-zoo3's MiniGrid schedule
        num_steps=128, num_epochs=10, num_minibatches=16, max_grad_norm=0.5, anneal_lr=False, sequence_minibatches=False
    )
    atari = bind_standalone(PPO(), gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    assert atari.suggested_schedule().num_epochs == 4  # a picture, not a grid view: CleanRL's
    continuous = bind_standalone(
        PPO(), gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32)
    )
    assert (continuous.lr, continuous.ent_coef, continuous.normalize_obs, continuous.normalize_reward) == (
        1e-3,
        0.0,
        True,
        True,
    )
    assert vars(continuous.suggested_schedule()) == dict(
        num_steps=256, num_epochs=10, num_minibatches=16, max_grad_norm=0.5, anneal_lr=True, sequence_minibatches=False
    )


@pytest.mark.parametrize(
    "action_space",
    [gym.spaces.Discrete(3), gym.spaces.MultiDiscrete([2, 3]), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)],
)
def test_act_gives_actions_in_space_and_consistent_log_probs(action_space: gym.Space) -> None:
    ppo = bind_standalone(PPO(), gym.spaces.Box(-1, 1, (4,), np.float32), action_space, num_envs=5)
    obs = torch.randn(5, 4)
    outputs = ppo.act(obs)
    params, _ = ppo._actor_critic(outputs.get("policy_obs", obs))
    log_prob, _ = ppo.action_head.log_prob_entropy(params, outputs["action"])
    assert torch.allclose(log_prob, outputs["logprob"])
    env_actions = ppo.env_action(outputs).numpy()
    assert all(action_space.contains(a.astype(action_space.dtype)) for a in env_actions)
    assert outputs["logprob"].shape == (5,)
    assert outputs["values"].shape == (5, 1)


def test_image_observations_use_a_cnn() -> None:
    ppo = bind_standalone(PPO(), gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), gym.spaces.Discrete(3), num_envs=2)
    outputs = ppo.act(torch.randint(0, 255, (2, 7, 7, 3), dtype=torch.uint8))
    assert outputs["action"].shape == (2,) and outputs["values"].shape == (2, 1)
    atari = bind_standalone(PPO(), gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), num_envs=2)
    assert atari.act(torch.zeros(2, 4, 84, 84, dtype=torch.uint8))["action"].shape == (2,)


def test_fused_inference_matches_the_separate_networks_and_follows_updates() -> None:
    ppo = bind_standalone(PPO(), gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3), num_envs=6)
    obs = torch.randn(6, 4)
    for _ in range(2):
        fused_params, fused_values = ppo._fused_inference(obs)
        params, values = ppo._actor_critic(obs)
        assert torch.allclose(fused_params, params, atol=1e-6) and torch.allclose(fused_values, values, atol=1e-6)
        with torch.no_grad():  # an optimizer step changes parameters in place: the cache must notice
            for param in ppo.parameters():
                param.add_(0.1)


def test_fused_inference_is_refreshed_after_an_optimizer_update() -> None:
    import gymnasium as gym_

    from rl_agents import Trainer

    envs = gym_.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()], num_steps=16)  # fused Adam does not bump parameter versions
    trainer.train(32, progress=False)
    ppo = trainer.acting
    obs = torch.randn(2, 4)
    assert torch.allclose(ppo._fused_inference(obs)[0], ppo._actor_critic(obs)[0], atol=1e-6)


def _adam_steps(trainer) -> int:
    first_param = trainer.optimizer.param_groups[0]["params"][0]
    return int(trainer.optimizer.state[first_param]["step"])


def test_target_kl_stops_the_epochs_early() -> None:
    from rl_agents import Trainer

    def steps_after_one_update(target_kl: float | None) -> int:
        envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
        trainer = Trainer(envs, [PPO(target_kl=target_kl, lr=1e-2)], num_steps=64, num_epochs=4, num_minibatches=4)
        trainer.train(128, progress=False)
        return _adam_steps(trainer)

    assert steps_after_one_update(None) == 16  # 4 epochs x 4 minibatches
    assert steps_after_one_update(0.0) == 4  # any KL > 0 ends the update after the first epoch


def test_learning_rate_is_annealed_linearly_per_update_and_set_per_agent() -> None:
    from rl_agents import Trainer
    from tests.helpers import ConstantBonus

    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO(lr=1e-3), ConstantBonus(lr=5e-4)], num_steps=16)
    groups = {group["name"]: group for group in trainer.optimizer.param_groups}
    assert set(groups) == {"ppo"}  # the bonus has no parameters, so no group
    trainer.train(2 * 16 * 4, progress=False, stop_when=lambda t: t.num_updates == 3)
    # Update k (0-based) runs at lr * (1 - k / 4): the third update used 1e-3 * 2/4.
    assert groups["ppo"]["lr"] == pytest.approx(1e-3 * (1 - 2 / 4))
    assert trainer.metrics["trainer/grad_norm"] >= 0.0


def test_gradients_are_clipped_to_the_global_norm() -> None:
    from rl_agents import Trainer

    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    trainer = Trainer(envs, [PPO()], num_steps=32, max_grad_norm=1e-3)
    trainer.train(64, progress=False)
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert float(total) == pytest.approx(1e-3, rel=1e-3)  # the last step's gradient, after clipping
    assert trainer.metrics["trainer/grad_norm"] > 1e-3  # the logged norm is the one before clipping


def test_anneal_clip_decays_the_clipping_range_linearly_over_the_run() -> None:
    spaces = (gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(2))
    annealed = bind_standalone(PPO(clip_coef=0.2, anneal_clip=True), *spaces)
    annealed.set_progress(250, 1000)
    assert annealed._clip_now == pytest.approx(0.15)
    annealed.set_progress(2000, 1000)  # past the total: stays at 0
    assert annealed._clip_now == 0.0
    constant = bind_standalone(PPO(clip_coef=0.2), *spaces)
    constant.set_progress(500, 1000)
    assert constant._clip_now == 0.2
