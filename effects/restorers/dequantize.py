"""``restorer: dequantize``: undo sample-and-hold by N (staircase) and reduce the error of a coarse bit depth.

``hold: auto`` (default) finds the hold in :meth:`Dequantize.analyze_input`: k is a *change* when x[k] differs
from x[k-1] in any channel; a hold by N puts every change on one residue r of k mod N.  For N = 2 ..
:data:`MAX_HOLD` the changes per residue are counted over the whole input; the hold is the largest N whose busiest
residue holds >= 95 % of at least 500 changes, and the *phase* is that residue (the first sample of each held
group, x[r + mN], is a true sample).  ``hold: N`` states N (the phase is still detected; 0 when the input was not
analysed); ``hold: 1`` turns this part off.

Hold repair: the true samples d[m] = x[r + mN] pass through exactly (on-grid output = input, bit for bit);
between them y[r + mN + j] = sum_i h_{N,j}[i] d[m + i], i = -K+1 .. K (K = :data:`HALF_TAPS`), a polyphase
interpolator.  For N <= 8 the filters come from the weights file (``models/restore/fit_dequantize.py``): per N,
the least-squares (Wiener) interpolator fitted on clean corpus audio where it beat a Kaiser-windowed sinc (cutoff
at the new Nyquist fs/2N, beta 8) on validation clips, else that sinc.  In the shipped file the sinc won for every
N (a Wiener interpolator suits the average training spectrum, not each piece; its metadata ``hold_filters`` says
so).  For larger N, or without the weights file, the sinc.  Its cutoff sits at the new Nyquist because that makes
it a Nyquist filter: zero at every other true sample, so the identity row 0 belongs to it.  With a lower cutoff
(0.9 fs/2N, before) row 0 did not, and the mismatch mirrored the band edge around fs/N at -12 dB (an image band at
15.5-17.5 kHz for a hold by 4 at 44.1 kHz).  Nothing above fs/2N is restored here: ``restorer: auto`` follows a
hold repair with ``bandwidth`` from there.

``bits: auto`` (default) finds a coarse grid: the smallest b in 2 .. :data:`COARSE_BITS` (14) such that at least 99.9 %
of the nonzero samples (at least :data:`MIN_GRID_SAMPLES` of them) are multiples of 2^(1-b).  When b is found
(and no hold is), the quantisation error is noise of a *known* level, step^2 / 12 with step = 2^(1-b) (more with
dither): a spectral subtraction on the STFT frames of
:mod:`~pedalchain.effects.restorers.stft` removes ``alpha`` x that power per bin (gain max(0, 1 - alpha N / |X|^2)),
and each sample of the result is then limited to half a step from the input, so the output always rounds back
to the input (consistent with the quantiser) and no artefact can exceed the quantisation error.  ``alpha`` per bit
depth is fitted on quantised corpus audio (half with TPDF dither) by ``models/restore/fit_dequantize.py``.
``bits: N`` states it (2 .. 20), ``bits: 24`` turns it off.

Latency: n_fft - 1 samples of that STFT (2047 up to 50 kHz, 4095 above), fixed whatever is detected.  Without
detection (or never analysed, with ``auto``) the input passes through, delayed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from . import Restorer, resolve_model_param
from .stft import StftStream, stft_size

ARCHITECTURE = "dequantize-polyphase"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "restorers" / "dequantize.safetensors"
MAX_HOLD = 16
MAX_BITS = 20
"""Finest grid ``bits: N`` acts on."""
OFF_BITS = 24
"""``bits: 24`` turns the bit-depth smoothing off."""
COARSE_BITS = 14
"""Finest grid ``bits: auto`` looks for: a 16- or 24-bit file is not "coarse", it is how audio is stored."""
HALF_TAPS = 16
"""K: the hold interpolator uses K true samples either side."""
HOLD_REACH = HALF_TAPS * MAX_HOLD + 2 * MAX_HOLD
"""Input samples the hold interpolator may need behind the first sample it outputs."""
DEFAULT_ALPHA = 2.0
"""Over-subtraction of the quantisation noise power when the weights file has none for a depth."""
MIN_CHANGES = 500
CONCENTRATION = 0.95
GRID_SHARE = 0.999
MIN_GRID_SAMPLES = 1000
"""``bits: auto`` judges the grid from the nonzero samples only, and from no fewer than this many: a 10 ms click in
10 s of digital silence was "on a 2-bit grid", and the repair then moved it by up to 0.11."""
MIN_RATE_HZ, MAX_RATE_HZ = 8000.0, 192000.0


def sinc_interpolator(factor: int, half_taps: int = HALF_TAPS) -> np.ndarray:
    """(factor, 2 half_taps) Kaiser-windowed sinc polyphase filters, cutoff at the held signal's Nyquist: row j
    weights d[m - K + 1 .. m + K] for the sample j/factor of the way from d[m] to d[m + 1]; row 0 is exactly the
    identity (the sinc's zeros)."""
    offsets = np.arange(-half_taps + 1, half_taps + 1)
    filters = np.zeros((factor, 2 * half_taps))
    filters[0] = offsets == 0
    for j in range(1, factor):
        position = offsets - j / factor
        taps = np.sinc(position) * _kaiser(position, half_taps)
        filters[j] = taps / taps.sum()  # unity gain at DC
    return filters


def _kaiser(position: np.ndarray, half: int, beta: float = 8.0) -> np.ndarray:
    """Kaiser window evaluated at fractional ``position`` in (-half, half)."""
    ratio = np.clip(position / half, -1.0, 1.0)
    return np.i0(beta * np.sqrt(1 - ratio ** 2)) / np.i0(beta)


def hold_gather(x: np.ndarray, start: int, targets: np.ndarray, factor: int, phase: int, filters: np.ndarray,
                half_taps: int = HALF_TAPS) -> np.ndarray:
    """Interpolated output at absolute sample indices ``targets`` from ``x`` (channels, n) holding absolute
    samples [start, start + n); samples before index 0 count as zeros.  float64 (channels, len(targets))."""
    offset = targets - phase
    m0 = np.floor_divide(offset, factor)
    j = offset - m0 * factor
    first, last = int(m0.min()), int(m0.max())
    # every interpolated group m needs the true samples d[m - K + 1 .. m + K]: one sliding window per group
    source = phase + np.arange(first - half_taps + 1, last + half_taps + 1) * factor
    true = x[:, np.clip(source - start, 0, x.shape[1] - 1)].astype(np.float64) * (source >= 0)
    windows = np.lib.stride_tricks.sliding_window_view(true, 2 * half_taps, axis=1)
    groups = windows @ filters.T  # (channels, groups, factor): all positions of each group at once
    return groups[:, m0 - first, j]


def bits_hook(bits: int, alpha: float, n_fft: int) -> Callable[[np.ndarray, Any], np.ndarray]:
    """STFT frame hook: power spectral subtraction of ``alpha`` x the quantisation noise of a ``bits``-bit grid
    (white, step^2 / 12 per sample; per bin of the unscaled sqrt-Hann rfft that is step^2 / 12 x n_fft / 2)."""
    noise = alpha * (2.0 ** (1 - bits)) ** 2 / 12 * n_fft / 2

    def hook(spectra: np.ndarray, context: Any) -> np.ndarray:
        power = spectra.real ** 2 + spectra.imag ** 2
        return spectra * np.maximum(1.0 - noise / np.maximum(power, 1e-30), 0.0).astype(np.float32)

    return hook


def consistent(quantised: np.ndarray, estimate: np.ndarray, bits: int) -> np.ndarray:
    """``estimate`` moved back to within half a quantisation step of ``quantised`` (float64)."""
    step = 2.0 ** (1 - bits)
    centre = quantised.astype(np.float64)
    return centre + np.clip(estimate - centre, -step / 2, step / 2)


def requantize_buffer(audio: np.ndarray, sample_rate: float, bits: int, alpha: float) -> np.ndarray:
    """One-shot bit-depth repair of a (channels, n) buffer (what the restorer streams), float64."""
    n_fft, hop = stft_size(sample_rate)
    stream = StftStream(audio.shape[0], n_fft, hop, bits_hook(bits, alpha, n_fft), sample_rate)
    padded = np.concatenate([audio.astype(np.float32), np.zeros((audio.shape[0], stream.latency), np.float32)],
                            axis=1)
    return consistent(audio, stream.process(padded)[:, stream.latency:], bits)


def detect_hold_and_bits(source: Path | np.ndarray) -> dict[str, Any]:
    """Hold factor and phase, and grid bits, of a file (read in blocks) or a (channels, n) buffer: a dict with
    ``hold`` (N or None), ``phase``, ``changes``, ``bits`` (b or None), ``grid_share`` (per b tried)."""
    from ...chains.audio_io import source_blocks

    blocks = source_blocks(source, 1 << 16)
    counts = {n: np.zeros(n, np.int64) for n in range(2, MAX_HOLD + 1)}
    on_grid = np.zeros(COARSE_BITS + 1, np.int64)
    nonzero = 0
    position = 0
    previous = None
    for block in blocks:
        if not block.size:
            continue
        joined = block if previous is None else np.concatenate([previous, block], axis=1)
        first = position - (0 if previous is None else 1)
        changed = np.flatnonzero(np.any(joined[:, 1:] != joined[:, :-1], axis=0)) + 1 + first
        for n in counts:
            counts[n] += np.bincount(changed % n, minlength=n)
        scaled = block[block != 0].astype(np.float64)  # zero is on every grid: it says nothing
        nonzero += scaled.size
        for b in range(2, COARSE_BITS + 1):
            on_grid[b] += int(np.count_nonzero(np.abs(scaled * 2.0 ** (b - 1) - np.round(scaled * 2.0 ** (b - 1)))
                                               <= 1e-9 * 2.0 ** (b - 1)))
        previous = block[:, -1:]
        position += block.shape[1]
    hold, phase, changes = None, 0, 0
    for n in sorted(counts, reverse=True):
        busiest = int(counts[n].max())
        if counts[n].sum() >= MIN_CHANGES and busiest >= CONCENTRATION * counts[n].sum():
            hold, phase, changes = n, int(np.argmax(counts[n])), int(counts[n].sum())
            break
    bits = None
    for b in range(2, COARSE_BITS + 1):
        if nonzero >= MIN_GRID_SAMPLES and on_grid[b] >= GRID_SHARE * nonzero:
            bits = b
            break
    return {"hold": hold, "phase": phase, "changes": changes, "bits": bits,
            "grid_share": {b: on_grid[b] / max(nonzero, 1) for b in range(2, COARSE_BITS + 1)}}


_WEIGHTS: dict[str, dict[str, np.ndarray]] = {}


def load_weights(path: str | Path | None) -> dict[str, np.ndarray]:
    """The learned filters of a dequantize weights file (cached); the shipped one when ``path`` is None (none
    when it is missing: sinc interpolation, no bit-depth smoothing)."""
    from ...models.model_file import load_arrays

    if path is None and not DEFAULT_WEIGHTS.exists():
        return {}
    key = str(Path(path) if path is not None else DEFAULT_WEIGHTS)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = load_arrays(key, ARCHITECTURE)[0]
    return _WEIGHTS[key]


class Dequantize(Restorer):
    """Undo sample-and-hold and smooth a coarse bit depth (see the module docstring).

    Args:
        hold: "auto", or the hold factor N (1 = off, 2 .. 16).
        bits: "auto", or the bit depth b (2 .. 20; 24 = off).
        model: a dequantize weights file; None = the shipped ``dequantize.safetensors``.
    """

    name = "dequantize"
    min_rate_hz, max_rate_hz = MIN_RATE_HZ, MAX_RATE_HZ

    def __init__(self, hold: int | str = "auto", bits: int | str = "auto", model: str | Path | None = None) -> None:
        super().__init__()
        self.hold = hold
        self.bits = bits
        self.model = None if model is None else str(resolve_model_param(model, f"restorer: {self.name}.model",
                                                                        None, ARCHITECTURE))
        self._weights = load_weights(self.model)

    @property
    def hold(self) -> int | str:
        """"auto" or the hold factor N; set (checked as in the constructor), it applies from the next call."""
        return self._hold

    @hold.setter
    def hold(self, hold: int | str) -> None:
        self._hold = _setting(hold, "hold", 1, MAX_HOLD)
        self._factor = self._hold if isinstance(self._hold, int) and self._hold > 1 else None
        self._phase = 0
        self._set_up_again()  # the interpolator follows the factor

    @property
    def bits(self) -> int | str:
        """"auto" or the bit depth b; set (checked as in the constructor), it applies from the next call."""
        return self._bits

    @bits.setter
    def bits(self, bits: int | str) -> None:
        message = f"bits: expects 'auto', a whole number 2..{MAX_BITS} or {OFF_BITS} (off), got {bits!r}"
        try:
            value = _setting(bits, "bits", 2, OFF_BITS)
        except ParameterError:
            raise ParameterError(message, where="restorer: dequantize.bits") from None
        if isinstance(value, int) and MAX_BITS < value < OFF_BITS:
            raise ParameterError(message, where="restorer: dequantize.bits")
        self._bits = value
        self._grid = self._bits if isinstance(self._bits, int) and self._bits <= MAX_BITS else None
        self._set_up_again()

    @property
    def analyses_input(self) -> bool:
        return self.hold != 1 or self.bits == "auto"  # a stated hold still takes its phase from the input

    def __repr__(self) -> str:
        return f"Dequantize(hold={self.hold!r}, bits={self.bits!r})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> Dequantize:
        unknown = set(params) - {"hold", "bits", "model"}
        if unknown:
            raise ParameterError(f"dequantize takes hold, bits and model, not {', '.join(sorted(unknown))}",
                                 where=where)
        try:
            model = params.get("model")
            if model is not None:
                model = resolve_model_param(model, "model", base_dir, ARCHITECTURE)
            return cls(params.get("hold", "auto"), params.get("bits", "auto"), model)
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.hold != "auto":
            out["hold"] = self.hold
        if self.bits != "auto":
            out["bits"] = self.bits
        if self.model is not None:
            out["model"] = self.model
        return out

    @property
    def detected(self) -> tuple[int | None, int, int | None]:
        """(hold factor or None, phase, grid bits or None) in use."""
        return self._factor, self._phase, self._grid

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        if self.hold != "auto" and self.bits != "auto" and not (isinstance(self.hold, int) and self.hold > 1):
            return []
        found = detect_hold_and_bits(source)
        if self.hold == "auto":
            self._factor = found["hold"]
        if self._factor:
            self._phase = found["phase"] % self._factor if found["hold"] == self._factor else 0
        if self.bits == "auto":
            self._grid = found["bits"]
        self._reconfigured()
        lines = []
        if self._factor:
            lines.append(f"dequantize: sample-and-hold by {self._factor} (phase {self._phase}, "
                         f"{found['changes']} changes): interpolating")
        if self._grid and not self._factor:
            lines.append(f"dequantize: samples on a {self._grid}-bit grid: removing its quantisation noise "
                         "within half a step")
        return lines or ["dequantize: no hold and no coarse bit depth found: passing through"]

    # -- Processor ---------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self.check_rate(sample_rate)
        self._channels = num_channels
        self._filters = None
        if self._factor:
            key = f"hold{self._factor}"
            self._filters = (self._weights[key].astype(np.float64) if key in self._weights
                             else sinc_interpolator(self._factor))
            self._filters[0] = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1) == 0  # true samples pass exactly
        n_fft, hop = stft_size(sample_rate)
        self._latency = n_fft - 1  # the STFT's; the same whether or not it is used, so it never changes
        self._stft = None
        if self._grid and not self._factor:
            levels, alphas = self._weights.get("bits_levels"), self._weights.get("bits_alpha")
            alpha = (float(alphas[int(np.argmin(np.abs(levels - self._grid)))])
                     if levels is not None and alphas is not None and len(levels) else DEFAULT_ALPHA)
            self._stft = StftStream(num_channels, n_fft, hop, bits_hook(self._grid, alpha, n_fft), sample_rate)
            assert self._stft.latency == self._latency
        return self._latency

    def _reset_state(self) -> None:
        self._held = np.zeros((self._channels, 0), np.float32)
        self._base = 0
        self._end = 0
        if self._stft is not None:
            self._stft.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        count = audio.shape[1]
        self._held = np.concatenate([self._held, audio], axis=1)
        self._end += count
        first = self._end - count - self._latency
        estimate = self._stft.process(audio) if self._stft is not None else None  # delayed by the same latency
        out = np.zeros((self._channels, count), np.float32)
        start = max(first, 0)
        if start < first + count:
            targets = np.arange(start, first + count)
            if self._filters is not None:
                values = hold_gather(self._held, self._base, targets, self._factor, self._phase, self._filters)
            elif estimate is not None:
                values = consistent(self._held[:, targets - self._base], estimate[:, start - first:], self._grid)
            else:
                values = self._held[:, targets - self._base]
            out[:, start - first:] = values
        keep_from = max(self._base, first + count - HOLD_REACH)
        if keep_from > self._base:
            self._held = self._held[:, keep_from - self._base:]
            self._base = keep_from
        return out


def _setting(value: Any, name: str, low: int, high: int) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: expects 'auto' or a whole number {low}..{high}, got {value!r}",
                             where=f"restorer: dequantize.{name}") from None
    if isinstance(value, bool) or not math.isfinite(number) or not number.is_integer() or not low <= number <= high:
        raise ParameterError(f"{name}: expects 'auto' or a whole number {low}..{high}, got {value!r}",
                             where=f"restorer: dequantize.{name}")
    return int(number)
