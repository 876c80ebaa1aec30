"""A recurrent core (LSTM or GRU) that steps one observation at a time while acting and replays whole
env sequences, with resets at episode starts, in the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MEMORY_KINDS = ("lstm", "gru")


class RecurrentCore(nn.Module):
    """One LSTM or GRU layer over ``[B, input_dim]`` features. Its state is a dict of ``[B, size]``
    tensors: ``h`` (and ``c`` for an LSTM); zeros start every episode.

    Weights are orthogonal (gain 1) and biases 0, as in CleanRL's ``ppo_atari_lstm.py``.
    """

    def __init__(self, kind: str, input_dim: int, size: int):
        super().__init__()
        if kind not in MEMORY_KINDS:
            raise ValueError(f"memory must be one of {', '.join(map(repr, MEMORY_KINDS))}, got {kind!r}")
        self.kind = kind
        self.size = size
        self.rnn: nn.LSTM | nn.GRU = nn.LSTM(input_dim, size) if kind == "lstm" else nn.GRU(input_dim, size)
        for name, parameter in self.rnn.named_parameters():
            if name.startswith("bias"):
                nn.init.constant_(parameter, 0.0)
            else:
                nn.init.orthogonal_(parameter, 1.0)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        names = ("h", "c") if self.kind == "lstm" else ("h",)
        return {name: (self.size,) for name in names}

    def _packed(self, state: dict[str, torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "lstm":
            return state["h"].unsqueeze(0).contiguous(), state["c"].unsqueeze(0).contiguous()
        return state["h"].unsqueeze(0).contiguous()

    def _unpacked(self, hidden: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        if isinstance(hidden, tuple):
            return {"h": hidden[0][0], "c": hidden[1][0]}
        return {"h": hidden[0]}

    def step(self, features: torch.Tensor, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        """One step: ``[B, input_dim]`` features and the state -> ``[B, size]`` outputs and the next state."""
        output, hidden = self.rnn(features.unsqueeze(0), self._packed(state))
        return output[0], self._unpacked(hidden)

    def sequence(
        self, features: torch.Tensor, episode_starts: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Replay ``[T, B, input_dim]`` from ``state`` (the state step 0 was acted from), resetting the
        state of an env to zeros before every step that starts an episode: ``[T, B, size]`` outputs.

        Two exact ways, the cheaper one is taken: cut the time axis where some env starts an episode
        and run each stretch as one fused recurrent call (few cuts), or split every env's sequence at
        its episode starts, pad the pieces to one length and run them all in a single call (many
        short episodes; as SB3-contrib's RecurrentPPO does)."""
        steps, envs = episode_starts.shape
        cut_times = episode_starts[1:].any(dim=1).nonzero().flatten().add(1).tolist()
        pieces = _pieces(episode_starts)
        padded_rows = pieces.length * pieces.count
        if len(cut_times) + 1 <= 2 or padded_rows > PADDING_LIMIT * steps * envs:
            return self._sequence_by_cuts(features, episode_starts, state, cut_times)
        return self._sequence_padded(features, episode_starts, state, pieces)

    def _sequence_by_cuts(
        self, features: torch.Tensor, episode_starts: torch.Tensor, state: dict[str, torch.Tensor], cuts: list[int]
    ) -> torch.Tensor:
        keep = (~episode_starts).to(features.dtype).unsqueeze(-1)
        bounds = [0, *cuts, features.shape[0]]
        outputs = []
        for start, stop in zip(bounds, bounds[1:]):
            state = {name: value * keep[start] for name, value in state.items()}
            output, hidden = self.rnn(features[start:stop], self._packed(state))
            state = self._unpacked(hidden)
            outputs.append(output)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _sequence_padded(
        self, features: torch.Tensor, episode_starts: torch.Tensor, state: dict[str, torch.Tensor], pieces: _Pieces
    ) -> torch.Tensor:
        steps, envs = episode_starts.shape
        # Time-major positions (t, b) -> (position in its piece, piece); env-major piece numbering.
        padded = features.new_zeros((pieces.length, pieces.count, features.shape[-1]))
        padded[pieces.position, pieces.piece] = features
        # Every piece starts from zeros except each env's first, which continues the stored state
        # (unless that env starts an episode at step 0).
        first = pieces.piece[0]  # [B]: the piece holding step 0 of each env
        keep_first = (~episode_starts[0]).to(features.dtype).unsqueeze(-1)
        initial = {}
        for name, value in state.items():
            start_state = value.new_zeros((pieces.count, value.shape[-1]))
            start_state[first] = value * keep_first
            initial[name] = start_state
        output, _ = self.rnn(padded, self._packed(initial))
        return output[pieces.position, pieces.piece]


# The padded replay may compute at most this many times the rows it needs; beyond, cut the time axis.
PADDING_LIMIT = 4


@dataclass(frozen=True)
class _Pieces:
    """Each env's sequence split at its episode starts: ``position[t, b]`` and ``piece[t, b]`` place
    step t of env b; ``count`` pieces, the longest ``length`` steps."""

    position: torch.Tensor
    piece: torch.Tensor
    count: int
    length: int


def _pieces(episode_starts: torch.Tensor) -> _Pieces:
    steps, envs = episode_starts.shape
    begins = episode_starts.clone()
    begins[0] = True
    env_major = begins.t().reshape(-1)  # [B * T]
    piece = (env_major.long().cumsum(0) - 1).reshape(envs, steps)
    times = torch.arange(steps, device=episode_starts.device).expand(envs, steps)
    begin_times = torch.where(begins.t(), times, torch.zeros_like(times)).cummax(dim=1).values
    position = times - begin_times
    count = int(piece[-1, -1]) + 1
    length = int(position.max()) + 1
    return _Pieces(position.t(), piece.t(), count, length)
