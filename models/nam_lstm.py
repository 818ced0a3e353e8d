"""Neural Amp Modeler's LSTM as a StreamingModel (architecture ``"nam_lstm"``).

NAM's LSTM (``nam/models/recurrent.py``) differs from pedalchain's own :class:`~pedalchain.models.lstm.LSTM`:
it may stack layers, has no input skip, and starts every stream from an initial hidden and cell state
stored in the model file (NAM writes the state its network reaches after 48,000 samples of silence
from zeros).  NAM's torch code and its C++ plugin start from that stored state with no pre-warm, so this
model does the same (``prewarm_samples`` is 0).

Per sample, for layers ``l = 1..L`` (``x⁽⁰⁾[n]`` = the input sample)::

    i, f, g, o = split(W_l · [x⁽ˡ⁻¹⁾[n]; h_l[n−1]] + b_l)          # 4·H gates
    c_l[n] = σ(f) ⊙ c_l[n−1] + σ(i) ⊙ tanh(g)
    h_l[n] = σ(o) ⊙ tanh(c_l[n]),   x⁽ˡ⁾[n] = h_l[n]
    y[n]   = w · h_L[n] + b

Streaming state: ``"h"`` and ``"c"``, each (layers, batch, hidden_size).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import StreamingModel

SEGMENT = 2048
"""Long buffers run through the LSTM in segments of this many samples, carrying the state (same result).

NAM uses 65,535; on this CPU 1,024–4,096-sample segments run about 1.5× faster (the input projections
torch precomputes for a whole segment, 4·H floats per sample, then stay in cache)."""


class NamLSTM(StreamingModel):
    """NAM's LSTM: ``num_layers`` stacked LSTM layers of ``hidden_size`` units and a linear head.

    Shapes: ``forward(x)`` takes (batch, samples) float32 and returns (batch, samples).  Parameters:
    ``core`` (a ``torch.nn.LSTM``; NAM stores one bias per layer, kept in ``bias_ih`` with ``bias_hh``
    zero), ``head`` (``Linear(hidden_size, 1)``), ``initial_hidden`` and ``initial_cell`` (each
    (num_layers, hidden_size)), the state every stream starts from.

    Args:
        hidden_size: units per layer (≥ 1); NAM's standard LSTM has 24, "nano" 12.
        num_layers: stacked layers (≥ 1).
    """

    architecture: ClassVar[str] = "nam_lstm"

    def __init__(self, hidden_size: int = 24, num_layers: int = 1) -> None:
        super().__init__()
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number ≥ 1, got {value!r}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.core = torch.nn.LSTM(1, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = torch.nn.Linear(hidden_size, 1)
        self.initial_hidden = torch.nn.Parameter(torch.zeros(num_layers, hidden_size))
        self.initial_cell = torch.nn.Parameter(torch.zeros(num_layers, hidden_size))

    @property
    def receptive_field(self) -> int:
        """1: the recurrence carries its memory in the state, not in a window of input."""
        return 1

    def config(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "num_layers": self.num_layers}

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The stored initial state, repeated for ``batch`` streams: ``h``, ``c`` (layers, batch, hidden)."""
        with torch.no_grad():
            h = self.initial_hidden.detach().to(device)[:, None, :].expand(-1, batch, -1).contiguous()
            c = self.initial_cell.detach().to(device)[:, None, :].expand(-1, batch, -1).contiguous()
        return {"h": h, "c": c}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, samples) -> (batch, samples), from the stored initial state."""
        batch = x.shape[0]
        state = (
            self.initial_hidden[:, None, :].expand(-1, batch, -1).contiguous(),
            self.initial_cell[:, None, :].expand(-1, batch, -1).contiguous(),
        )
        return self._run(x, state)[0]

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next block ``x`` (batch, n ≥ 1) -> (batch, n); carries ``h`` and ``c`` in ``state``."""
        y, (state["h"], state["c"]) = self._run(x, (state["h"], state["c"]))
        return y

    def _run(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (batch, n) from ``state`` -> (output (batch, n), final state), in segments of :data:`SEGMENT`."""
        outputs = []
        for start in range(0, x.shape[1], SEGMENT):
            features, state = self.core(x[:, start : start + SEGMENT, None], state)
            outputs.append(features)
        features = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        return self.head(features)[:, :, 0], state

    # -- NAM weight order ----------------------------------------------------------------------------------------
    def nam_weight_count(self) -> int:
        """Length of a ``.nam`` file's flat weights: per layer 4H·(in + H) + 4H + 2H, then H + 1."""
        h = self.hidden_size
        return sum(4 * h * ((1 if layer == 0 else h) + h) + 6 * h for layer in range(self.num_layers)) + h + 1

    def nam_weights(self) -> torch.Tensor:
        """The flat ``.nam`` weights: per layer ``[W_ih | W_hh]`` row-major (4H, in + H), ``b_ih + b_hh``,
        initial hidden, initial cell; then the head's weight (H) and bias (1)."""
        parts = []
        for layer in range(self.num_layers):
            w_ih = getattr(self.core, f"weight_ih_l{layer}")
            w_hh = getattr(self.core, f"weight_hh_l{layer}")
            bias = getattr(self.core, f"bias_ih_l{layer}") + getattr(self.core, f"bias_hh_l{layer}")
            parts += [torch.cat((w_ih, w_hh), dim=1).flatten(), bias, self.initial_hidden[layer],
                      self.initial_cell[layer]]
        parts += [self.head.weight.flatten(), self.head.bias]
        return torch.cat([p.detach().float().flatten() for p in parts])

    def load_nam_weights(self, weights: torch.Tensor) -> None:
        """Inverse of :meth:`nam_weights`; ``weights`` must have :meth:`nam_weight_count` elements."""
        if weights.numel() != self.nam_weight_count():
            raise ValueError(f"expected {self.nam_weight_count()} weights, got {weights.numel()}")
        h, i = self.hidden_size, 0

        def take(n: int) -> torch.Tensor:
            nonlocal i
            i += n
            return weights[i - n : i]

        with torch.no_grad():
            for layer in range(self.num_layers):
                fan_in = 1 if layer == 0 else h
                w = take(4 * h * (fan_in + h)).reshape(4 * h, fan_in + h)
                getattr(self.core, f"weight_ih_l{layer}").copy_(w[:, :fan_in])
                getattr(self.core, f"weight_hh_l{layer}").copy_(w[:, fan_in:])
                getattr(self.core, f"bias_ih_l{layer}").copy_(take(4 * h))
                getattr(self.core, f"bias_hh_l{layer}").zero_()
                self.initial_hidden[layer].copy_(take(h))
                self.initial_cell[layer].copy_(take(h))
            self.head.weight.copy_(take(h).reshape(1, h))
            self.head.bias.copy_(take(1))
