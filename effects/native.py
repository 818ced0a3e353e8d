"""Run consecutive pedalboard plugins as one native ``pedalboard.Pedalboard`` under our streaming contract."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import pedalboard

from ..errors import StreamingError
from .chatter import PLUGIN_TEARDOWN_CHATTER, chatter_dropped
from .processor import Processor
from .streaming import SampleFifo

FIXED_BLOCK_SIZE = 8192
"""Block size (samples) fed to segments holding MP3Compressor or Resample; equals pedalboard's default
``buffer_size``, so streamed output matches one-shot output exactly."""

FIXED_BLOCK_TYPES: tuple[type, ...] = (pedalboard.MP3Compressor, pedalboard.Resample, pedalboard.ExternalPlugin)
"""Their chunked output matches one-shot output only when every block has the same size.  For VST3
plugins pedalboard re-prepares the plugin (losing its state) whenever a block is larger than any since
the last reset, so hosted plugins get constant blocks too, as in a DAW."""

NON_STREAMABLE_TYPES: tuple[type, ...] = (pedalboard.PitchShift, pedalboard.GSMFullRateCompressor)
"""Chunked output differs from one-shot output whatever the block size (pedalboard #415, #267)."""

_LATENCY_MARGIN = 32
"""Extra samples of delay for fixed-block segments: Resample's lag wanders by a few samples per block."""


def walk_plugins(plugin: pedalboard.Plugin) -> Iterator[pedalboard.Plugin]:
    """Yield ``plugin`` and, for containers (Pedalboard, Chain, Mix), every plugin inside them."""
    yield plugin
    if isinstance(plugin, pedalboard.PluginContainer):
        for child in plugin:
            yield from walk_plugins(child)


class NativeSegment(Processor):
    """Consecutive native plugins processed by one ``pedalboard.Pedalboard`` (the GIL is released inside).

    pedalboard returns fewer samples than it is given while a latent plugin (BrickwallLimiter, VST3 with
    reported latency, MP3Compressor, Resample) fills up; its output is otherwise aligned with the input.
    This segment puts ``latency`` zeros in front, so every call returns as many samples as it was given.

    Args:
        plugins: native pedalboard plugins, in processing order.
    """

    def __init__(self, plugins: Sequence[pedalboard.Plugin]) -> None:
        super().__init__()
        self.board = pedalboard.Pedalboard(list(plugins))
        inner = [p for top in self.board for p in walk_plugins(top)]
        self.fixed_blocks = any(isinstance(p, FIXED_BLOCK_TYPES) for p in inner)
        self.external = any(isinstance(p, pedalboard.ExternalPlugin) for p in inner)
        self.blockers = sorted({type(p).__name__ for p in inner if isinstance(p, NON_STREAMABLE_TYPES)})
        self.streamable = not self.blockers
        self._reset_due = False
        self._input: SampleFifo | None = None
        self._output: SampleFifo | None = None

    def __repr__(self) -> str:
        return f"NativeSegment({list(self.board)!r})"

    def _not_streamable_reason(self) -> str:
        return (
            f"{', '.join(self.blockers)} gives different output when processed in blocks "
            "(pedalboard issues #415, #267); process the whole buffer at once"
        )

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self._reset_board()
        block = FIXED_BLOCK_SIZE
        zeros = np.zeros((num_channels, block), np.float32)
        fed = returned = worst_lag = 0
        out_channels = num_channels
        for _ in range(12 if self.fixed_blocks else 64):
            out = self.board.process(zeros, sample_rate, buffer_size=block, reset=False)
            fed += block
            returned += out.shape[1]
            worst_lag = max(worst_lag, fed - returned)
            if out.shape[1]:
                out_channels = out.shape[0]
                if not self.fixed_blocks:
                    break
        self._reset_due = True
        latency = worst_lag + (block - 1 + _LATENCY_MARGIN if self.fixed_blocks else 0)
        self._input = SampleFifo(num_channels) if self.fixed_blocks else None
        self._output = SampleFifo(out_channels) if latency or self.fixed_blocks else None
        return latency

    def _teardown_chatter_dropped(self) -> contextlib.AbstractContextManager[None]:
        """Around pedalboard's resets, which load many external plugins afresh (the old instance is deleted)."""
        return chatter_dropped(PLUGIN_TEARDOWN_CHATTER) if self.external else contextlib.nullcontext()

    def _reset_board(self) -> None:
        with self._teardown_chatter_dropped():
            self.board.reset()
        self._reset_due = False

    def _reset_state(self) -> None:
        # done before the next block, not now: pedalboard prepares a plugin that is reset twice in a row (a reset
        # here, then one before a one-shot render) for 0-sample buffers, and DPF plugins (zam-plugins) print
        # assertion failures, then re-prepare while active at the next block
        self._reset_due = True
        if self._input is not None:
            self._input.clear()
        if self._output is not None:
            self._output.clear()
            self._output.push_zeros(self._latency)

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        count = audio.shape[1]
        if self._reset_due:
            self._reset_board()
            # pedalboard takes the smaller dimension as channels and forgets the layout on reset: before a first
            # block of no more samples than channels (1 or 2 stereo samples, read as mono) an empty block pins it.
            # Only then: for an empty block pedalboard prepares the plugins for 0-sample buffers
            if count <= audio.shape[0]:
                self.board.process(np.zeros((audio.shape[0], 0), np.float32), sample_rate, reset=False)
        if self._output is None:
            out = self.board.process(audio, sample_rate, buffer_size=FIXED_BLOCK_SIZE, reset=False)
            if out.shape[1] != count:
                raise StreamingError(f"{self!r} returned {out.shape[1]} samples for {count}: unexpected latency")
            return out
        if self._input is not None:
            self._input.push(audio)
            while len(self._input) >= FIXED_BLOCK_SIZE:
                block = self._input.pop(FIXED_BLOCK_SIZE)
                self._output.push(self.board.process(block, sample_rate, FIXED_BLOCK_SIZE, reset=False))
        else:
            self._output.push(self.board.process(audio, sample_rate, buffer_size=FIXED_BLOCK_SIZE, reset=False))
        if len(self._output) < count:
            raise StreamingError(
                f"{self!r} held back more than its measured latency of {self._latency} samples"
            )
        return self._output.pop(count)

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        self._reset_due = False  # pedalboard resets the plugins itself
        with self._teardown_chatter_dropped():
            return self.board.process(audio, sample_rate, buffer_size=buffer_size, reset=True)
