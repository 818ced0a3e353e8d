"""Streaming STFT analysis / weighted overlap-add synthesis: the base of the spectral restorers.

What a restorer built on it writes is one hook that receives a batch of complex STFT frames and returns the
modified frames; this module does the framing, the windows, the carried state, the overlap-add and the fixed
latency, identically for any split of the input into blocks.

Framing (all positions in samples of the input stream, counted from the first sample after ``reset``):

* ``n_fft`` (a power of two) and ``hop`` (``n_fft / 4`` by default) come from :func:`stft_size`: 2048 / 512 up to
  50 kHz (21.5 Hz per bin at 44.1 kHz, 11.6 ms hop), 4096 / 1024 above (about the same Hz per bin at 88.2/96 kHz).
* Frame ``k`` (k = 0, 1, 2, ...) covers the input samples ``[k·hop − (n_fft − hop), k·hop + hop)``: the stream
  is preceded by ``n_fft − hop`` zeros, so the very first samples are covered by as many frames as every other.
  :attr:`FrameContext.starts` gives each frame's first sample (negative for the first frames).
* Analysis and synthesis windows are both the periodic sqrt-Hann window (a "sine" window); their product, the
  Hann window, overlap-adds to the constant ``n_fft / (2·hop)`` at any hop that divides ``n_fft / 2`` (COLA),
  which the synthesis divides out.  So a hook that returns its input reproduces the input exactly (float32
  rounding, about 1e-7 of full scale), delayed by the latency.
* Spectra are ``numpy.fft.rfft`` of the windowed frame, unscaled: ``n_fft/2 + 1`` bins, bin ``j`` at
  ``j·fs/n_fft`` Hz; a full-scale sine centred on a bin has magnitude ``sum(window)/2`` (:attr:`StftStream.
  sine_magnitude`).  Phase is relative to the frame's first sample.

Latency: ``n_fft − 1 + lookahead·hop`` samples, where ``lookahead`` is the number of later frames the hook wants
to see beside each frame (see below).  It is the smallest delay at which every output sample is complete,
whatever the block size (a block of one sample included).

Neighbouring frames: a hook that needs context (an MLP over neighbouring frames, a temporal smoother) sets
``lookbehind`` and ``lookahead``: it then receives ``lookbehind`` earlier and ``lookahead`` later frames on either
side of the frames it must return (frames before the stream's start are the spectra of silence, zeros).  The
frames come in order and exactly once as central frames, whatever the block sizes, so a hook may also keep its
own state from call to call (cleared in :meth:`SpectralRestorer._reset_frames`).

Speed: frames are framed with a strided view, windowed, transformed and overlap-added in one vectorised numpy
call per block (all channels, all frames that the block completes), in float32.  A block of 1 sample costs a
Python call; one-shot processing uses large blocks (:data:`WHOLE_BLOCK`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..streaming import SampleFifo
from . import Restorer

MIN_RATE_HZ = 32000.0
MAX_RATE_HZ = 96000.0
"""Sample rates :class:`SpectralRestorer` accepts by default (a subclass may narrow them)."""
WHOLE_BLOCK = 65536
"""Block size (samples) of one-shot processing (fewer Python calls; frames still go in batches, below)."""
MAX_BATCH_FRAMES = 64
"""Frames analysed, handed to the hook and synthesised per batch (per channel: 64 x 2048 float32 = 0.5 MB).  Far
larger batches are slower, not faster (work arrays of tens of MB fall out of cache: 7x slower at 1000 frames);
64 beat 32 and 128 in the doubled-samples repair on an idle 2-core Xeon."""


def stft_size(sample_rate: float) -> tuple[int, int]:
    """``(n_fft, hop)`` in samples for ``sample_rate`` Hz: (2048, 512) up to 50 kHz, (4096, 1024) above."""
    n_fft = 2048 if sample_rate <= 50000 else 4096
    return n_fft, n_fft // 4


def sqrt_hann(n_fft: int) -> np.ndarray:
    """Periodic sqrt-Hann window (the sine window ``sin(π n / n_fft)``), float64, length ``n_fft``."""
    return np.sin(np.pi * np.arange(n_fft) / n_fft)


@dataclass(frozen=True)
class FrameContext:
    """What a frame hook knows about the frames it is given (beside the spectra themselves).

    ``first``: index ``k`` of the first frame in the batch (lookbehind frames included; may be negative);
    ``starts``: (frames,) int64 input position of each frame's first sample (``k·hop − (n_fft − hop)``);
    ``lookbehind``/``lookahead``: how many of the batch's frames are context only, at either end;
    ``sample_rate`` (Hz), ``n_fft``, ``hop`` (samples).
    """

    first: int
    starts: np.ndarray
    lookbehind: int
    lookahead: int
    sample_rate: float
    n_fft: int
    hop: int

    @property
    def frequencies_hz(self) -> np.ndarray:
        """Centre frequency of every rfft bin, Hz, shape (n_fft/2 + 1,)."""
        return np.arange(self.n_fft // 2 + 1) * (self.sample_rate / self.n_fft)


FrameHook = Callable[[np.ndarray, FrameContext], np.ndarray]
"""``hook(spectra, context) -> spectra``: (channels, bins, lookbehind + F + lookahead) complex64 in, (channels,
bins, F) complex out (the central F frames, modified)."""


class StftStream:
    """Streaming STFT -> ``hook`` -> sqrt-Hann weighted overlap-add, for ``channels`` channels (see module doc).

    Args:
        channels: channel count of every block (1..64).
        n_fft: frame length in samples, a power of two ≥ 16.
        hop: frame advance in samples; must divide ``n_fft / 2`` (so the Hann overlap-add is constant).
        hook: the frame function, :data:`FrameHook`.
        sample_rate: Hz, passed on in the :class:`FrameContext`.
        lookbehind, lookahead: context frames the hook wants on either side (≥ 0); lookahead adds
            ``lookahead·hop`` samples of latency.
    """

    def __init__(self, channels: int, n_fft: int, hop: int, hook: FrameHook, sample_rate: float,
                 lookbehind: int = 0, lookahead: int = 0) -> None:
        if n_fft < 16 or n_fft & (n_fft - 1):
            raise ValueError(f"n_fft must be a power of two ≥ 16; got {n_fft}")
        if hop < 1 or (n_fft // 2) % hop:
            raise ValueError(f"hop must divide n_fft/2 = {n_fft // 2}; got {hop}")
        if lookbehind < 0 or lookahead < 0:
            raise ValueError("lookbehind and lookahead are frame counts ≥ 0")
        self.channels, self.n_fft, self.hop = int(channels), int(n_fft), int(hop)
        self.hook, self.sample_rate = hook, float(sample_rate)
        self.lookbehind, self.lookahead = int(lookbehind), int(lookahead)
        self.bins = self.n_fft // 2 + 1
        window = sqrt_hann(self.n_fft)
        overlap = self.n_fft // self.hop
        gain = float(np.sum((window * window).reshape(overlap, self.hop), axis=0).mean())  # = n_fft / (2 hop)
        self._analysis = window.astype(np.float32)
        self._synthesis = (window / gain).astype(np.float32)
        self.sine_magnitude = float(window.sum() / 2)
        """|rfft| of a full-scale sine centred on a bin (analysis window sum / 2)."""
        self._output = SampleFifo(self.channels, 4 * self.n_fft)
        self.reset()

    @property
    def latency(self) -> int:
        """Delay of the output in samples: ``n_fft − 1 + lookahead·hop``."""
        return self.n_fft - 1 + self.lookahead * self.hop

    def reset(self) -> None:
        """Back to the state before the first sample: silence before the stream, nothing pending."""
        pad = self.n_fft - self.hop
        self._pending = np.zeros((self.channels, pad), np.float32)
        """Input samples not yet fully consumed by frames (starts ``pad`` zeros before the stream)."""
        self._tail = np.zeros((self.channels, pad), np.float32)
        """Overlap-add sums of the samples after the last completed hop."""
        self._context = np.zeros((self.channels, self.bins, self.lookbehind), np.complex64)
        """Spectra kept for the next batch: lookbehind frames before, and frames still waiting for lookahead."""
        self._next_frame = 0
        """Index of the next frame to analyse."""
        self._output.clear()
        self._output.push_zeros(self.latency - pad)

    def process(self, block: np.ndarray) -> np.ndarray:
        """Take (channels, n) float32 samples, return n samples of output delayed by :attr:`latency`."""
        span = MAX_BATCH_FRAMES * self.hop
        for start in range(0, block.shape[1], span):  # bounded batches: large FFT batches thrash memory
            self._consume(block[:, start : start + span])
        return self._output.pop(block.shape[1])

    def _consume(self, block: np.ndarray) -> None:
        n_fft, hop = self.n_fft, self.hop
        pending = np.concatenate([self._pending, np.asarray(block, np.float32)], axis=1)
        count = (pending.shape[1] - n_fft) // hop + 1 if pending.shape[1] >= n_fft else 0
        if count:
            frames = np.lib.stride_tricks.sliding_window_view(pending, n_fft, axis=1)[:, : (count - 1) * hop + 1 : hop]
            spectra = np.fft.rfft(frames * self._analysis, axis=-1).astype(np.complex64, copy=False)
            self._next_frame += count
            self._pending = pending[:, count * hop :]
            self._synthesise(np.concatenate([self._context, spectra.transpose(0, 2, 1)], axis=2))
        else:
            self._pending = pending

    def _synthesise(self, spectra: np.ndarray) -> None:
        """Run the hook on every frame whose context is complete, overlap-add its output, keep the rest."""
        central = spectra.shape[2] - self.lookbehind - self.lookahead
        if central <= 0:
            self._context = spectra
            return
        first = self._next_frame - spectra.shape[2]
        starts = (np.arange(first, first + spectra.shape[2], dtype=np.int64) * self.hop - (self.n_fft - self.hop))
        context = FrameContext(first, starts, self.lookbehind, self.lookahead, self.sample_rate, self.n_fft,
                               self.hop)
        modified = np.asarray(self.hook(spectra, context))
        if modified.shape != (self.channels, self.bins, central):
            expected = (self.channels, self.bins, central)
            raise ValueError(f"frame hook returned shape {modified.shape}; expected {expected}")
        self._context = spectra[:, :, central:]
        frames = np.fft.irfft(modified.transpose(0, 2, 1), n=self.n_fft, axis=-1).astype(np.float32, copy=False)
        frames *= self._synthesis
        self._overlap_add(frames)

    def _overlap_add(self, frames: np.ndarray) -> None:
        """Overlap-add (channels, F, n_fft) synthesis frames onto the carried tail; push the completed hops.

        Every output sample is summed in the order of its frames, oldest first, starting from the tail (the
        earlier batches' frames): float32 sums in another order differ in the last bit, and the output would
        depend on how the input was split into blocks."""
        channels, count, n_fft = frames.shape
        hop, overlap = self.hop, n_fft // self.hop
        total = np.zeros((channels, count + overlap - 1, hop), np.float32)
        total.reshape(channels, -1)[:, : n_fft - hop] = self._tail
        parts = frames.reshape(channels, count, overlap, hop)
        for shift in reversed(range(overlap)):  # R passes over all frames at once instead of F passes over R pieces
            total[:, shift : shift + count] += parts[:, :, shift]
        total = total.reshape(channels, -1)
        self._output.push(total[:, : count * hop])
        self._tail = total[:, count * hop :].copy()


class SpectralRestorer(Restorer):
    """A :class:`Restorer` that modifies STFT frames: subclasses implement :meth:`_process_frames`.

    The base streams every channel through one :class:`StftStream` (see the module doc for framing, windows and
    latency), refuses sample rates outside [:attr:`min_rate_hz`, :attr:`max_rate_hz`] with a ParameterError,
    and runs one-shot processing in blocks of :data:`WHOLE_BLOCK` samples (same output as any other split).

    Subclass hooks:
        :meth:`_process_frames` (required): ``(spectra, context) -> spectra``, see :data:`FrameHook`;
        :meth:`_prepare_frames` (optional): set up per sample rate / channel count before streaming;
        :meth:`_reset_frames` (optional): clear state the hook keeps between calls;
        :attr:`lookbehind` / :attr:`lookahead`: context frames wanted on either side;
        :meth:`stft_size`: ``(n_fft, hop)`` for a sample rate (default :func:`stft_size`).
    """

    lookbehind: int = 0
    lookahead: int = 0
    min_rate_hz: float = MIN_RATE_HZ
    max_rate_hz: float = MAX_RATE_HZ

    def stft_size(self, sample_rate: float) -> tuple[int, int]:
        """``(n_fft, hop)`` in samples at ``sample_rate`` Hz."""
        return stft_size(sample_rate)

    # -- Processor ----------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self.check_rate(sample_rate)
        n_fft, hop = self.stft_size(sample_rate)
        self._prepare_frames(sample_rate, num_channels, n_fft, hop)
        self._stft = StftStream(num_channels, n_fft, hop, self._process_frames, sample_rate,
                                self.lookbehind, self.lookahead)
        return self._stft.latency

    def _reset_state(self) -> None:
        self._stft.reset()
        self._reset_frames()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        return self._stft.process(audio)

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        return one_shot_blas_limited(super()._process_whole, audio, sample_rate, max(buffer_size, WHOLE_BLOCK))

    # -- for subclasses -----------------------------------------------------------------------------------
    def _prepare_frames(self, sample_rate: float, num_channels: int, n_fft: int, hop: int) -> None:
        """Set up for a sample rate and channel count (called before the stream is built); default: nothing."""

    def _reset_frames(self) -> None:
        """Clear state kept by :meth:`_process_frames` between calls; default: nothing."""

    def _process_frames(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        """Modify frames: (channels, bins, lookbehind + F + lookahead) complex64 -> (channels, bins, F).

        The default returns the central frames unchanged (a pure delay by the latency).
        """
        end = spectra.shape[2] - context.lookahead
        return spectra[:, :, context.lookbehind : end]


def one_shot_blas_limited(function: Callable[..., np.ndarray], *args: object) -> np.ndarray:
    """``function(*args)`` with BLAS held to one thread, as the file runner holds it while streaming: the
    hooks' small matrix products (tens of frames x hundreds of features) ran 18x slower with OpenBLAS's thread
    pool on a loaded 2-core machine than on one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return function(*args)


def central(spectra: np.ndarray, context: FrameContext) -> np.ndarray:
    """The frames of a batch that the hook must return (without the lookbehind/lookahead context)."""
    return spectra[:, :, context.lookbehind : spectra.shape[2] - context.lookahead]


__all__ = ["FrameContext", "FrameHook", "SpectralRestorer", "StftStream", "central", "one_shot_blas_limited",
           "sqrt_hann", "stft_size"]
