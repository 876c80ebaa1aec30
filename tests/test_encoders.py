"""Dict / Tuple observation encoders and normalizers against hand-written features and statistics."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rl_agents import CompositionError
from rl_agents.core.encoders import ObservationEncoder, ObservationNormalizer
from rl_agents.core.nets import NatureCNN
from rl_agents.core.normalize import RunningMeanStd


def minigrid_like() -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 10, (7, 7, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "vec": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
        }
    )


def minigrid_obs(batch: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(0, 11, (batch, 7, 7, 3), generator=generator, dtype=torch.uint8),
        "direction": torch.tensor([3.0, 0.0][:batch]),
        "vec": torch.tensor([[0.5, -0.25, 1.0], [0.0, 0.75, -1.0]][:batch]),
    }


class Recorder(nn.Module):
    """A user encoder: two features per sample, and it remembers the dtype it was given."""

    out_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.dtype)
        return torch.full((x.shape[0], 2), 7.0)


# ------------------------------------------------------------------------------------------ encoder
def test_dict_encoder_concatenates_cnn_one_hot_and_vector_in_leaf_order() -> None:
    encoder = ObservationEncoder(minigrid_like())
    assert encoder.out_dim == 64 + 4 + 3
    # gymnasium sorts a Dict's keys: leaf order is the space's, whatever order the observation has.
    assert encoder.leaf_paths == ["direction", "image", "vec"]
    assert encoder.image_paths == ["image"]
    assert isinstance(encoder.encoders["image"], NatureCNN)
    obs = minigrid_obs()
    features = encoder(obs)
    assert features.shape == (2, 71) and features.dtype == torch.float32
    assert features[:, :4].tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    assert torch.equal(features[:, 4:68], encoder.encoders["image"](obs["image"]))
    assert features[:, 68:].tolist() == [[0.5, -0.25, 1.0], [0.0, 0.75, -1.0]]


def test_discrete_one_hot_respects_start() -> None:
    encoder = ObservationEncoder(gym.spaces.Dict({"d": gym.spaces.Discrete(3, start=-1)}))
    assert encoder.out_dim == 3
    features = encoder({"d": torch.tensor([-1.0, 1.0, 0.0])})
    assert features.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_discrete_value_outside_the_space_fails_instead_of_encoding_garbage() -> None:
    encoder = ObservationEncoder(gym.spaces.Discrete(3, start=-1))
    with pytest.raises(IndexError):
        encoder(torch.tensor([2.0]))  # index 3 of 3
    with pytest.raises(IndexError):
        encoder(torch.tensor([-2.0]))  # index -1


def test_multi_discrete_one_hots_side_by_side_with_uneven_sizes_and_start() -> None:
    space = gym.spaces.MultiDiscrete([2, 3], start=[1, 0])
    encoder = ObservationEncoder(gym.spaces.Dict({"m": space}))
    assert encoder.out_dim == 5
    features = encoder({"m": torch.tensor([[2.0, 0.0], [1.0, 2.0]])})
    assert features.tolist() == [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]]


def test_multi_discrete_of_two_dimensions_is_flattened_in_row_major_order() -> None:
    encoder = ObservationEncoder(gym.spaces.Tuple([gym.spaces.MultiDiscrete([[2, 2], [2, 2]])]))
    features = encoder((torch.tensor([[[0.0, 1.0], [1.0, 1.0]]]),))
    assert features.tolist() == [[1, 0, 0, 1, 0, 1, 0, 1]]


def test_nested_dict_and_tuple_leaves_are_named_by_path_and_encoded_in_order() -> None:
    space = gym.spaces.Dict(
        {
            "a": gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,))}),
            "t": gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.MultiBinary(3)]),
        }
    )
    encoder = ObservationEncoder(space)
    assert encoder.leaf_paths == ["a.b", "t.0", "t.1"]
    assert encoder.out_dim == 2 + 2 + 3
    obs = {"a": {"b": torch.tensor([[0.5, -0.5]])}, "t": (torch.tensor([1.0]), torch.tensor([[1.0, 0.0, 1.0]]))}
    assert encoder(obs).tolist() == [[0.5, -0.5, 0, 1, 1, 0, 1]]


def test_top_level_tuple_space() -> None:
    encoder = ObservationEncoder(gym.spaces.Tuple([gym.spaces.Box(0, 1, (2, 2)), gym.spaces.Discrete(2)]))
    assert encoder.leaf_paths == ["0", "1"]
    features = encoder((torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([0.0])))
    assert features.tolist() == [[1, 2, 3, 4, 1, 0]]


def test_plain_box_space_is_its_leaf_encoder() -> None:
    encoder = ObservationEncoder(gym.spaces.Box(-1, 1, (2, 3)))
    assert encoder.leaf_paths == [""] and encoder.out_dim == 6
    x = torch.arange(12.0).reshape(2, 2, 3)
    assert torch.equal(encoder(x), x.reshape(2, 6))
    assert ObservationEncoder(gym.spaces.Discrete(3))(torch.tensor([2.0])).tolist() == [[0, 0, 1]]


def test_user_encoder_replaces_a_leaf_and_gets_it_as_stored() -> None:
    recorder = Recorder()
    encoder = ObservationEncoder(minigrid_like(), encoders={"image": recorder})
    assert encoder.out_dim == 2 + 4 + 3
    assert encoder.encoders["image"] is recorder
    features = encoder(minigrid_obs())
    assert recorder.seen == [torch.uint8]
    assert features[:, :4].tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    assert features[:, 4:6].tolist() == [[7, 7], [7, 7]]


def test_bad_user_encoders_and_unknown_paths_are_refused_with_the_leaf_named() -> None:
    with pytest.raises(ValueError, match=r"'vec'.*integer attribute out_dim"):
        ObservationEncoder(minigrid_like(), encoders={"vec": nn.Linear(3, 4)})
    linear = nn.Linear(3, 4)
    linear.out_dim = 4.0
    with pytest.raises(ValueError, match=r"out_dim >= 1 .* got 4\.0"):
        ObservationEncoder(minigrid_like(), encoders={"vec": linear})
    with pytest.raises(ValueError, match="must be an nn.Module, got function"):
        ObservationEncoder(minigrid_like(), encoders={"vec": lambda x: x})
    with pytest.raises(ValueError, match=r"unknown observation leaves \['vector'\].*\['direction', 'image', 'vec'\]"):
        ObservationEncoder(minigrid_like(), encoders={"vector": Recorder()})


def test_text_leaf_is_refused_naming_its_path_and_the_wrapper_to_drop_it() -> None:
    space = gym.spaces.Dict({"a": gym.spaces.Dict({"note": gym.spaces.Text(5)}), "v": gym.spaces.Box(0, 1, (1,))})
    with pytest.raises(CompositionError, match=r"observation leaf 'a\.note' has space Text.*FilterObservation"):
        ObservationEncoder(space)
    # A leaf the user encodes is theirs to read, whatever its space.
    assert ObservationEncoder(space, encoders={"a.note": Recorder()}).out_dim == 3


def test_image_too_small_for_the_cnn_is_refused_at_construction() -> None:
    space = gym.spaces.Dict({"tiny": gym.spaces.Box(0, 1, (3, 3, 3), np.uint8)})
    with pytest.raises(CompositionError, match=r"'tiny'.*too small.*encoders=\{'tiny': module\}"):
        ObservationEncoder(space)


def test_gradients_flow_into_the_cnn() -> None:
    encoder = ObservationEncoder(minigrid_like())
    encoder(minigrid_obs()).square().sum().backward()
    cnn = encoder.encoders["image"]
    first_conv = cnn.convs[0]
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    assert cnn.head[0].weight.grad.abs().sum() > 0


def test_awkward_dict_keys_work_and_colliding_names_are_refused() -> None:
    # "type" and "items" are ModuleDict attributes; a plain ModuleDict would refuse them as keys.
    space = gym.spaces.Dict({"type": gym.spaces.Discrete(2), "items": gym.spaces.Box(0, 1, (1,))})
    encoder = ObservationEncoder(space)
    assert encoder({"type": torch.tensor([1.0]), "items": torch.tensor([[0.5]])}).tolist() == [[0.5, 0, 1]]
    colliding = gym.spaces.Dict(
        {"a.b": gym.spaces.Box(0, 1, (1,)), "a": gym.spaces.Dict({"b": gym.spaces.Box(0, 1, (1,))})}
    )
    with pytest.raises(CompositionError, match="'a.b' and 'a.b' cannot be told apart"):
        ObservationEncoder(colliding)


def test_deep_copy_encodes_with_its_own_modules() -> None:
    encoder = ObservationEncoder(minigrid_like())
    clone = copy.deepcopy(encoder)
    obs = minigrid_obs()
    assert torch.equal(clone(obs), encoder(obs))
    with torch.no_grad():
        clone.encoders["image"].head[0].bias.add_(1.0)
    assert not torch.equal(clone(obs)[:, :64], encoder(obs)[:, :64])


# --------------------------------------------------------------------------------------- normalizer
def mixed_space() -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "vec": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            "bits": gym.spaces.MultiBinary(2),
            "counts": gym.spaces.Box(0, 9, (2,), np.uint8),
            "n": gym.spaces.Tuple([gym.spaces.Box(-np.inf, np.inf, (), np.float64)]),
        }
    )


def mixed_obs() -> dict:
    return {
        "image": torch.zeros((2, 7, 7, 3), dtype=torch.uint8),
        "direction": torch.tensor([1.0, 2.0]),
        "vec": torch.tensor([[1.0, 10.0], [3.0, 30.0]]),
        "bits": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        "counts": torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8),
        "n": (torch.tensor([-2.0, 2.0]),),
    }


def test_normalizer_touches_only_the_float_box_leaves() -> None:
    normalizer = ObservationNormalizer(mixed_space())
    assert normalizer.normalized_paths == ["n.0", "vec"]  # gymnasium sorts a Dict's keys
    obs = mixed_obs()
    normalizer.update(obs)
    out = normalizer.normalize(obs)
    for untouched in ("image", "direction", "bits", "counts"):
        assert out[untouched] is obs[untouched]
    # One batch (the count's 1e-4 head start aside): mean/std of the batch itself, so -1 and +1.
    assert out["vec"].flatten().tolist() == pytest.approx([-1.0, -1.0, 1.0, 1.0], abs=1e-3)
    assert out["n"][0].tolist() == pytest.approx([-1.0, 1.0], abs=1e-3)
    assert out["vec"].dtype == torch.float32 and out["n"][0].dtype == torch.float32
    clipped = normalizer.normalize({**obs, "vec": torch.tensor([[101.0, 20.0]])}, clip=5.0)["vec"]
    assert clipped.flatten().tolist() == pytest.approx([5.0, 0.0], abs=1e-3)  # (101 - 2) / 1 clipped; (20 - 20) / 10


def test_normalizer_update_accepts_leading_dimensions() -> None:
    normalizer = ObservationNormalizer(gym.spaces.Dict({"v": gym.spaces.Box(-1, 1, (2,))}))
    normalizer.update({"v": torch.tensor([[[1.0, 4.0], [3.0, 8.0]], [[5.0, 0.0], [7.0, 4.0]]])})  # [T=2, B=2, 2]
    stats = normalizer.stats["v"]
    assert stats.mean.tolist() == pytest.approx([4.0, 4.0], rel=1e-4)
    assert stats.var.tolist() == pytest.approx([5.0, 8.0], rel=1e-4)


def test_normalizer_of_a_plain_box_matches_running_mean_std_bit_for_bit() -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (3, 2), np.float32)
    normalizer, reference = ObservationNormalizer(space), RunningMeanStd((3, 2))
    assert normalizer.normalized_paths == [""]
    generator = torch.Generator().manual_seed(1)
    for step in range(5):
        x = torch.randn((4, 5, 3, 2), generator=generator) * (step + 1) + step  # leading dims [T, B]
        normalizer.update(x)
        reference.update(x.reshape(-1, 3, 2))
        for clip in (None, 1.5):
            assert torch.equal(normalizer.normalize(x, clip=clip), reference.normalize(x.float(), clip=clip).float())
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(normalizer.stats["obs"], name), getattr(reference, name))


def test_normalizer_of_an_image_space_passes_it_through() -> None:
    normalizer = ObservationNormalizer(gym.spaces.Box(0, 255, (7, 7, 3), np.uint8))
    x = torch.zeros((1, 7, 7, 3), dtype=torch.uint8)
    normalizer.update(x)
    assert normalizer.normalized_paths == [] and normalizer.normalize(x) is x


def test_normalizer_state_dict_round_trip_gives_identical_outputs() -> None:
    trained = ObservationNormalizer(mixed_space())
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        # update reads only the normalized leaves
        trained.update({"vec": torch.randn((8, 2), generator=generator) * 3 + 1, "n": (torch.randn(8),)})
    state = trained.state_dict()
    assert sorted(state) == sorted(
        f"stats.{key}.{name}" for key in ("vec", "n__0") for name in ("mean", "var", "count")
    )
    fresh = ObservationNormalizer(mixed_space())
    probe = mixed_obs()
    assert not torch.equal(fresh.normalize(probe)["vec"], trained.normalize(probe)["vec"])
    fresh.load_state_dict(state)
    for clip in (None, 0.5):
        expected, got = trained.normalize(probe, clip=clip), fresh.normalize(probe, clip=clip)
        assert torch.equal(got["vec"], expected["vec"]) and torch.equal(got["n"][0], expected["n"][0])
