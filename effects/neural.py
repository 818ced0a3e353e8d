"""Neural processors: torch models (``.safetensors`` or ``.nam``) as pedalchain Processors, and the ``model:`` step.

Importing this module does not import torch; loading a model does.

Streaming: every channel is one row of the model's batch with its own state.  An emulator declares its
sample rate; audio at another rate is resampled to it and back by two :class:`StreamingResampler` (windowed
sinc, exact integer round-trip delay, added to ``latency``).  Restorers run at the file's own rate.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..chains.steps import LoadContext, SaveContext, StepKind
from ..errors import ChainFileError, ModelFileError, ParameterError, PluginLoadError
from ..models.model_file import ModelInfo, open_model, resolve_model, shipped_models
from ..models.registry import NEEDS_TORCH
from .processor import Processor
from .streaming import SampleFifo

TORCH_THREADS_ENV = "PEDALCHAIN_TORCH_THREADS"
"""Environment variable: torch intra-op threads, set once when the first model loads (default
:data:`DEFAULT_TORCH_THREADS`)."""

DEFAULT_TORCH_THREADS = 1
"""Streaming runs small ops per block (an LSTM: one per sample): on a 2-core box torch's default of 2
threads made the shipped LSTM 10-25x slower (0.4x instead of 10x real time at block 512, under load),
and a 256-tap FIR gained at most 1.4x whole-file.  Large whole-buffer models may want more: set the
variable, or call ``torch.set_num_threads`` after loading."""

_threads_configured = False


def import_torch() -> Any:
    """``torch``, set up once for inference (thread count), or a one-line PluginLoadError when missing."""
    global _threads_configured
    try:
        import torch
    except ImportError:
        raise PluginLoadError(NEEDS_TORCH) from None
    if not _threads_configured:
        value = os.environ.get(TORCH_THREADS_ENV, "").strip() or str(DEFAULT_TORCH_THREADS)
        if not value.isdigit() or int(value) < 1:
            raise ParameterError(f"must be a whole number of threads ≥ 1, got {value!r}", where=TORCH_THREADS_ENV)
        torch.set_num_threads(int(value))
        _threads_configured = True
    return torch


# -- resampling --------------------------------------------------------------------------------------------------
class StreamingResampler:
    """Band-limited streaming sample-rate converter with an exact, chunk-independent time grid.

    Output sample ``j`` is the band-limited input evaluated at input time (in input samples)
    ``t_j = (j − delay_out) · P/Q − delay_in``, where ``P/Q = source_rate / target_rate`` (reduced):
    ``y[j] = Σ_n x[n] · h(n − t_j)`` over ``|n − t_j| < W``, with the Kaiser-windowed sinc
    ``h(τ) = 2ν · sinc(2ν τ) · I0(β √(1 − (τ/W)²)) / I0(β)``, cutoff ``ν = rolloff / 2 · min(1, Q/P)``
    cycles per input sample and half-width ``W = zero_crossings / (2ν)``.  The ``Q`` phases of ``h``
    are tabulated once (``K = ceil(W)`` taps each side), each normalised to unity DC gain.  Input before
    sample 0 is silence.

    Output ``j`` is produced as soon as input ``floor(t_j) + K`` has arrived, so how many outputs exist
    after ``N`` inputs depends only on ``N``, and each output is the same dot product whatever the block
    sizes were: chunk-invariant.  Speed: ``Q`` consecutive outputs (one period) read ``L = ⌊(Q−1)P/Q⌋ + 2K``
    consecutive inputs that start ``P`` later for the next period, so whole periods are one matrix
    product of strided input windows (R, L) with a (L, Q) polyphase matrix; only the partial periods at
    the ends of a call gather their windows one output at a time.  The product runs in torch, on the CPU.

    Args:
        source_rate, target_rate: Hz; their ratio must reduce to a denominator ≤ 16384.
        channels: rows of every block.
        delay_in: whole input samples subtracted from ``t_j`` (``K`` makes output ``j`` need input up to
            ``floor(j·P/Q)`` only).
        delay_out: whole output samples of delay.
    """

    ZERO_CROSSINGS = 48
    ROLLOFF = 0.9
    BETA = 8.6
    MAX_DENOMINATOR = 16384
    MAX_MATRIX_ENTRIES = 1 << 21
    """Larger polyphase matrices (odd rate pairs) are not built; every output is gathered instead."""
    PERIODS_PER_PRODUCT = 1024
    """Periods per matrix product (bounds the memory of the window copy)."""

    def __init__(
        self, source_rate: float, target_rate: float, channels: int, delay_in: int = 0, delay_out: int = 0
    ) -> None:
        ratio = rate_ratio(source_rate, target_rate)
        self.p, self.q = ratio.numerator, ratio.denominator
        self.channels = channels
        self.delay_in, self.delay_out = int(delay_in), int(delay_out)
        self.half_width = self.kernel_half_width(source_rate, target_rate)
        self._table = self._phase_table()  # (Q, 2K)
        self._offsets = np.arange(2 * self.half_width)
        self._period_length = (self.q - 1) * self.p // self.q + 2 * self.half_width
        self._torch = import_torch()  # its matmul keeps to the thread count set once (numpy's BLAS may not)
        fits = self.q * self._period_length <= self.MAX_MATRIX_ENTRIES
        self._matrix = self._torch.from_numpy(self._polyphase_matrix()) if fits else None
        self.reset()

    @classmethod
    def kernel_half_width(cls, source_rate: float, target_rate: float) -> int:
        """``K = ceil(W)``: input samples on each side of an output time that its value depends on."""
        ratio = rate_ratio(source_rate, target_rate)
        nu = cls.ROLLOFF / 2 * min(1.0, ratio.denominator / ratio.numerator)
        return math.ceil(cls.ZERO_CROSSINGS / (2 * nu))

    def _phase_table(self) -> np.ndarray:
        nu = self.ROLLOFF / 2 * min(1.0, self.q / self.p)
        width = self.ZERO_CROSSINGS / (2 * nu)
        k = self.half_width
        tau = (np.arange(2 * k) - k + 1)[np.newaxis, :] - (np.arange(self.q) / self.q)[:, np.newaxis]  # (Q, 2K)
        inside = np.clip(1.0 - (tau / width) ** 2, 0.0, None)
        h = 2 * nu * np.sinc(2 * nu * tau) * np.i0(self.BETA * np.sqrt(inside)) / np.i0(self.BETA)
        h[np.abs(tau) >= width] = 0.0
        return (h / h.sum(axis=1, keepdims=True)).astype(np.float32)

    def _polyphase_matrix(self) -> np.ndarray:
        """(L, Q): column ``s`` holds phase ``s·P mod Q`` of h, starting at window offset ``⌊s·P/Q⌋``."""
        matrix = np.zeros((self._period_length, self.q), np.float32)
        for s in range(self.q):
            offset, phase = divmod(s * self.p, self.q)
            matrix[offset : offset + 2 * self.half_width, s] = self._table[phase]
        return matrix

    def _base(self, j: np.ndarray | int) -> tuple[Any, Any]:
        """``(floor(t_j), phase index)`` for output index/indices ``j``."""
        numerator = (j - self.delay_out) * self.p - self.delay_in * self.q
        return numerator // self.q, numerator % self.q

    def reset(self) -> None:
        """Forget all input: history is silence again."""
        lowest = int(self._base(0)[0]) - self.half_width + 1
        self._first = min(0, lowest)  # absolute input index of self._buffer[:, 0]
        self._buffer = np.zeros((self.channels, -self._first), np.float32)
        self._received = 0
        self._produced = 0

    def outputs_after(self, received: int) -> int:
        """How many outputs exist once ``received`` input samples have arrived."""
        needed = (received - self.half_width + self.delay_in) * self.q  # output j needs (j − d_out)·P < needed
        return max(0, self.delay_out + -(-needed // self.p))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Push ``block`` (channels, n) float32; return every output now computable, (channels, m ≥ 0)."""
        self._buffer = np.concatenate((self._buffer, block), axis=1)
        self._received += block.shape[1]
        start, end = self._produced, self.outputs_after(self._received)
        if end <= start:
            return np.zeros((self.channels, 0), np.float32)
        pieces = []
        if self._matrix is None:
            periods_from, periods = end, 0
        else:
            periods_from = self.delay_out + -(-(start - self.delay_out) // self.q) * self.q  # first period start
            periods = max(0, (end - periods_from) // self.q)
        if periods:
            if periods_from > start:
                pieces.append(self._gathered(start, periods_from))
            for done in range(0, periods, self.PERIODS_PER_PRODUCT):
                pieces.append(self._by_periods(periods_from + done * self.q, min(self.PERIODS_PER_PRODUCT,
                                                                                  periods - done)))
            if periods_from + periods * self.q < end:
                pieces.append(self._gathered(periods_from + periods * self.q, end))
        else:
            pieces.append(self._gathered(start, end))
        self._produced = end
        keep_from = int(self._base(end)[0]) - self.half_width + 1 - self._first
        if keep_from > 0:
            keep_from = min(keep_from, self._buffer.shape[1])
            self._buffer = self._buffer[:, keep_from:]
            self._first += keep_from
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _gathered(self, start: int, end: int) -> np.ndarray:
        """Outputs ``start..end−1``, one window each: (channels, end − start)."""
        base, phase = self._base(np.arange(start, end, dtype=np.int64))
        columns = (base - self.half_width + 1 - self._first)[:, np.newaxis] + self._offsets  # (m, 2K)
        return np.einsum("cmk,mk->cm", self._buffer[:, columns], self._table[phase])

    def _by_periods(self, start: int, periods: int) -> np.ndarray:
        """``periods`` whole periods of outputs from ``start`` (a period start): (channels, periods·Q)."""
        first_window = int(self._base(start)[0]) - self.half_width + 1 - self._first
        span = (periods - 1) * self.p + self._period_length
        segment = self._torch.from_numpy(self._buffer[:, first_window : first_window + span])
        windows = segment.unfold(1, self._period_length, self.p)  # (channels, periods, L), a strided view
        return (windows.contiguous() @ self._matrix).reshape(self.channels, periods * self.q).numpy()


def rate_ratio(source_rate: float, target_rate: float) -> Fraction:
    """``source_rate / target_rate`` as an exact fraction; ParameterError when it has no small denominator."""
    ratio = Fraction(source_rate).limit_denominator(1000) / Fraction(target_rate).limit_denominator(1000)
    if ratio.denominator > StreamingResampler.MAX_DENOMINATOR or ratio.numerator > 64 * ratio.denominator:
        raise ParameterError(
            f"cannot resample between {source_rate:g} Hz and {target_rate:g} Hz: their ratio {ratio} is not a "
            "small fraction; convert the file to a standard rate first",
            where="sample_rate",
        )
    return ratio


# -- the processor -----------------------------------------------------------------------------------------------
class NeuralProcessor(Processor):
    """A StreamingModel run as a pedalchain Processor (pedalboard's ``Plugin`` protocol, our streaming contract).

    ``process(block, sr, reset=False)`` returns ``block.shape[-1]`` samples delayed by ``latency``; any
    block split gives the whole-buffer result within 1e-5.  Channels are batch rows with independent
    state.  Runs under ``torch.inference_mode()`` in float32.  ``latency`` is the model's own (0 for causal
    emulators) plus, when an emulator runs at another rate, the resamplers' round trip (about 2.5 ms:
    109 samples at 44.1 kHz into a 48 kHz model); the first ``latency`` streamed samples are silence.

    Known limit: two resampled models in one chain, streamed, differ from ``chain(audio)`` one-shot by
    ~1e-4 in the first ``latency`` samples (the second one's pre-roll carries the sinc pre-ringing of the
    first one's onset, which one-shot processing never shows); the file runner streams, so its output
    does not depend on the block size.

    Args:
        model: a :class:`~pedalchain.models.base.StreamingModel`.
        info: its :class:`~pedalchain.models.model_file.ModelInfo` (sample rate, kind, ...).
        device: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    """

    def __init__(self, model: Any, info: ModelInfo, device: str = "auto") -> None:
        super().__init__()
        torch = import_torch()
        if info.stereo_linked:
            raise ModelFileError("stereo-linked models are not supported by this pedalchain", where=info.path)
        self._torch = torch
        self.info = info
        self.device_spec = device
        self.device = resolve_device(device)
        self.model = model.to(self.device).float().eval().requires_grad_(False)
        self._state: dict[str, Any] = {}
        self._resample_in: StreamingResampler | None = None
        self._resample_out: StreamingResampler | None = None
        self._output: SampleFifo | None = None
        self._model_rate = info.sample_rate if info.kind == "emulator" and info.sample_rate else None
        self._channels = 0
        self._preroll = 0  # output samples still to silence after a reset (see _process_block)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> NeuralProcessor:
        """Load a ``.safetensors`` (pedalchain) or ``.nam`` (Neural Amp Modeler) file, or a shipped model by name."""
        path = resolve_model(path, Path.cwd())
        model, info = open_model(path)  # checks the file before importing torch; then needs it
        return cls(model, info, device=device)

    def __repr__(self) -> str:
        rate = f"{self.info.sample_rate:g} Hz" if self.info.sample_rate else "any rate"
        return f"NeuralProcessor('{self.info.name}', {self.info.architecture}, {rate}, {self.info.kind}, {self.device})"

    @property
    def receptive_field(self) -> int:
        """Samples of input (at the model's rate) that affect one output sample."""
        return int(self.model.receptive_field)

    # -- Processor ---------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self._channels = num_channels
        model_latency = int(self.model.latency)
        if self._model_rate is None or self._model_rate == sample_rate:
            self._resample_in = self._resample_out = self._output = None
            return model_latency
        # In: output k at file time k·fs/fm − K1 needs file input up to floor(k·fs/fm) only.
        k_in = StreamingResampler.kernel_half_width(sample_rate, self._model_rate)
        k_out = StreamingResampler.kernel_half_width(self._model_rate, sample_rate)
        # Out: sample j evaluates the model output at model time (j − D2)·fm/fs + Lm (undoing the model's
        # latency); it must be computable once j + 1 file samples are in: D2 ≥ (Lm + K2 + 1)·fs/fm − 1.
        delay_out = math.ceil((model_latency + k_out + 1) * rate_ratio(sample_rate, self._model_rate)) - 1
        self._resample_in = StreamingResampler(sample_rate, self._model_rate, num_channels, delay_in=k_in)
        self._resample_out = StreamingResampler(
            self._model_rate, sample_rate, num_channels, delay_in=-model_latency, delay_out=delay_out
        )
        self._output = SampleFifo(num_channels)
        return k_in + delay_out

    def _reset_state(self) -> None:
        torch = self._torch
        with torch.inference_mode():
            self._state = self.model.initial_state(self._channels, self.device)
            prewarm = int(self.model.prewarm_samples)
            if prewarm:
                silence = torch.zeros(self._channels, prewarm, device=self.device)
                self.model.forward_stream(silence, self._state)
        if self._resample_in is not None:
            self._resample_in.reset()
            self._resample_out.reset()
            self._output.clear()
        self._preroll = self._latency

    def _tensor(self, audio: np.ndarray) -> Any:
        """``audio`` (contiguous float32) as a tensor on the model's device, without a copy on the CPU."""
        x = self._torch.from_numpy(audio if audio.flags.writeable else audio.copy())
        return x if self.device.type == "cpu" else x.to(self.device)

    def _run_model(self, audio: np.ndarray) -> np.ndarray:
        """Stream one block (channels, n ≥ 1) float32 through the model at its own rate."""
        with self._torch.inference_mode():
            y = self.model.forward_stream(self._tensor(audio), self._state)
            return y.numpy() if self.device.type == "cpu" else y.cpu().numpy()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        if self._resample_in is None:
            out = self._run_model(audio)
        else:
            resampled = self._resample_in.process(audio)
            if resampled.shape[1]:
                self._output.push(self._resample_out.process(self._run_model(resampled)))
            out = self._output.pop(audio.shape[1])
        if self._preroll:
            # The first `latency` samples belong to times before the stream started.  They would carry
            # the resamplers' pre-ringing of the first input samples; a step after this one must see
            # silence there, as it does when the buffer is processed whole (history = zeros).
            count = min(self._preroll, out.shape[1])
            out[:, :count] = 0.0
            self._preroll -= count
        return out

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        if self._resample_in is not None:
            return super()._process_whole(audio, sample_rate, buffer_size)
        torch = self._torch
        prewarm, latency, length = int(self.model.prewarm_samples), self._latency, audio.shape[1]
        with torch.inference_mode():
            x = self._tensor(audio)
            if prewarm or latency:
                x = torch.nn.functional.pad(x, (prewarm, latency))
            y = self.model.forward(x)[:, prewarm + latency : prewarm + latency + length]
            return np.ascontiguousarray(y.cpu().numpy())


def resolve_device(spec: str) -> Any:
    """A torch device for "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N"."""
    torch = import_torch()
    if not isinstance(spec, str):
        raise ParameterError(f"expects 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}", where="device")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise ParameterError(f"expects 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}", where="device") from None
    if device.type not in ("cpu", "cuda"):
        raise ParameterError(f"expects 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}", where="device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"'{spec}' is not available on this machine (no CUDA); use auto or cpu", where="device")
    return device


# -- the YAML step kind ------------------------------------------------------------------------------------------
class ModelStep(StepKind):
    """``- model: PATH_OR_NAME`` with an optional ``device:``; a bare name (no ``/``, no suffix) is shipped."""

    keyword = "model"
    summary = "a neural model: a .safetensors/.nam path (relative to the YAML) or a shipped model's bare name"

    def build(self, value: Any, params: dict[str, Any], context: LoadContext, where: str) -> NeuralProcessor:
        if not isinstance(value, str) or not value.strip():
            raise ChainFileError(
                f"model: expects a model file (.safetensors or .nam) or a shipped model name, got {value!r}",
                where=where,
            )
        device = params.pop("device", "auto")
        if params:
            raise ChainFileError(
                f"model: takes no parameters except device, got {', '.join(params)}; "
                "wet, bypass and id work on any step",
                where=where,
            )
        return NeuralProcessor.load(resolve_model(value.strip(), context.base_dir), device=device)

    def owns(self, obj: Any) -> bool:
        return isinstance(obj, NeuralProcessor)

    def dump(self, obj: Any, context: SaveContext) -> dict[str, Any]:
        path = Path(obj.info.path).resolve()
        shipped = {file.resolve(): name for name, file in shipped_models().items()}
        entry: dict[str, Any] = {"model": shipped.get(path) or context.relative(path)}
        if obj.device_spec != "auto":
            entry["device"] = obj.device_spec
        return entry


MODEL_STEP = ModelStep()
