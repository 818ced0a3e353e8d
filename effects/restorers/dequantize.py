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
0.9 x the new Nyquist, beta 8) on validation clips, else that sinc.  In the shipped file the sinc won for every N
(a Wiener interpolator suits the average training spectrum, not each piece; its metadata ``hold_filters`` says so).
For larger N, or without the weights file, the sinc.

``bits: auto`` (default) finds a coarse grid: the smallest b in 2 .. :data:`MAX_BITS` such that at least 99.9 %
of the samples are multiples of 2^(1-b).  When b is found (and no hold is), each sample moves towards a
learned smoothing of its neighbours (a symmetric 31-tap FIR fitted per bit depth on quantised corpus audio,
with and without TPDF dither), and the move is limited to half a quantisation step: the output always rounds
back to the input (consistent with the quantiser), never more than step/2 from it.  ``bits: N`` states it,
``bits: 24`` (or more) turns it off.

Latency: K x MAX_HOLD + 15 samples, fixed whatever is detected.  Without detection (or never analysed, with
``auto``) the input passes through, delayed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from . import Restorer, resolve_model_param

ARCHITECTURE = "dequantize-polyphase"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "restorers" / "dequantize.safetensors"
MAX_HOLD = 16
MAX_BITS = 20
"""Grids finer than this are not looked for (a 24-bit file is not "coarse")."""
HALF_TAPS = 16
"""K: the hold interpolator uses K true samples either side."""
BITS_HALF = 15
"""The bit-depth smoother is 2 x 15 + 1 taps."""
LATENCY = HALF_TAPS * MAX_HOLD + BITS_HALF
MIN_CHANGES = 500
CONCENTRATION = 0.95
GRID_SHARE = 0.999
MIN_RATE_HZ, MAX_RATE_HZ = 8000.0, 192000.0


def sinc_interpolator(factor: int, half_taps: int = HALF_TAPS) -> np.ndarray:
    """(factor, 2 half_taps) Kaiser-windowed sinc polyphase filters: row j weights d[m - K + 1 .. m + K] for
    the sample j/factor of the way from d[m] to d[m + 1]; row 0 is exactly the identity."""
    offsets = np.arange(-half_taps + 1, half_taps + 1)
    filters = np.zeros((factor, 2 * half_taps))
    filters[0] = offsets == 0
    for j in range(1, factor):
        position = offsets - j / factor
        taps = np.sinc(0.9 * position) * _kaiser(position, half_taps)
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
    taps = np.arange(-half_taps + 1, half_taps + 1)
    source = phase + (m0[:, None] + taps[None, :]) * factor  # absolute indices of the true samples used
    valid = source >= 0
    values = x[:, np.clip(source - start, 0, x.shape[1] - 1)].astype(np.float64) * valid
    return np.einsum("ctk,tk->ct", values, filters[j])


def bits_smooth(x: np.ndarray, start: int, targets: np.ndarray, step: float, fir: np.ndarray) -> np.ndarray:
    """Consistent smoothing at ``targets``: x + clip(fir * x - x, -step/2, step/2), float64."""
    half = (len(fir) - 1) // 2
    index = targets[:, None] + np.arange(-half, half + 1)[None, :]
    valid = index >= 0
    values = x[:, np.clip(index - start, 0, x.shape[1] - 1)].astype(np.float64) * valid
    centre = x[:, targets - start].astype(np.float64)
    smooth = values @ fir
    return centre + np.clip(smooth - centre, -step / 2, step / 2)


def detect_hold_and_bits(source: Path | np.ndarray) -> dict[str, Any]:
    """Hold factor and phase, and grid bits, of a file (read in blocks) or a (channels, n) buffer: a dict with
    ``hold`` (N or None), ``phase``, ``changes``, ``bits`` (b or None), ``grid_share`` (per b tried)."""
    if isinstance(source, np.ndarray):
        audio = np.atleast_2d(source)
        blocks = (audio[:, i:i + 65536] for i in range(0, audio.shape[1], 65536))
    else:
        from ...chains.audio_io import probe_audio, read_blocks

        blocks = read_blocks(probe_audio(source), 65536)
    counts = {n: np.zeros(n, np.int64) for n in range(2, MAX_HOLD + 1)}
    on_grid = np.zeros(MAX_BITS + 1, np.int64)
    total = 0
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
        scaled = block.astype(np.float64)
        for b in range(2, MAX_BITS + 1):
            on_grid[b] += int(np.count_nonzero(np.abs(scaled * 2.0 ** (b - 1) - np.round(scaled * 2.0 ** (b - 1)))
                                               <= 1e-9 * 2.0 ** (b - 1)))
        total += block.size
        previous = block[:, -1:]
        position += block.shape[1]
    hold, phase, changes = None, 0, 0
    for n in sorted(counts, reverse=True):
        busiest = int(counts[n].max())
        if counts[n].sum() >= MIN_CHANGES and busiest >= CONCENTRATION * counts[n].sum():
            hold, phase, changes = n, int(np.argmax(counts[n])), int(counts[n].sum())
            break
    bits = None
    for b in range(2, MAX_BITS + 1):
        if total and on_grid[b] >= GRID_SHARE * total:
            bits = b
            break
    return {"hold": hold, "phase": phase, "changes": changes, "bits": bits,
            "grid_share": {b: on_grid[b] / max(total, 1) for b in range(2, MAX_BITS + 1)}}


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

    def __init__(self, hold: int | str = "auto", bits: int | str = "auto", model: str | Path | None = None) -> None:
        super().__init__()
        self.hold = _setting(hold, "hold", 1, MAX_HOLD)
        self.bits = _setting(bits, "bits", 2, 24)
        self.model = None if model is None else str(model)
        self._weights = load_weights(model)
        self._factor = self.hold if isinstance(self.hold, int) and self.hold > 1 else None
        self._phase = 0
        self._grid = self.bits if isinstance(self.bits, int) and self.bits <= MAX_BITS else None

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
                model = resolve_model_param(model, "model", base_dir)
            return cls(params.get("hold", "auto"), params.get("bits", "auto"), model)
        except ParameterError as error:
            raise ParameterError(f"dequantize {error.message}", where=where) from None

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
            lines.append(f"dequantize: samples on a {self._grid}-bit grid: smoothing within half a step")
        return lines or ["dequantize: no hold and no coarse bit depth found: passing through"]

    # -- Processor ---------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        if not MIN_RATE_HZ <= sample_rate <= MAX_RATE_HZ:
            raise ParameterError(f"dequantize runs at {MIN_RATE_HZ / 1000:g}–{MAX_RATE_HZ / 1000:g} kHz; this "
                                 f"audio is {sample_rate:g} Hz", where="restorer: dequantize")
        self._channels = num_channels
        self._filters = None
        if self._factor:
            key = f"hold{self._factor}"
            self._filters = (self._weights[key].astype(np.float64) if key in self._weights
                             else sinc_interpolator(self._factor))
            self._filters[0] = np.arange(-HALF_TAPS + 1, HALF_TAPS + 1) == 0  # true samples pass exactly
        self._fir = None
        if self._grid and not self._factor:
            levels = self._weights.get("bits_levels")
            if levels is not None and len(levels):
                self._fir = self._weights["bits_fir"][int(np.argmin(np.abs(levels - self._grid)))].astype(np.float64)
        return LATENCY

    def _reset_state(self) -> None:
        self._held = np.zeros((self._channels, 0), np.float32)
        self._base = 0
        self._end = 0

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        count = audio.shape[1]
        self._held = np.concatenate([self._held, audio], axis=1)
        self._end += count
        first = self._end - count - LATENCY
        out = np.zeros((self._channels, count), np.float32)
        start = max(first, 0)
        if start < first + count:
            targets = np.arange(start, first + count)
            if self._filters is not None:
                values = hold_gather(self._held, self._base, targets, self._factor, self._phase, self._filters)
            elif self._fir is not None:
                values = bits_smooth(self._held, self._base, targets, 2.0 ** (1 - self._grid), self._fir)
            else:
                values = self._held[:, targets - self._base]
            out[:, start - first:] = values
        keep_from = max(self._base, first + count - HALF_TAPS * MAX_HOLD - 2 * MAX_HOLD)
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
        raise ParameterError(f"{name} must be 'auto' or a whole number {low}..{high}, got {value!r}",
                             where=name) from None
    if isinstance(value, bool) or not math.isfinite(number) or not number.is_integer() or not low <= number <= high:
        raise ParameterError(f"{name} must be 'auto' or a whole number {low}..{high}, got {value!r}", where=name)
    return int(number)
