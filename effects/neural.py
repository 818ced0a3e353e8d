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
"""Environment variable: torch intra-op threads for neural steps (batch workers set 1)."""

_threads_configured = False


def import_torch() -> Any:
    """``torch``, set up once for inference (thread count), or a one-line PluginLoadError when missing."""
    global _threads_configured
    try:
        import torch
    except ImportError:
        raise PluginLoadError(NEEDS_TORCH) from None
    if not _threads_configured:
        value = os.environ.get(TORCH_THREADS_ENV, "").strip()
        if value:
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
    are tabulated once, each normalised to unity DC gain.  Input before sample 0 is silence.

    Output ``j`` is produced as soon as input ``floor(t_j) + K`` has arrived (``K = ceil(W)``), so how
    many outputs exist after ``N`` inputs depends only on ``N``, and each output is the same dot product
    whatever the block sizes were: chunk-invariant by construction.

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
    CHUNK = 8192
    """Outputs computed per vectorised step (bounds the gathered window memory)."""

    def __init__(
        self, source_rate: float, target_rate: float, channels: int, delay_in: int = 0, delay_out: int = 0
    ) -> None:
        ratio = rate_ratio(source_rate, target_rate)
        self.p, self.q = ratio.numerator, ratio.denominator
        self.channels = channels
        self.delay_in, self.delay_out = int(delay_in), int(delay_out)
        self.half_width = self.kernel_half_width(source_rate, target_rate)
        self._table = self._phase_table()
        self._offsets = np.arange(2 * self.half_width)
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
        needed = (received - self.half_width + self.delay_in) * self.q  # (j − d_out)·P ≥ needed fails first
        return max(0, self.delay_out + -(-needed // self.p))

    def process(self, block: np.ndarray) -> np.ndarray:
        """Push ``block`` (channels, n) float32; return every output now computable, (channels, m ≥ 0)."""
        self._buffer = np.concatenate((self._buffer, block), axis=1)
        self._received += block.shape[1]
        end = self.outputs_after(self._received)
        if end <= self._produced:
            return np.zeros((self.channels, 0), np.float32)
        pieces = []
        for start in range(self._produced, end, self.CHUNK):
            j = np.arange(start, min(end, start + self.CHUNK), dtype=np.int64)
            base, phase = self._base(j)
            columns = (base - self.half_width + 1 - self._first)[:, np.newaxis] + self._offsets  # (m, 2K)
            pieces.append(np.einsum("cmk,mk->cm", self._buffer[:, columns], self._table[phase]))
        self._produced = end
        keep_from = int(self._base(end)[0]) - self.half_width + 1 - self._first
        if keep_from > 0:
            keep_from = min(keep_from, self._buffer.shape[1])
            self._buffer = self._buffer[:, keep_from:]
            self._first += keep_from
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


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
    state.  Runs under ``torch.inference_mode()`` in float32.

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

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> NeuralProcessor:
        """Load a ``.safetensors`` (pedalchain) or ``.nam`` (Neural Amp Modeler) file, or a shipped model by name."""
        import_torch()
        path = resolve_model(path, Path.cwd())
        model, info = open_model(path)
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
            return self._run_model(audio)
        resampled = self._resample_in.process(audio)
        if resampled.shape[1]:
            self._output.push(self._resample_out.process(self._run_model(resampled)))
        return self._output.pop(audio.shape[1])

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
        import_torch()
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
