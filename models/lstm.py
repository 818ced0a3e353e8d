"""A small LSTM amp/pedal model as a StreamingModel (architecture ``"lstm"``)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import StreamingModel

SILENCE_CHUNK = 1024
"""Samples of silence per step while settling the state that silence leaves behind."""

SILENCE_MAX_SAMPLES = 65536
"""Give up settling after this many samples of silence (the state is then used as reached)."""

SILENCE_TOLERANCE = 1e-7
"""Settled when no state element moves more than this over one chunk of silence."""

FORWARD_SEGMENT = 65536
"""``forward`` runs long buffers in segments of this many samples (bounds memory; same result)."""


class LSTM(StreamingModel):
    """``y[n] = w · h[n] + b (+ x[n] with skip)``, ``h[n], c[n] = LSTMCell(x[n], h[n−1], c[n−1])``.

    One input feature (the sample), ``hidden_size`` units, one linear output.  Streaming state is the
    pair ``"h"``, ``"c"`` of shape ``(1, batch, hidden_size)``.

    "Silence before the first sample" is taken literally: the initial state is the state an infinitely
    long silence settles to (with biases it is not zero), found once by running silence until it stops
    changing and cached for the current weights.  So a fresh stream and a stream that has just been fed
    a long silence continue identically, and no prewarm is needed.

    Args:
        hidden_size: LSTM units (≥ 1); parameters ≈ 4·H·(H + 3) + H + 1.
        skip: add the input to the output (the LSTM then models the difference from a bypass).
    """

    architecture: ClassVar[str] = "lstm"

    def __init__(self, hidden_size: int = 16, skip: bool = True) -> None:
        super().__init__()
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a whole number ≥ 1, got {hidden_size!r}")
        if not isinstance(skip, bool):
            raise ValueError(f"skip must be true or false, got {skip!r}")
        self.hidden_size = hidden_size
        self.skip = skip
        self.lstm = torch.nn.LSTM(input_size=1, hidden_size=hidden_size, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, 1)
        self._silence: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    @property
    def receptive_field(self) -> int:
        """1: the recurrence has unbounded memory; no window of input is needed beyond the carried state."""
        return 1

    def config(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "skip": self.skip}

    # -- state ---------------------------------------------------------------------------------------------
    def _weights_key(self) -> tuple[int, ...]:
        return tuple(v for p in self.lstm.parameters() for v in (p.data_ptr(), p._version))

    def silence_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, c)`` of shape (1, 1, hidden_size) reached after a long silence (cached per weights)."""
        key = self._weights_key()
        if self._silence is None or self._silence[0] != key:
            parameter = self.head.weight
            zeros = torch.zeros(1, SILENCE_CHUNK, 1, device=parameter.device, dtype=parameter.dtype)
            h = torch.zeros(1, 1, self.hidden_size, device=parameter.device, dtype=parameter.dtype)
            c = torch.zeros_like(h)
            with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable in training too
                for _ in range(SILENCE_MAX_SAMPLES // SILENCE_CHUNK):
                    _, (h_next, c_next) = self.lstm(zeros, (h, c))
                    moved = max(float((h_next - h).abs().max()), float((c_next - c).abs().max()))
                    h, c = h_next, c_next
                    if moved < SILENCE_TOLERANCE:
                        break
            self._silence = (key, h.clone(), c.clone())
        return self._silence[1], self._silence[2]

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        h, c = self.silence_state()
        return {
            "h": h.to(device).expand(1, batch, self.hidden_size).contiguous(),
            "c": c.to(device).expand(1, batch, self.hidden_size).contiguous(),
        }

    # -- processing -----------------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden, (state["h"], state["c"]) = self.lstm(x.unsqueeze(-1), (state["h"], state["c"]))
        y = self.head(hidden).squeeze(-1)  # (batch, n)
        return y + x if self.skip else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, samples) -> (batch, samples) from the silence state (long inputs in segments)."""
        state = self.initial_state(x.shape[0], x.device)
        if x.shape[1] <= FORWARD_SEGMENT:
            return self._run(x, state)
        segments = range(0, x.shape[1], FORWARD_SEGMENT)
        return torch.cat([self._run(x[:, i : i + FORWARD_SEGMENT], state) for i in segments], dim=1)

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next block ``x`` (batch, n ≥ 1) -> (batch, n); carries ``state["h"]``, ``state["c"]``."""
        return self._run(x, state)
