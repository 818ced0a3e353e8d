"""The contract every torch model in pedalchain follows, so one NeuralProcessor can run them all.

This module imports torch: import it only when a neural step is built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch


class StreamingModel(torch.nn.Module, ABC):
    """A causal audio model that runs on a whole buffer or block by block with carried state.

    Shapes: ``x`` is ``(batch, samples)`` float32, one row per independent stream (the processor
    puts each channel in its own row); the output has the same shape.  Streaming any split of a
    signal through :meth:`forward_stream` from :meth:`initial_state` gives :meth:`forward` of the
    whole signal within 1e-5.  Both start from silence: history before the first sample is zeros.

    Subclasses set ``architecture`` (the registry key written to model files) and implement the
    abstract members; ``config()`` must return the JSON-able keyword arguments of ``__init__``.
    """

    architecture: ClassVar[str]

    @property
    @abstractmethod
    def receptive_field(self) -> int:
        """Samples of input (the current one included) that affect one output sample; 1 for memoryless."""

    @property
    def latency(self) -> int:
        """Samples by which the output lags the input (0 for causal emulators)."""
        return 0

    @property
    def prewarm_samples(self) -> int:
        """Samples of silence to run through a fresh state before real audio (0 when not needed)."""
        return 0

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-buffer output for ``x`` of shape (batch, samples), from silence."""

    @abstractmethod
    def initial_state(self, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
        """Fresh streaming state for ``batch`` streams (zero history)."""

    @abstractmethod
    def forward_stream(self, x: torch.Tensor, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """Output for the next block ``x`` (batch, n ≥ 1); updates ``state`` in place."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture with ``type(self)(**config)``."""
