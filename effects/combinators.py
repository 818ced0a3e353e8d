"""Processors built from other processors: a latency-aligned dry/wet blend and parallel branches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .processor import Processor
from .streaming import DelayLine


class DryWet(Processor):
    """Blend of a processor's output with its input: ``y = wet · f(x) + (1 − wet) · x``.

    The dry path is delayed by the inner processor's latency, so the blend never comb-filters.

    Args:
        inner: the processor being blended; must keep the channel count.
        wet: share of processed signal, 0.0 (dry only) to 1.0 (processed only).
    """

    def __init__(self, inner: Processor, wet: float) -> None:
        super().__init__()
        if not 0.0 <= wet <= 1.0:
            raise ValueError(f"wet must be within [0, 1]; got {wet}")
        self.inner = inner
        self.wet = float(wet)
        self.streamable = inner.streamable
        self._dry: DelayLine | None = None

    def __repr__(self) -> str:
        return f"DryWet({self.inner!r}, wet={self.wet:g})"

    def _runs(self) -> Sequence[Processor]:
        return (self.inner,)

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        latency = self.inner.latency_at(sample_rate, num_channels)
        self._dry = DelayLine(num_channels, latency)
        return latency

    def _reset_state(self) -> None:
        self.inner.reset()
        self._dry.reset()

    @property
    def analyses_input(self) -> bool:
        return self.inner.analyses_input

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        return self.inner.analyze_input(source, sample_rate)

    def _blend(self, processed: np.ndarray, dry: np.ndarray) -> np.ndarray:
        processed *= self.wet
        processed += (1.0 - self.wet) * dry
        return processed

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        processed = self.inner.process(audio, sample_rate, reset=False)
        return self._blend(processed, self._dry.process(audio))

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        return self._blend(self.inner.process(audio, sample_rate, buffer_size, reset=True), audio)


class Parallel(Processor):
    """Branches fed the same input, their outputs summed; shorter-latency branches are delayed to align.

    Args:
        branches: processors (usually Chains), at least one; each must keep the channel count.
    """

    def __init__(self, branches: Sequence[Processor]) -> None:
        super().__init__()
        if not branches:
            raise ValueError("parallel needs at least one branch")
        self.branches = list(branches)
        self.streamable = all(branch.streamable for branch in self.branches)
        self._align: list[DelayLine] = []

    def __repr__(self) -> str:
        return f"Parallel({self.branches!r})"

    def _runs(self) -> Sequence[Processor]:
        return self.branches

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        latencies = [branch.latency_at(sample_rate, num_channels) for branch in self.branches]
        latency = max(latencies)
        self._align = [DelayLine(num_channels, latency - own) for own in latencies]
        return latency

    @property
    def analyses_input(self) -> bool:
        return any(branch.analyses_input for branch in self.branches)

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        return [note for branch in self.branches for note in branch.analyze_input(source, sample_rate)]

    def _reset_state(self) -> None:
        for branch, line in zip(self.branches, self._align, strict=True):
            branch.reset()
            line.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        total = np.zeros_like(audio)
        for branch, line in zip(self.branches, self._align, strict=True):
            total += line.process(branch.process(audio, sample_rate, reset=False))
        return total

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        total = np.zeros_like(audio)
        for branch in self.branches:
            total += branch.process(audio, sample_rate, buffer_size, reset=True)
        return total
