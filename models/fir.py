"""A causal FIR filter as a StreamingModel (architecture ``"fir"``)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .base import StreamingModel


class FIR(StreamingModel):
    """Causal finite impulse response: ``y[n] = Σ_{k=0}^{taps-1} h[k] · x[n − k]``.

    The learnable ``weight`` is the impulse response ``h`` (shape ``(taps,)``, ``h[0]`` applies to the
    current sample).  Whole buffers run through ``conv1d`` with ``taps − 1`` zeros of history in front;
    streaming carries the last ``taps − 1`` input samples per stream (state ``"history"``,
    shape ``(batch, taps − 1)``).

    Args:
        taps: length of the impulse response in samples (≥ 1); the receptive field.
        latency: samples by which the response is meant to lag its target (e.g. ``taps // 2`` for a
            linear-phase filter); 0 for a causal emulation.  Only declared, not applied.
    """

    architecture: ClassVar[str] = "fir"

    def __init__(self, taps: int = 256, latency: int = 0) -> None:
        super().__init__()
        if isinstance(taps, bool) or not isinstance(taps, int) or taps < 1:
            raise ValueError(f"taps must be a whole number of samples ≥ 1, got {taps!r}")
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency < taps:
            raise ValueError(f"latency must be a whole number of samples within [0, {taps - 1}], got {latency!r}")
        self.taps = taps
        self._declared_latency = latency
        impulse = torch.zeros(taps)
        impulse[0] = 1.0
        self.weight = torch.nn.Parameter(impulse)

    @property
    def receptive_field(self) -> int:
        return self.taps

    @property
    def latency(self) -> int:
        return self._declared_latency

    def config(self) -> dict[str, Any]:
        return {"taps": self.taps, "latency": self._declared_latency}

    def _kernel(self) -> torch.Tensor:
        # conv1d correlates, so the impulse response is reversed: (out=1, in=1, taps)
        return self.weight.flip(0).view(1, 1, self.taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (batch, samples) -> (batch, samples), history before the first sample = zeros."""
        padded = F.pad(x.unsqueeze(1), (self.taps - 1, 0))
        return F.conv1d(padded, self._kernel()).squeeze(1)

    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"history": torch.zeros(batch, self.taps - 1, device=device, dtype=self.weight.dtype)}

    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next block ``x`` (batch, n ≥ 1) -> (batch, n); keeps the last ``taps − 1`` inputs in ``state``."""
        joined = torch.cat((state["history"], x), dim=1)  # (batch, taps - 1 + n)
        state["history"] = joined[:, joined.shape[1] - (self.taps - 1) :]
        return F.conv1d(joined.unsqueeze(1), self._kernel()).squeeze(1)
