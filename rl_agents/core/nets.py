"""Network builders and initialization shared by agents."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rl_agents.core.agent import CompositionError


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain ``std`` and constant bias, as in the PPO implementation details."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class MLP(nn.Sequential):
    """A Sequential of Linear layers and activations whose forward skips per-module call overhead.

    For the small networks of classic-control tasks, ``nn.Module.__call__`` bookkeeping costs as much
    as the matrix products; calling the layers' functions directly is about twice as fast.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self._modules.values():
            if isinstance(module, nn.Linear):
                x = F.linear(x, module.weight, module.bias)
            else:
                x = module.forward(x)
        return x


class FusedMLPs:
    """Inference-only fusion of sibling MLPs with identical hidden widths (e.g. actor and critic):
    one matrix product per layer with block-diagonal weights instead of one per network.

    The fused weights are rebuilt after :meth:`invalidate` (the owner calls it after every optimizer
    update: fused optimizers change parameters without bumping their version counters) and whenever
    a parameter's version or storage changed (state loads, device moves, manual in-place edits)."""

    def __init__(self, *networks: MLP):
        self.networks = networks
        self._sentinels = [p for net in networks for p in (next(net.parameters()), list(net.parameters())[-1])]
        self.out_dims = [net[-1].out_features for net in networks]
        self._versions: tuple[int, ...] = ()
        self._layers: list[tuple[torch.Tensor, torch.Tensor, nn.Module | None]] = []

    def invalidate(self) -> None:
        self._versions = ()

    def _state(self) -> tuple[int, ...]:
        # The first and last parameter of each network stand for all of them: an optimizer step or a
        # state load touches every parameter, and checking them all costs as much as the fusion saves.
        return tuple(x for p in self._sentinels for x in (p._version, p.data_ptr()))

    def _rebuild(self) -> None:
        linears = [[m for m in net if isinstance(m, nn.Linear)] for net in self.networks]
        activations = [m for m in self.networks[0] if not isinstance(m, nn.Linear)]
        self._layers = []
        for depth, layers in enumerate(zip(*linears)):
            weight = (
                torch.cat([layer.weight for layer in layers])
                if depth == 0
                else torch.block_diag(*[layer.weight for layer in layers])
            )
            bias = torch.cat([layer.bias for layer in layers])
            self._layers.append(
                (
                    weight.detach().clone(),
                    bias.detach().clone(),
                    activations[depth] if depth < len(activations) else None,
                )
            )
        self._versions = self._state()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._state() != self._versions:
            self._rebuild()
        for weight, bias, activation in self._layers:
            x = F.linear(x, weight, bias)
            if activation is not None:
                x = activation.forward(x)
        return list(torch.split(x, self.out_dims, dim=-1))


def mlp(
    in_dim: int, hidden: tuple[int, ...], out_dim: int, out_std: float, activation: type[nn.Module] = nn.Tanh
) -> MLP:
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [layer_init(nn.Linear(last, width)), activation()]
        last = width
    layers.append(layer_init(nn.Linear(last, out_dim), std=out_std))
    return MLP(*layers)


def is_image_space(space: gym.Space) -> bool:
    """Box observations with 3 dimensions (channels first or last) are treated as images."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


# Frames of at least this many pixels a side get the Nature CNN; smaller views the MiniGrid encoder.
SMALL_VIEW_LIMIT = 36


def is_small_grid_view(space: gym.Space) -> bool:
    """Images smaller than 36 pixels a side: symbolic grid views such as MiniGrid's 7x7x3, not pictures."""
    return is_image_space(space) and min(image_layout(space.shape)[1:3]) < SMALL_VIEW_LIMIT


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int, bool]:
    """Return (channels, height, width, channels_last) for an image observation shape."""
    if shape[-1] <= 4 and shape[0] > 4:
        height, width, channels = shape
        return channels, height, width, True
    channels, height, width = shape
    return channels, height, width, False


def small_grid_convs(channels: int, activation: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    """The MiniGrid (rl-starter-files) encoder for small egocentric views: three 2x2 convolutions
    with a 2x2 max-pool after the first; a 7x7 view becomes 64 features."""
    return [
        layer_init(nn.Conv2d(channels, 16, 2)),
        activation(),
        nn.MaxPool2d(2),
        layer_init(nn.Conv2d(16, 32, 2)),
        activation(),
        layer_init(nn.Conv2d(32, 64, 2)),
        activation(),
    ]


def nature_convs(channels: int, activation: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    """The DQN Nature convolutions (Mnih et al. 2015) for Atari-sized frames."""
    return [
        layer_init(nn.Conv2d(channels, 32, 8, 4)),
        activation(),
        layer_init(nn.Conv2d(32, 64, 4, 2)),
        activation(),
        layer_init(nn.Conv2d(64, 64, 3, 1)),
        activation(),
    ]


class NatureCNN(nn.Module):
    """Image encoder: the Nature CNN + 512-unit layer for frames of 36 pixels or more, the MiniGrid
    encoder + 64-unit layer for small views (an 8x8 kernel does not fit a 7x7 view).
    Large uint8 frames are scaled to [0, 1]; channels-last inputs are transposed."""

    def __init__(self, observation_space: gym.spaces.Box, features: int | None = None):
        super().__init__()
        channels, height, width, self.channels_last = image_layout(observation_space.shape)
        large = min(height, width) >= SMALL_VIEW_LIMIT
        # Large uint8 frames are pixels: scale to [0, 1]. Small views are symbolic grids (MiniGrid's
        # object/colour/state indices 0-10), which /255 would squash to near zero.
        self.scale = 255.0 if large and observation_space.dtype == np.uint8 else 1.0
        convs = nature_convs(channels) if large else small_grid_convs(channels)
        self.convs = nn.Sequential(*convs, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.out_dim = features or (512 if large else 64)
        self.head = nn.Sequential(layer_init(nn.Linear(flat, self.out_dim)), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / self.scale
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.head(self.convs(x))


def flat_dim(space: gym.spaces.Box) -> int:
    return int(np.prod(space.shape))


# ---------------------------------------------------------------------------------------------------
# Trunks of the exploration-bonus networks (RND, ICM): LeakyReLU features of normalized observations.


class ImageInput(nn.Module):
    """Puts image batches channels first; the convolutions see already-normalized floats."""

    def __init__(self, channels_last: bool):
        super().__init__()
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2) if self.channels_last else x


def conv_trunk(observation_space: gym.spaces.Box) -> tuple[nn.Sequential, int]:
    """Convolutions + flatten for normalized image observations; returns (trunk, output width).

    Frames of 36 pixels or more get the Nature convolutions with LeakyReLU (as in Burda et al.'s RND);
    small views (MiniGrid 7x7) get three 2x2 convolutions without pooling.
    """
    channels, height, width, channels_last = image_layout(observation_space.shape)
    if min(height, width) >= SMALL_VIEW_LIMIT:
        convs = nature_convs(channels, nn.LeakyReLU)  # CleanRL / Burda et al.
    else:
        # Small views (MiniGrid 7x7): 2x2 kernels without pooling. Pooling (as in the policy's MiniGrid
        # encoder) makes a novelty model generalize to unseen views, which blunts the novelty signal.
        convs = [
            layer_init(nn.Conv2d(channels, 32, 2)),
            nn.LeakyReLU(),
            layer_init(nn.Conv2d(32, 64, 2)),
            nn.LeakyReLU(),
            layer_init(nn.Conv2d(64, 64, 2)),
            nn.LeakyReLU(),
        ]
    trunk = nn.Sequential(ImageInput(channels_last), *convs, nn.Flatten())
    with torch.no_grad():
        sample = torch.zeros(1, height, width, channels) if channels_last else torch.zeros(1, channels, height, width)
        out_dim = trunk(sample).shape[1]
    return trunk, out_dim


def mlp_trunk(observation_space: gym.spaces.Box, hidden: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    """Flatten + Linear/LeakyReLU layers of widths ``hidden``; returns (trunk, output width)."""
    layers: list[nn.Module] = [nn.Flatten()]
    last = flat_dim(observation_space)
    for width in hidden:
        layers += [layer_init(nn.Linear(last, width)), nn.LeakyReLU()]
        last = width
    return nn.Sequential(*layers), last


def uses_convolutions(space: gym.spaces.Box) -> bool:
    """Whether :func:`conv_trunk` applies: an image space of at least 4x4 pixels."""
    if not is_image_space(space):
        return False
    _, height, width, _ = image_layout(space.shape)
    return min(height, width) >= 4  # three 2x2 convolutions need at least 4 pixels


def require_numeric_box(agent: str, space: gym.Space) -> None:
    """Refuse observation spaces an observation-embedding bonus (RND, ICM) cannot read."""
    if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.number) or flat_dim(space) == 0:
        raise CompositionError(
            f"agent {agent!r} needs a numeric Box observation space, got {space}; "
            "flatten or select it with a wrapper (e.g. minigrid.wrappers.ImgObsWrapper)"
        )
