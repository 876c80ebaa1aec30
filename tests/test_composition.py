"""The Trainer refuses compositions that cannot work, naming the agent and the key."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import PPO, CompositionError, Trainer
from rl_agents.core.agent import Agent, DataSpec
from tests.helpers import ConstantBonus


def cartpole(num_envs: int = 2) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def test_missing_dependency_names_agent_and_key() -> None:
    bonus = ConstantBonus(needs=frozenset({"valid", "embedding"}), lr=1e-3)
    with pytest.raises(CompositionError, match=r"agent 'bonus' needs 'embedding', but no agent provides it"):
        Trainer(cartpole(), [PPO(), bonus])


def test_two_acting_agents_are_refused() -> None:
    with pytest.raises(CompositionError, match=r"agents 'ppo' and 'ppo2' both want to act"):
        Trainer(cartpole(), [PPO(), PPO(name="ppo2")])


def test_no_acting_agent_is_refused() -> None:
    with pytest.raises(CompositionError, match=r"no agent acts"):
        Trainer(cartpole(), [ConstantBonus()])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(CompositionError, match=r"two agents share the name 'ppo'"):
        Trainer(cartpole(), [PPO(), PPO()])


def test_agent_that_does_not_fit_the_action_space() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: _TupleActionEnv()])
    with pytest.raises(CompositionError, match=r"agent 'ppo' cannot act in action space Tuple"):
        Trainer(envs, [PPO()])


def test_agent_that_does_not_fit_the_observation_space() -> None:
    envs = gym.vector.SyncVectorEnv([lambda: _DictObsEnv()])
    with pytest.raises(CompositionError, match=r"'note'.*Text"):
        Trainer(envs, [PPO()])


def test_two_providers_of_one_key_are_refused() -> None:
    first = ConstantBonus(name="bonus_a", stream="shared")
    second = ConstantBonus(name="bonus_b", stream="shared")
    with pytest.raises(CompositionError, match=r"agents 'bonus_a' and 'bonus_b' both declare reward stream 'shared'"):
        Trainer(cartpole(), [PPO(), first, second])


def test_declared_stream_without_provider_is_refused() -> None:
    class StreamOnly(ConstantBonus):
        def data_spec(self) -> DataSpec:
            return DataSpec()

    with pytest.raises(
        CompositionError, match=r"reward stream 'bonus' is declared but no agent provides 'reward/bonus'"
    ):
        Trainer(cartpole(), [PPO(), StreamOnly()])


def test_cycle_is_refused() -> None:
    class Provider(Agent):
        def __init__(self, name: str, provides: str, needs: str):
            super().__init__(name=name)
            self.spec = DataSpec(needs=frozenset({needs}), provides=frozenset({provides}))

        def data_spec(self) -> DataSpec:
            return self.spec

    with pytest.raises(CompositionError, match=r"agents a, b need each other's data in a cycle"):
        Trainer(cartpole(), [PPO(), Provider("a", "x", "y"), Provider("b", "y", "x")])


def test_preprocessing_order_comes_from_declarations_not_list_order() -> None:
    for agents in ([PPO(), ConstantBonus(name="zz_bonus")], [ConstantBonus(name="zz_bonus"), PPO()]):
        trainer = Trainer(cartpole(), agents)
        assert [agent.name for agent in trainer.composition.order] == ["zz_bonus", "ppo"]
        assert [stream.name for stream in trainer.composition.acting.streams] == ["extrinsic", "bonus"]


def test_swapping_agent_order_gives_identical_training() -> None:
    def run(reverse: bool) -> tuple[list[torch.Tensor], dict[str, float]]:
        agents = [PPO(), ConstantBonus()]
        trainer = Trainer(cartpole(), agents[::-1] if reverse else agents, seed=3, num_steps=16)
        trainer.train(16 * 2 * 3, progress=False)
        return [p.detach().clone() for p in agents[0].parameters()], trainer.metrics

    params_a, metrics_a = run(False)
    params_b, metrics_b = run(True)
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    volatile = {"charts/steps_per_second", "charts/wall_time"}
    assert {k: v for k, v in metrics_a.items() if k not in volatile} == {
        k: v for k, v in metrics_b.items() if k not in volatile
    }
    assert "ppo/value_loss/bonus" in metrics_a and "bonus/bonus_mean" in metrics_a


def test_only_declared_keys_are_stored() -> None:
    trainer = Trainer(cartpole(), [PPO()])
    assert "policy_obs" not in trainer.collector.storage
    assert {
        "obs",
        "next_obs",
        "terminated",
        "truncated",
        "valid",
        "reward/extrinsic",
    } <= trainer.collector.storage.batch().keys()


class _TupleActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, False, False, {}


class _DictObsEnv(_TupleActionEnv):
    # Dict observations are taken (one encoder per leaf); a Text leaf cannot be a tensor.
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (2,), np.float32), "note": gym.spaces.Text(8)})
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return {"x": np.zeros(2, np.float32), "note": "hi"}, {}

    def step(self, action):
        return {"x": np.zeros(2, np.float32), "note": "hi"}, 0.0, False, False, {}


def test_independent_agents_are_ordered_by_name_whatever_the_list_order() -> None:
    # Ties matter for bit-exact runs: agents draw from the shared generator in order.
    def order(agents: list) -> list[str]:
        return [agent.name for agent in Trainer(cartpole(), agents).composition.order]

    forward = order([PPO(), ConstantBonus(name="b_bonus", stream="b"), ConstantBonus(name="a_bonus", stream="a")])
    backward = order([ConstantBonus(name="a_bonus", stream="a"), ConstantBonus(name="b_bonus", stream="b"), PPO()])
    assert forward == backward == ["a_bonus", "b_bonus", "ppo"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"agents": "ppo", "ppo": {"gamma": 2.0}}, "agent 'ppo': gamma must be in [0, 1], got 2.0"),
        ({"agents": "ppo", "ppo": {"obs_clip": -1.0}}, "agent 'ppo': obs_clip must be >= 0, got -1.0"),
        ({"agents": "a2c", "a2c": {"gae_lambda": 1.5}}, "agent 'a2c': gae_lambda must be in [0, 1], got 1.5"),
        ({"agents": "dqn", "dqn": {"exploration_steps": -5}}, "agent 'dqn': exploration_steps must be >= 0, got -5"),
        ({"env": "Pendulum-v1", "agents": "sac", "sac": {"log_std_min": 3.0}}, "agent 'sac': log_std_max must be >= 3"),
        ({"agents": "ppo+rnd", "rnd": {"int_gamma": -0.1}}, "agent 'rnd': int_gamma must be in [0, 1], got -0.1"),
    ],
)
def test_out_of_range_agent_options_are_config_errors_naming_agent_and_option(raw: dict, message: str) -> None:
    from rl_agents.config import ConfigError, config_from_dict
    from rl_agents.training import make_trainer

    with pytest.raises(ConfigError) as error:
        make_trainer(config_from_dict(raw))
    assert message in str(error.value)
