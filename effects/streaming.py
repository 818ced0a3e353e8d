"""Streaming helpers: a sample FIFO and a delay line, both channels-first float32."""

from __future__ import annotations

import numpy as np


class SampleFifo:
    """First-in first-out queue of audio samples with amortised O(1) push and pop.

    Args:
        num_channels: channel count of every pushed block (1..64).
        capacity: initial room in samples; the buffer grows when a push needs more.
    """

    def __init__(self, num_channels: int, capacity: int = 16384) -> None:
        self._buffer = np.zeros((num_channels, max(1, capacity)), np.float32)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def clear(self) -> None:
        self._start = self._end = 0

    def push(self, block: np.ndarray) -> None:
        count = block.shape[1]
        if self._end + count > self._buffer.shape[1]:
            held = len(self)
            if held + count > self._buffer.shape[1]:
                grown = np.zeros((self._buffer.shape[0], 2 * (held + count)), np.float32)
                grown[:, :held] = self._buffer[:, self._start : self._end]
                self._buffer = grown
            else:
                self._buffer[:, :held] = self._buffer[:, self._start : self._end]
            self._start, self._end = 0, held
        self._buffer[:, self._end : self._end + count] = block
        self._end += count

    def push_zeros(self, count: int) -> None:
        self.push(np.zeros((self._buffer.shape[0], count), np.float32))

    def pop(self, count: int) -> np.ndarray:
        """Remove and return the oldest ``count`` samples; raises if fewer are held."""
        if count > len(self):
            raise IndexError(f"asked for {count} samples, {len(self)} held")
        out = self._buffer[:, self._start : self._start + count].copy()
        self._start += count
        return out


class DelayLine:
    """Delays a stream by a fixed number of samples (``delay_samples`` ≥ 0)."""

    def __init__(self, num_channels: int, delay_samples: int) -> None:
        self.delay_samples = int(delay_samples)
        self._fifo = SampleFifo(num_channels, self.delay_samples + 8192)
        self.reset()

    def reset(self) -> None:
        self._fifo.clear()
        self._fifo.push_zeros(self.delay_samples)

    def process(self, block: np.ndarray) -> np.ndarray:
        if self.delay_samples == 0:
            return block
        self._fifo.push(block)
        return self._fifo.pop(block.shape[1])
