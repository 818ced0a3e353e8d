"""The Processor protocol: what every pedalchain step looks like from the outside.

It mirrors ``pedalboard.Plugin`` so a Processor drops into pedalboard scripts:
``proc(audio, sample_rate)`` and ``proc.process(audio, sample_rate, buffer_size=8192, reset=True)``
take channels-first float32 audio (1-D means mono and gives 1-D back) and ``proc.reset()`` clears state.

Streaming contract (every Processor, ours and wrapped):

* ``process(block, sr, reset=False)`` returns exactly ``block.shape[-1]`` samples, delayed by
  ``latency`` samples.  State carries from call to call; a change of sample rate or channel count
  resets first, as pedalboard does.
* ``process(audio, sr, reset=True)`` (the default) resets, processes the whole buffer and returns it
  aligned with the input (latency removed, tail cut at the input length): pedalboard's one-shot semantics.
  A ``reset=False`` call after it starts from a reset state (pedalboard's plugins carry on from the state
  that call, its latency flushed with zeros, left behind).
"""

from __future__ import annotations

import contextlib
import contextvars
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import StreamingError

_ANALYSED = contextvars.ContextVar("pedalchain_input_analysed", default=False)
"""True inside a one-shot ``process`` whose input was already shown to :meth:`Processor.analyze_input`."""


@contextlib.contextmanager
def input_analysed() -> Iterator[None]:
    """One-shot ``process`` calls made inside skip :meth:`Processor.analyze_input`: the caller has shown each
    processor its input already."""
    token = _ANALYSED.set(True)
    try:
        yield
    finally:
        _ANALYSED.reset(token)


MAX_CHANNELS = 64
"""More rows than this in a 2-D array means the caller passed channels-last audio."""


def as_channels_first(audio: np.ndarray) -> tuple[np.ndarray, bool]:
    """Return ``(float32 array of shape (channels, samples), was_1d)``.

    Raises ValueError for arrays that are not 1-D or 2-D, that look channels-last, or whose samples are not
    floating point.
    """
    array = np.asarray(audio)
    if array.dtype.kind != "f":
        # integer PCM as read by scipy.io.wavfile would otherwise be taken as amplitudes thousands of times full scale
        raise ValueError(
            f"audio is {array.dtype}; pedalchain takes float32 or float64 samples in [-1, 1], as pedalboard does "
            "(integer PCM: divide by 2 ** (bits - 1), e.g. int16 / 32768)"
        )
    if array.ndim == 1:
        return np.ascontiguousarray(array[np.newaxis, :], dtype=np.float32), True
    if array.ndim != 2:
        raise ValueError(f"audio must be 1-D (mono) or 2-D (channels, samples); got shape {array.shape}")
    if array.shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"audio of shape {array.shape} looks channels-last; pedalchain takes (channels, samples): "
            "pass audio.T"
        )
    return np.ascontiguousarray(array, dtype=np.float32), False


class Processor(ABC):
    """Base class of every pedalchain processor.

    Subclasses implement :meth:`_prepare` (allocate state for a sample rate and channel count and
    return the latency in samples), :meth:`_process_block` (streaming) and :meth:`_reset_state`.
    They may override :meth:`_process_whole` when they have a faster or more exact one-shot path.
    """

    #: False when chunked processing would differ from one-shot (e.g. pedalboard's PitchShift).
    streamable: bool = True

    @property
    def analyses_input(self) -> bool:
        """Whether settings come from :meth:`analyze_input` (a detected cutoff, a noise profile): in a chain,
        such a processor is shown its input as it reaches it, the steps before it rendered
        (:meth:`~pedalchain.chains.engine.Chain.analyze_input`)."""
        return False

    def __init__(self) -> None:
        self._prepared: tuple[float, int] | None = None
        self._latency = 0
        self._run_formats: list[tuple[tuple[float, int] | None, int]] = []
        """The format and latency of each processor of :meth:`_runs` when this one was prepared."""
        self._needs_reset = True

    # -- public protocol ---------------------------------------------------------------------------------
    def __call__(
        self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192, reset: bool = True
    ) -> np.ndarray:
        return self.process(input_array, sample_rate, buffer_size=buffer_size, reset=reset)

    def process(
        self, input_array: np.ndarray, sample_rate: float, buffer_size: int = 8192, reset: bool = True
    ) -> np.ndarray:
        """Process ``input_array`` (channels-first, or 1-D mono) at ``sample_rate`` Hz.

        ``buffer_size`` (samples, ≥ 1) is the block size used internally by one-shot processing;
        ``reset=False`` streams (see the module docstring).
        """
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1 sample; got {buffer_size}")
        if not sample_rate > 0:
            raise ValueError(f"sample_rate must be positive (Hz); got {sample_rate}")
        audio, was_1d = as_channels_first(input_array)
        self._ensure_prepared(float(sample_rate), audio.shape[0], force_reset=reset)
        if reset:
            out = self._one_shot(audio, float(sample_rate), int(buffer_size)) if audio.shape[1] else audio.copy()
            self._needs_reset = True
        else:
            if not self.streamable:
                raise StreamingError(self._not_streamable_reason())
            out = self._process_block(audio, float(sample_rate)) if audio.shape[1] else audio.copy()
        return out[0] if was_1d else out

    def reset(self) -> None:
        """Clear all internal state (filter memories, delay lines, latency buffers)."""
        if self._prepared is not None:
            self._reset_state()
        self._needs_reset = False

    @property
    def latency(self) -> int:
        """Delay in samples of streamed output, at the sample rate last processed."""
        if self._prepared is None:
            raise StreamingError(
                "latency depends on the sample rate: process audio first or call latency_at(sample_rate)"
            )
        return self._latency

    def latency_at(self, sample_rate: float, num_channels: int = 2) -> int:
        """Streaming delay in samples at ``sample_rate`` Hz with ``num_channels`` channels (resets state)."""
        self._ensure_prepared(float(sample_rate), int(num_channels), force_reset=True)
        return self._latency

    def check_format(self, sample_rate: float, num_channels: int) -> None:
        """Refuse, with a ParameterError naming the setting, a sample rate or channel count this processor cannot
        run at.  A chain calls it for every step before preparing any, so the error names the step's YAML line;
        most processors take any format."""
        return None

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        """Look at the whole input before processing it; return one line per finding for the file summary.

        The file runner calls this with the input file's path (read it in blocks: memory must stay bounded)
        before streaming the file through; a one-shot ``process(..., reset=True)`` calls it with the buffer
        (channels, samples).  In a chain, a processor whose :attr:`analyses_input` is true sees what reaches it:
        the output of the steps before it, from its first sample, their latency in front.  Processors whose
        behaviour does not depend on the whole input (most) find nothing; the setting they derive survives
        :meth:`reset`.
        """
        return []

    def _one_shot(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        if _ANALYSED.get():  # an enclosing one-shot call (a Chain, a DryWet) has shown us the input already
            return self._process_whole(audio, sample_rate, buffer_size)
        with input_analysed():
            self.analyze_input(audio, sample_rate)
            return self._process_whole(audio, sample_rate, buffer_size)

    # -- for subclasses ------------------------------------------------------------------------------------
    @abstractmethod
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        """Set up for this sample rate and channel count, return the latency in samples."""

    @abstractmethod
    def _reset_state(self) -> None:
        """Clear streaming state; called only after :meth:`_prepare`."""

    @abstractmethod
    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        """Stream one non-empty block (channels, n) float32; return (channels_out, n), delayed by latency."""

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        """One-shot: stream the buffer and ``latency`` zeros after it, drop the first ``latency`` samples."""
        length = audio.shape[1]
        padded = np.concatenate([audio, np.zeros((audio.shape[0], self._latency), np.float32)], axis=1)
        blocks = [
            self._process_block(padded[:, start : start + buffer_size], sample_rate)
            for start in range(0, padded.shape[1], buffer_size)
        ]
        if not blocks:
            return audio.copy()
        return np.concatenate(blocks, axis=1)[:, self._latency : self._latency + length]

    def _set_up_again(self) -> None:
        """Prepare afresh on the next call (state restarts, the latency may change): a setting that the prepared
        state follows was changed."""
        self._prepared = None

    def _runs(self) -> Sequence[Processor]:
        """The processors this one runs inside it (a chain's stages, a blend's inner one): their latency is part
        of this one's."""
        return ()

    def _stale(self) -> bool:
        """Whether this processor must prepare afresh before its next call although its format did not change:
        a processor it runs has a latency other than the one this one was prepared with (a nested chain got a
        step, a restorer's setting moved its latency).  One that only has to prepare itself again, its latency
        the same, is prepared here and this one carries on."""
        runs = self._runs()
        if len(runs) != len(self._run_formats):
            return True
        for inner, (prepared, latency) in zip(runs, self._run_formats, strict=True):
            if prepared is None:
                return True
            if inner._prepared != prepared or inner._stale():
                if inner.latency_at(*prepared) != latency:
                    return True
            elif inner._latency != latency:
                return True
        return False

    def _reconfigured(self) -> None:
        """Set up again at the current sample rate and channel count after a change of configuration (a
        setting derived in :meth:`analyze_input`); the latency must not change, state restarts."""
        if self._prepared is not None:
            latency = int(self._prepare(*self._prepared))
            self._run_formats = [(inner._prepared, inner._latency) for inner in self._runs()]
            if latency != self._latency:
                raise StreamingError(f"{type(self).__name__}: latency changed from {self._latency} to {latency}")
            self._reset_state()

    def _not_streamable_reason(self) -> str:
        return f"{type(self).__name__} cannot stream; process whole buffers with reset=True"

    def _ensure_prepared(self, sample_rate: float, num_channels: int, force_reset: bool) -> None:
        if self._prepared != (sample_rate, num_channels) or self._stale():
            self._latency = int(self._prepare(sample_rate, num_channels))
            self._prepared = (sample_rate, num_channels)
            self._run_formats = [(inner._prepared, inner._latency) for inner in self._runs()]
            self._reset_state()
        elif force_reset or self._needs_reset:
            self._reset_state()
        self._needs_reset = False
