"""Replay parts: the sum tree, prioritized replay (PER) as a part of any replay learner, and Rainbow's
pieces in DQN (C51 projection, dueling, noisy layers), against hand-computed numbers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rl_agents import DQN, PPO, RND, SAC, CompositionError, Trainer
from rl_agents.agents import PER
from rl_agents.agents.per import PrioritizedSampler
from rl_agents.core.agent import (
    ACTION,
    OBS,
    PRIORITY,
    SAMPLE_WEIGHT,
    Agent,
    Batch,
    ContractError,
    DataSpec,
)
from rl_agents.core.noisy import NoisyLinear
from rl_agents.core.returns import categorical_projection
from rl_agents.core.state import StateError
from rl_agents.core.sum_tree import SumTree
from tests.helpers import assert_same, bind_standalone

# Critical value of the chi-square distribution with 9 degrees of freedom at p = 0.001.
CHI2_9_P001 = 27.877


def cartpole(num_envs: int = 1) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync")


def chi_square(counts: np.ndarray, expected_probabilities: np.ndarray) -> float:
    expected = expected_probabilities * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


# ---------------------------------------------------------------------------------------------- sum tree
def test_sum_tree_draws_in_proportion_to_the_priorities() -> None:
    priorities = np.arange(1.0, 11.0)  # 10 leaves (not a power of two): 1..10
    tree = SumTree(10)
    tree.set(np.arange(10), priorities)
    assert tree.total == 55.0
    # The search is exact: the leaf where the running sum passes each target, as searchsorted finds it.
    grid = np.linspace(0.0, 55.0, 5501)[:-1]
    assert np.array_equal(tree.find(grid), np.searchsorted(np.cumsum(priorities), grid, side="right"))
    rng = np.random.default_rng(1)  # (seeded: a chi-square test at p = 0.001 fails 1 run in 1,000 by chance)
    draws = tree.find(rng.random(100_000) * tree.total)
    counts = np.bincount(draws, minlength=10)
    assert chi_square(counts, priorities / priorities.sum()) < CHI2_9_P001
    # The same counts are far from uniform: the test can tell a wrong sampler.
    assert chi_square(counts, np.full(10, 0.1)) > 100 * CHI2_9_P001


def test_sum_tree_updates_keep_every_sum_and_match_a_rebuild_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    tree = SumTree(37)
    for _ in range(50):
        indices = rng.integers(0, 37, size=8)
        tree.set(indices, rng.random(8) * 10)
    incremental = tree.nodes.copy()
    tree.rebuild()
    assert np.array_equal(tree.nodes, incremental)
    assert tree.total == pytest.approx(tree.leaves.sum(), rel=1e-12)


def test_sum_tree_keeps_the_last_value_of_a_repeated_index() -> None:
    tree = SumTree(4)
    tree.set(np.array([2, 0, 2, 2]), np.array([5.0, 1.0, 7.0, 3.0]))
    assert tree.leaves.tolist() == [1.0, 0.0, 3.0, 0.0]
    assert tree.total == 4.0


def test_sum_tree_never_returns_a_zero_priority_leaf() -> None:
    tree = SumTree(8)
    tree.set(np.array([1, 6]), np.array([2.0, 1.0]))  # every other leaf is 0
    targets = np.array([0.0, 1.999999, 2.0, 2.9999999, np.nextafter(3.0, 0.0), 3.0, 1e9])  # also past the total
    assert set(tree.find(targets).tolist()) <= {1, 6}
    assert tree.find(np.array([0.0, 2.5])).tolist() == [1, 6]


def test_sum_tree_edge_cases() -> None:
    single = SumTree(1)
    single.set(np.array([0]), np.array([3.0]))
    assert single.total == 3.0 and single.find(np.array([0.0, 2.9])).tolist() == [0, 0]
    empty = SumTree(5)
    with pytest.raises(ValueError, match="all 0"):
        empty.find(np.array([0.0]))
    with pytest.raises(ValueError, match="at least one leaf"):
        SumTree(0)


# ---------------------------------------------------------------------------------------------- PER sampler
def sampler_with(priorities: list[float], *, alpha: float = 1.0, beta: float = 0.5) -> PrioritizedSampler:
    sampler = PrioritizedSampler(alpha=alpha, beta=beta, final_beta=beta, beta_fraction=1.0, epsilon=1e-12)
    sampler.reset(len(priorities))
    slots = np.arange(len(priorities))
    sampler.added(slots, np.ones(len(priorities), dtype=bool))
    sampler.feedback(slots, np.array(priorities))
    return sampler


def test_importance_weights_match_hand_numbers() -> None:
    # Priorities 2, 2, 4 (alpha 1): P = 0.25, 0.25, 0.5. Two strata of the total 8: [0, 4) holds slot 0 or
    # 1, [4, 8) slot 2. w = (N P)^-0.5 = (0.75)^-0.5 = 1.1547 and (1.5)^-0.5 = 0.8165; over the largest:
    # 1 and 0.70711.
    sampler = sampler_with([2.0, 2.0, 4.0])
    slots, weights = sampler.draw(2, torch.Generator().manual_seed(0), progress=0.0)
    assert slots[0] in (0, 1) and slots[1] == 2
    assert weights.dtype == np.float32
    assert weights.tolist() == pytest.approx([1.0, 0.7071068], abs=1e-6)


def test_priorities_take_alpha_and_epsilon_and_new_transitions_the_largest() -> None:
    sampler = PrioritizedSampler(alpha=0.5, beta=0.4, final_beta=1.0, beta_fraction=0.5, epsilon=0.01)
    sampler.reset(4)
    sampler.added(np.array([0, 1]), np.array([True, True]))
    assert sampler.tree.leaves.tolist() == [1.0, 1.0, 0.0, 0.0]  # max priority starts at 1
    sampler.feedback(np.array([0, 1]), np.array([-3.99, 0.0]))  # |TD| 3.99 -> (4.0)^0.5 = 2; 0 -> 0.1
    assert sampler.tree.leaves[:2].tolist() == pytest.approx([2.0, 0.1])
    sampler.added(np.array([2, 3]), np.array([True, False]))  # an invalid (reset) step is never drawn
    assert sampler.tree.leaves.tolist() == pytest.approx([2.0, 0.1, 2.0, 0.0])
    assert [sampler.beta_at(p) for p in (0.0, 0.25, 0.5, 1.0)] == pytest.approx([0.4, 0.7, 1.0, 1.0])


def test_sampler_rewind_and_state_round_trip_are_exact() -> None:
    sampler = sampler_with([1.0, 2.0, 3.0, 4.0, 5.0])
    before, max_before = sampler.tree.nodes.copy(), sampler.max_priority
    mark = sampler.mark()
    sampler.added(np.array([4, 0]), np.array([True, True]))
    sampler.feedback(np.array([1, 1, 3]), np.array([9.0, 8.0, 0.5]))
    assert not np.array_equal(sampler.tree.nodes, before) and sampler.max_priority == pytest.approx(9.0)
    sampler.rewind(mark)
    assert np.array_equal(sampler.tree.nodes, before) and sampler.max_priority == max_before

    restored = sampler_with([0.0] * 5)
    restored.prepare_load(sampler.state_dict(), "replay.sampler")()
    assert np.array_equal(restored.tree.nodes, sampler.tree.nodes) and restored.max_priority == sampler.max_priority


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda s: s.update(priorities=torch.zeros(4, dtype=torch.float64)), r"expected float64 \[5\]"),
        (lambda s: s.update(priorities=torch.zeros(5)), "float64"),
        (lambda s: s["priorities"].__setitem__(2, float("nan")), "finite and >= 0"),
        (lambda s: s["priorities"].__setitem__(2, -1.0), "finite and >= 0"),
        (lambda s: s.update(max_priority=0.0), "max_priority"),
        (lambda s: s.pop("max_priority"), "max_priority"),
    ],
)
def test_damaged_sampler_state_is_refused(change, match: str) -> None:
    state = sampler_with([1.0, 2.0, 3.0, 4.0, 5.0]).state_dict()
    change(state)
    with pytest.raises(StateError, match=match):
        sampler_with([1.0] * 5).prepare_load(state, "replay.sampler")


# ---------------------------------------------------------------------------------------------- PER as a part
def schedule(**overrides) -> dict:
    return {"buffer_size": 500, "batch_size": 16, "learning_starts": 20, "train_frequency": 4} | overrides


def test_per_samples_by_the_learners_priorities_and_weights_its_loss() -> None:
    trainer = Trainer(cartpole(), [DQN(), PER(alpha=1.0)], seed=3, **schedule())
    trainer.train(200, progress=False, quiet=True)
    sampler = trainer.learner.replay.sampler
    assert isinstance(sampler, PrioritizedSampler)
    replay = trainer.learner.replay
    stored = replay.size * replay.num_envs
    valid = replay.data["valid"][: replay.size].reshape(-1).numpy()
    leaves = sampler.tree.leaves
    assert not valid.all()  # next-step autoreset stores reset steps, which must never be drawn
    assert (leaves[:stored][valid] > 0).all() and (leaves[:stored][~valid] == 0).all()
    assert (leaves[stored:] == 0).all()
    assert len(np.unique(leaves[:stored])) > 10  # the learner's |TD errors|, not one initial value
    seen: list[Batch] = []
    original_loss = trainer.acting.loss

    def recording_loss(minibatch: Batch):
        seen.append(minibatch)
        return original_loss(minibatch)

    trainer.acting.loss = recording_loss  # type: ignore[method-assign]
    trainer.train(trainer.global_step + 8, progress=False, quiet=True)
    weights = seen[-1][SAMPLE_WEIGHT]
    assert weights.max() == 1.0 and weights.min() < 1.0  # importance weights, normalized by the largest
    drawn = seen[-1]["replay_index"].numpy()
    assert np.allclose(sampler.tree.get(drawn), np.abs(seen[-1][PRIORITY].numpy()) + 1e-6)  # fed back


def test_uniform_replay_rows_weigh_one() -> None:
    trainer = Trainer(cartpole(), [DQN()], seed=3, **schedule())
    trainer.train(40, progress=False, quiet=True)
    batch = trainer.learner.replay.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(batch[SAMPLE_WEIGHT], torch.ones(16))


@pytest.mark.parametrize(
    "agents", [lambda: [SAC(), PER()], lambda: [DQN(), PER(), RND()]], ids=["sac+per", "dqn+per+rnd"]
)
def test_per_composes_with_sac_and_with_a_bonus(agents) -> None:
    envs = gym.make_vec("Pendulum-v1", num_envs=1) if "sac" in str(agents()).lower() else cartpole()
    trainer = Trainer(envs, agents(), seed=1, **schedule(batch_size=8, train_frequency=2))
    trainer.train(60, progress=False, quiet=True)
    assert trainer.learner.total_gradient_steps > 0
    assert len(np.unique(trainer.learner.replay.sampler.tree.leaves)) > 5


class Unweighted(Agent):
    """A replay learner that outputs priorities but ignores the importance weights."""

    acts = True

    def __init__(self) -> None:
        super().__init__(lr=1e-3)

    def bind(self, ctx) -> None:
        super().bind(ctx)
        self.q = torch.nn.Linear(4, 2)

    def data_spec(self) -> DataSpec:
        return DataSpec(
            needs=frozenset({OBS, ACTION}), act_outputs=frozenset({ACTION}), loss_outputs=frozenset({PRIORITY})
        )

    def suggested_schedule(self):
        from rl_agents import ReplaySchedule

        return ReplaySchedule(buffer_size=100, batch_size=4, learning_starts=4)

    def act(self, obs, deterministic=False):
        return {ACTION: self.q(obs.float()).argmax(1)}

    def random_act(self, num_envs):
        return {ACTION: torch.zeros(num_envs, dtype=torch.long)}

    def loss(self, minibatch):
        minibatch[PRIORITY] = torch.ones(minibatch[OBS].shape[0])
        return {"q": self.q(minibatch[OBS].float()).square().mean()}, {}


def test_per_is_refused_where_it_cannot_work() -> None:
    with pytest.raises(CompositionError, match="'per' samples the replay buffer, but agent 'ppo' trains on-policy"):
        Trainer(cartpole(), [PPO(), PER()], seed=0)
    with pytest.raises(CompositionError, match="both supply a replay sampler"):
        Trainer(cartpole(), [DQN(), PER(), PER(name="per2")], seed=0)
    with pytest.raises(CompositionError, match="no agent's loss reads them"):
        Trainer(cartpole(), [Unweighted(), PER()], seed=0)

    class Silent(Unweighted):
        def data_spec(self) -> DataSpec:
            return DataSpec(needs=frozenset({OBS, ACTION, SAMPLE_WEIGHT}), act_outputs=frozenset({ACTION}))

    with pytest.raises(CompositionError, match="agent 'per' needs 'priority', but no agent provides it"):
        Trainer(cartpole(), [Silent(), PER()], seed=0)


def test_a_learner_that_breaks_its_priority_output_is_named_and_the_update_rolled_back() -> None:
    class Broken(Unweighted):
        def data_spec(self) -> DataSpec:
            needs = frozenset({OBS, ACTION, SAMPLE_WEIGHT})
            return DataSpec(needs=needs, act_outputs=frozenset({ACTION}), loss_outputs=frozenset({PRIORITY}))

        def loss(self, minibatch):
            minibatch[PRIORITY] = torch.ones(minibatch[OBS].shape[0], 2)  # not one value per row
            return {"q": self.q(minibatch[OBS].float()).square().mean()}, {}

    trainer = Trainer(cartpole(), [Broken(), PER()], seed=0)
    with pytest.raises(
        ContractError, match=r"agent 'unweighted' loss output 'priority' has shape \[4, 2\], expected \[4\]"
    ):
        trainer.train(40, progress=False, quiet=True)
    assert trainer.learner.replay.sampler.tree.total == pytest.approx(trainer.learner.replay.size * 1.0)


def test_dqn_per_checkpoint_resumes_exactly(tmp_path) -> None:
    def build(seed: int) -> Trainer:
        return Trainer(cartpole(), [DQN(), PER()], seed=seed, **schedule())

    original = build(5)
    original.train(120, progress=False, quiet=True)
    path = original.save(tmp_path)
    resumed = build(99)
    resumed.load_state(path)
    sampler, loaded = original.learner.replay.sampler, resumed.learner.replay.sampler
    assert np.array_equal(sampler.tree.nodes, loaded.tree.nodes) and sampler.max_priority == loaded.max_priority
    assert_same(original.learner.replay.state_dict(), resumed.learner.replay.state_dict())


def test_dqn_per_checkpoint_is_refused_by_a_uniform_trainer(tmp_path) -> None:
    original = Trainer(cartpole(), [DQN(), PER()], seed=5, **schedule())
    original.train(40, progress=False, quiet=True)
    path = original.save(tmp_path)
    with pytest.raises(Exception, match="per"):
        Trainer(cartpole(), [DQN()], seed=5, **schedule()).load_state(path)


# ---------------------------------------------------------------------------------------------- Rainbow pieces
def test_c51_projection_matches_a_hand_computed_example() -> None:
    support = torch.tensor([-1.0, 0.0, 1.0])
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    rewards = torch.tensor([0.5, 2.0, -0.25])
    discounts = torch.tensor([0.5, 0.0, 0.0])
    projected = categorical_projection(probs, rewards, discounts, support)
    # Row 0: Tz = 0.5 + 0.5 z = [0, 0.5, 1]: 0.2 on atom 1; 0.5 split 0.25/0.25 on atoms 1, 2; 0.3 on atom 2.
    # Row 1: terminal, reward 2 clipped to v_max: all on atom 2. Row 2: terminal, -0.25: 0.25 / 0.75.
    expected = torch.tensor([[0.0, 0.45, 0.55], [0.0, 0.0, 1.0], [0.25, 0.75, 0.0]])
    assert torch.allclose(projected, expected, atol=1e-7)
    assert torch.allclose(projected.sum(-1), torch.ones(3))


def test_noisy_layers_resample_per_forward_and_are_their_mean_without_noise() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(3, 2)
    x = torch.ones(4, 3)
    generator = torch.Generator().manual_seed(1)
    first, second = layer(x, generator), layer(x, generator)
    assert not torch.equal(first, second)
    assert torch.equal(first[0], first[1])  # one draw per pass, shared by the batch
    assert torch.equal(layer(x), torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu))
    assert torch.allclose(layer.weight_sigma, torch.full((2, 3), 0.5 / 3**0.5))


def rainbow_dqn(**options) -> DQN:
    agent = DQN(
        dueling=True, atoms=11, v_min=-5, v_max=5, noisy=True, initial_epsilon=0.0, final_epsilon=0.0, **options
    )
    bind_standalone(agent, gym.spaces.Box(-1, 1, (4,), np.float32), gym.spaces.Discrete(3))
    agent.generator = torch.Generator().manual_seed(0)
    return agent


def test_noisy_dqn_explores_by_noise_and_acts_on_the_mean_when_deterministic() -> None:
    agent = rainbow_dqn()
    obs = torch.randn(64, 4)
    values = [agent.action_values(obs, agent.generator) for _ in range(2)]
    assert not torch.equal(values[0], values[1])  # a fresh draw per act
    greedy = [agent.act(obs, deterministic=True)[ACTION] for _ in range(3)]
    assert all(torch.equal(greedy[0], actions) for actions in greedy)
    assert torch.equal(greedy[0], agent.action_values(obs).argmax(1))


def test_distributional_dueling_network_shapes_and_expected_values() -> None:
    agent = rainbow_dqn()
    obs = torch.randn(5, 4)
    logits = agent.q_network(obs)
    assert logits.shape == (5, 3, 1, 11)
    expected = (logits.softmax(-1) * torch.linspace(-5, 5, 11)).sum(-1).squeeze(-1)
    assert torch.allclose(agent.action_values(obs), expected, atol=1e-6)


def test_rainbow_loss_is_cross_entropy_weighted_by_sample_weight_and_outputs_it_as_priority() -> None:
    agent = rainbow_dqn(gamma=0.9)
    batch = {
        OBS: torch.randn(6, 4),
        ACTION: torch.tensor([0, 1, 2, 0, 1, 2]),
        "bootstrap_obs": torch.randn(6, 4),
        "reward/extrinsic": torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5, 0.0]),
        "terminated": torch.tensor([False, True, False, False, True, False]),
        "n_steps": torch.ones(6),
        SAMPLE_WEIGHT: torch.tensor([1.0, 0.5, 0.25, 1.0, 0.1, 0.0]),
    }
    terms, _ = agent.loss(batch)
    priority = batch[PRIORITY]
    assert priority.shape == (6,) and (priority > 0).all()
    # The term is the batch mean of the weighted per-row cross-entropy (one stream).
    assert float(terms["td"].detach()) == pytest.approx(float((batch[SAMPLE_WEIGHT] * priority).mean()), rel=1e-5)


# ---------------------------------------------------------------------------------------------- rainbow, named
def test_rainbow_names_dqn_with_every_piece_and_per() -> None:
    from rl_agents.config import build_agents, config_from_dict

    config = config_from_dict({"env": "CartPole-v1", "agents": "rainbow"})
    assert config.agents == "dqn+per"
    assert config.agent_options["dqn"] | {} == {
        "dueling": True,
        "atoms": 51,
        "noisy": True,
        "double": True,
        "initial_epsilon": 0.0,
        "final_epsilon": 0.0,
    }
    assert config.agent_options["per"] == {"alpha": 0.5, "beta": 0.4, "final_beta": 1.0}
    assert config.trainer.schedule == {"n_step": 3}
    dqn, per = build_agents(config)
    assert isinstance(dqn, DQN) and isinstance(per, PER) and dqn.atoms == 51 and dqn.noisy

    # The user's settings win; a composition combines with other agents like any agent name.
    mine = config_from_dict(
        {"env": "CartPole-v1", "agents": "rainbow+rnd", "dqn": {"atoms": 21}, "trainer": {"n_step": 5}}
    )
    assert mine.agents == "dqn+per+rnd"
    assert mine.agent_options["dqn"]["atoms"] == 21 and mine.agent_options["dqn"]["dueling"] is True
    assert mine.trainer.schedule == {"n_step": 5}


def test_command_line_rainbow_finds_its_minatar_preset_and_dqn_per_the_dqn_preset() -> None:
    pytest.importorskip("minatar")
    from rl_agents.cli.main import build_parser
    from rl_agents.cli.run_config import resolve_config

    parser = build_parser()
    rainbow = resolve_config(parser.parse_args(["train", "--env", "MinAtar/Breakout-v1", "--agents", "rainbow"]))
    assert rainbow.agents == "dqn+per" and rainbow.origin.startswith("preset MinAtar_Breakout-v1.rainbow")
    assert rainbow.agent_options["dqn"]["lr"] == 1e-4 and rainbow.agent_options["dqn"]["v_max"] == 100.0
    assert rainbow.agent_options["dqn"]["atoms"] == 51  # the composition's, under the preset's own settings
    assert rainbow.agent_options["per"] == {"alpha": 0.5, "beta": 0.5, "final_beta": 0.5}
    with_per = resolve_config(parser.parse_args(["train", "--env", "MinAtar/Breakout-v1", "--agents", "dqn+per"]))
    assert with_per.origin.startswith("preset MinAtar_Breakout-v1 ") and with_per.agent_options["dqn"]["lr"] == 2.5e-4
    assert with_per.agent_options.get("per", {}) == {}


def test_every_rainbow_piece_composes_with_a_bonus_stream() -> None:
    dqn = DQN(dueling=True, atoms=11, v_min=-5.0, v_max=5.0, noisy=True, initial_epsilon=0.0, final_epsilon=0.0)
    trainer = Trainer(cartpole(), [dqn, PER(), RND()], seed=2, n_step=3, **schedule(batch_size=8))
    trainer.train(80, progress=False, quiet=True)
    assert trainer.learner.total_gradient_steps > 0
    assert dqn.q_network(torch.zeros(5, 4)).shape == (5, 2, 2, 11)  # one distribution per stream
    assert [stream.name for stream in dqn.streams] == ["extrinsic", "intrinsic"]
    assert all(torch.isfinite(p).all() for p in dqn.parameters())
