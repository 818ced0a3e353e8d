"""``restorer: doubled-samples``: repair of audio whose every second sample repeats the one before it.

The damage (a failing interface, ``y[2n+1] = y[2n]``, or ``y[2n+2] = y[2n+1]`` with *parity* 1) is a decimation
by 2 without an anti-alias filter followed by a 2-sample hold: the kept samples ``y[parity::2]`` hold all the
information left; above fs/4 the file holds only a mirror image of the band below, weighted by |cos(π f / fs)|.

The repair, at the file's own rate (32–50 kHz; 44.1 and 48 kHz are what it is trained and tested for):

1. **Low band** = the kept samples interpolated back to the full rate by a 127-tap Kaiser-windowed (β 9)
   half-band filter, polyphase: the kept samples pass unchanged, the others are a 64-tap FIR over the kept
   samples.  Passband ripple and image rejection are both below -90 dB outside 0.9·fs/4 … 1.1·fs/4 (the filter
   is 6 dB down at fs/4), so below 0.9·fs/4 the output equals any high-quality resampling of ``y[parity::2]``
   (``scipy.signal.resample_poly`` with a long filter) to within -60 dB; that is tested.
2. **High band**, synthesised over fs/4 … fs/2: the zero-stuffed kept samples ``z = 2·y`` on kept positions,
   ``0`` elsewhere, go through a streaming STFT (:mod:`.stft`, n_fft 2048, hop 512, sqrt-Hann).  Their STFT
   above fs/4 is the exact mirror of the band below (same magnitudes per frame, conjugate phase), so the mirror
   supplies the *phase and fine structure*; a small learned model, fed with the low band's log-power frames,
   supplies the *magnitude* (``models/restore/fit_doubled.py``, numpy here).  Variants the model file may hold
   (``config.variant``): ``band-mlp``: log-power of 32 bands below fs/4 over neighbouring frames -> an MLP (or a
   single linear layer) -> per-band log gain of the mirror (a residual over the mirror image), interpolated
   across bins; ``bins-linear``: the "known fix", one linear layer from every low bin's log power to every high
   bin's log power, the mirror's phase reused.
3. The synthesised band is weighted by ``1 - H(f)``, the complement of the half-band filter's response, and is
   exactly zero below 0.9·fs/4: the **transition band** is 0.9·fs/4 … 1.1·fs/4 (9.9–12.1 kHz at 44.1 kHz).
   Inside it low band and synthesis cross-fade; below fs/4 the model's gain is 1, so there the two add up to
   the ideal interpolation of the kept samples.  Low band + high band is the repair.

Modes (``mode:``): ``detect`` (default) repairs only the regions that ``chain detect``'s hold scan
(:func:`scan_doubled`, :mod:`pedalchain.chains.detect`, 0.5 s resolution) finds doubled in the whole input, with
10 ms raised-cosine cross-fades at region edges inside the file, and passes everything else through; without
an analysis (pure streaming from the start) or when nothing is found, the input passes through unchanged
(delayed).  ``always`` repairs everything; ``naive`` is step 1 alone (the decimate-and-resample baseline, empty
top band).  ``parity: auto`` (default) takes the detected parity when the input was analysed and **parity 0
when streaming without analysis** (detecting it from a stream's first
blocks would make the output depend on the block split); ``parity: 0|1`` forces it.

Latency: 2047 + 512·lookahead samples at ≤ 50 kHz (the STFT's; the low band is delayed to match), whatever the
mode, the model or what was detected.  Output is identical for any split of the input into blocks.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from ..streaming import DelayLine
from . import Restorer, on_threads, resolve_model_param
from .stft import WHOLE_BLOCK, FrameContext, StftStream, one_shot_blas_limited, sqrt_hann
from .tiles import FRAME_TILE, columns_in_tiles, dense_layers

ARCHITECTURE = "doubled-samples-spectral"
"""The ``architecture`` of the model files this restorer runs."""
VARIANTS = ("band-mlp", "bins-linear")
MODES = ("detect", "always", "naive")
PARITIES = ("auto", 0, 1)
MIN_RATE_HZ = 32000.0
MAX_RATE_HZ = 50000.0
"""The model is defined on bins of a 2048-point STFT relative to fs/4: it is trained at 44.1 kHz and valid for
rates near it (48 kHz tested); higher rates put the synthesised band above hearing and are refused."""
N_FFT = 2048
HOP = 512
HALF_TAPS = 63
"""The half-band filter spans ``2·HALF_TAPS + 1`` taps (odd HALF_TAPS: the centre tap is a non-kept sample)."""
KAISER_BETA = 9.0
PARALLEL_MIN_BLOCK = 4096
"""Blocks of at least this many samples process their channels on threads (shorter ones: thread hand-over would
cost more than it saves).  The output is the same either way: channels never mix."""
CROSSFADE_S = 0.010
"""Raised-cosine cross-fade at the edges of detected regions (seconds)."""
POWER_FLOOR = 1e-14
"""Floor of the per-bin power (full-scale sine = 1): -140 dB, below the LSD's floor (1e-8 on an unnormalised
2048-point Hann STFT, about -134 dB re a full-scale sine), so the model can match near-silent top bands."""
MAX_GAIN_LOG10 = 2.0
"""Largest gain (log10 power, +20 dB) the model may apply to the mirror; guards against an outlier frame."""
DEFAULT_WEIGHTS = (Path(__file__).resolve().parents[2] / "models" / "weights" / "restorers"
                   / "doubled-samples.safetensors")


# -- the parts shared with training (models/restore/fit_doubled.py) -------------------------------------------------
def halfband_filter(half_taps: int = HALF_TAPS, beta: float = KAISER_BETA) -> np.ndarray:
    """Kaiser-windowed half-band lowpass, ``2·half_taps + 1`` taps, float64: centre tap 0.5, taps at even offsets
    zero, odd taps scaled to sum to 0.5 (so a constant interpolates exactly). Cutoff fs/4 of the output rate."""
    offsets = np.arange(-half_taps, half_taps + 1)
    taps = 0.5 * np.sinc(offsets / 2) * np.kaiser(2 * half_taps + 1, beta)
    odd = offsets % 2 != 0
    taps[~odd] = 0.0  # sinc's zeros exactly (np.sinc leaves ~1e-17 there)
    taps[half_taps] = 0.5
    taps[odd] *= 0.5 / taps[odd].sum()
    return taps


def halfband_response(frequencies: np.ndarray, half_taps: int = HALF_TAPS) -> np.ndarray:
    """Zero-phase amplitude response of :func:`halfband_filter` at ``frequencies`` (cycles per sample)."""
    taps = halfband_filter(half_taps)
    offsets = np.arange(-half_taps, half_taps + 1)
    return np.cos(2 * np.pi * np.outer(frequencies, offsets)) @ taps


def zero_stuffed(audio: np.ndarray, parity: int, start: int = 0) -> np.ndarray:
    """``2·audio`` on kept positions ((start + i - parity) even), 0 elsewhere: the kept samples at the full rate,
    whose spectrum is the band below fs/4 plus its exact mirror above (float32, same shape)."""
    out = np.zeros_like(audio, dtype=np.float32)
    first = (parity - start) % 2
    out[..., first::2] = 2.0 * audio[..., first::2]
    return out


def frame_spectra(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """Offline STFT with :class:`~.stft.StftStream`'s framing (``n_fft - hop`` zeros before the start), scaled so a
    full-scale sine on a bin has magnitude 1: (channels, n) -> (channels, n_fft/2 + 1, frames) complex64."""
    pad = n_fft - hop
    count = (audio.shape[-1] + hop - 1) // hop
    padded = np.zeros((audio.shape[0], pad + count * hop + hop), np.float32)
    padded[:, pad : pad + audio.shape[-1]] = audio
    window = sqrt_hann(n_fft).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, : (count - 1) * hop + 1 : hop]
    spectra = np.fft.rfft(frames * window, axis=-1) / np.float32(window.sum() / 2)
    return spectra.transpose(0, 2, 1).astype(np.complex64)


@lru_cache(maxsize=16)
def band_matrix(first_bin: int, last_bin: int, bands: int) -> np.ndarray:
    """(bands, last_bin - first_bin + 1) averaging matrix over equal-width bands of bins first_bin..last_bin."""
    count = last_bin - first_bin + 1
    edges = np.round(np.linspace(0, count, bands + 1)).astype(int)
    matrix = np.zeros((bands, count), np.float32)
    for band in range(bands):
        matrix[band, edges[band] : edges[band + 1]] = 1.0 / (edges[band + 1] - edges[band])
    matrix.flags.writeable = False  # cached and shared
    return matrix


@lru_cache(maxsize=16)
def interpolation_matrix(count: int, bands: int) -> np.ndarray:
    """(bands, count) matrix: ``values @ matrix`` linearly interpolates band values (at band centres) to ``count``
    bins.  Contiguous in this layout: numpy's batched matmul with a transposed view was 500x slower here."""
    edges = np.linspace(0, count, bands + 1)
    centres = (edges[:-1] + edges[1:]) / 2 - 0.5
    eye = np.eye(bands)
    matrix = np.stack([np.interp(np.arange(count), centres, eye[band]) for band in range(bands)], axis=0)
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    matrix.flags.writeable = False  # cached and shared
    return matrix


def low_band_features(power: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Model inputs per frame from the power spectra (channels, n_fft/4 + 1 bins, frames) of ``z`` (bins 0..fs/4;
    sine = 1; bins above are their mirror, so never needed):
    ``band-mlp``: log10 power of ``low_bands`` bands over bins 1..n_fft/4, with ``lookbehind`` earlier and
    ``lookahead`` later frames stacked (frames outside the batch are not invented: the output has
    ``frames - lookbehind - lookahead`` rows); ``bins-linear``: log10 power of bins 0..n_fft/4.
    Returns (channels, frames', features) float32."""
    quarter = int(config["n_fft"]) // 4
    if config["variant"] == "bins-linear":
        return np.log10(np.maximum(power[:, : quarter + 1], POWER_FLOOR)).transpose(0, 2, 1)
    matrix = band_matrix(1, quarter, int(config["low_bands"]))
    channels, _, frames = power.shape
    by_frame = power[:, 1 : quarter + 1].transpose(1, 0, 2).reshape(quarter, channels * frames)
    bands = columns_in_tiles(lambda tiles: matrix @ tiles, by_frame, FRAME_TILE)
    bands = bands.reshape(-1, channels, frames).transpose(1, 2, 0)
    logs = np.log10(np.maximum(bands, POWER_FLOOR))
    behind, ahead = int(config["lookbehind"]), int(config["lookahead"])
    count = logs.shape[1] - behind - ahead
    return np.concatenate([logs[:, offset : offset + count] for offset in range(behind + ahead + 1)], axis=2)


def run_network(features: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Standardise ``features`` (..., in) with ``feature_mean``/``feature_std`` and run the dense layers
    ``w0, b0, w1, b1, ...`` (ReLU between, linear output): (..., out) float32."""
    leading = features.shape[:-1]
    hidden = ((features - arrays["feature_mean"]) / arrays["feature_std"]).reshape(-1, features.shape[-1])
    output = dense_layers(arrays, hidden.T, FRAME_TILE)  # a frame per column
    return output.T.reshape(*leading, output.shape[0])


def predicted_log_power(power: np.ndarray, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> np.ndarray:
    """The model's log10 power (sine = 1) of bins n_fft/4 + 1 .. n_fft/2 for the central frames of ``power``
    (channels, n_fft/4 + 1, frames) of ``z``: (channels, frames', n_fft/4) float32, frames' as in low_band_features.

    ``bins-linear`` predicts every bin; ``band-mlp`` predicts ``high_bands`` band values, interpolated across
    bins, either absolute (``target: absolute``) or as a residual over the mirror (``target: residual``,
    capped at :data:`MAX_GAIN_LOG10` above it).  ``offset_db`` (a level trim chosen in training) is added."""
    quarter = int(config["n_fft"]) // 4
    offset = np.float32(float(config.get("offset_db", 0.0)) / 10.0)
    predicted = run_network(low_band_features(power, config), arrays)
    if config["variant"] == "bins-linear":
        return predicted + offset
    across = interpolation_matrix(quarter, int(config["high_bands"])).T
    smooth = columns_in_tiles(lambda tiles: across @ tiles, predicted.reshape(-1, predicted.shape[-1]).T, FRAME_TILE)
    smooth = smooth.T.reshape(*predicted.shape[:-1], quarter)
    if config.get("target", "residual") == "absolute":
        return smooth + offset
    behind = int(config.get("lookbehind", 0))
    mirror = power[:, quarter - 1 :: -1, behind : behind + smooth.shape[1]].transpose(0, 2, 1)
    mirror = np.log10(np.maximum(mirror, POWER_FLOOR))
    return mirror + np.minimum(smooth + offset, MAX_GAIN_LOG10)


def high_band_gain(power: np.ndarray, arrays: dict[str, np.ndarray], config: dict[str, Any]) -> np.ndarray:
    """Amplitude gain that gives the mirror (bins n_fft/4 + 1 .. n_fft/2 of ``z``) the model's magnitude while
    keeping its phase: (channels, n_fft/4, frames') float32; 0 where the mirror is digital silence (no phase)."""
    quarter = int(config["n_fft"]) // 4
    target = np.minimum(predicted_log_power(power, arrays, config), 0.0)  # never above a full-scale sine
    behind = int(config.get("lookbehind", 0)) if config["variant"] == "band-mlp" else 0
    mirror = power[:, quarter - 1 :: -1, behind : behind + target.shape[1]].transpose(0, 2, 1)
    gain = np.sqrt(np.power(np.float32(10.0), target, dtype=np.float32) / np.maximum(mirror, POWER_FLOOR))
    gain[mirror < POWER_FLOOR] = 0.0
    return gain.transpose(0, 2, 1)


@lru_cache(maxsize=8)
def _load(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from ...models.model_file import load_arrays

    arrays, info = load_arrays(path, ARCHITECTURE)
    config = dict(info.config)
    if config.get("variant") not in VARIANTS or int(config.get("n_fft", 0)) != N_FFT:
        from ...errors import ModelFileError

        raise ModelFileError(f"unsupported doubled-samples model config {config}", where=path)
    return arrays, config


def load_model(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, config) of a model file written by ``chain train restorer --damage doubled-samples``, cached."""
    return _load(str(Path(path).resolve()))


def scan_doubled(source: Path | np.ndarray, sample_rate: float) -> tuple[dict[str, Any], float]:
    """``chain detect``'s doubled-samples finding (parity, share, regions; see :mod:`pedalchain.chains.detect`) for a
    file (read in 0.5 s blocks) or a (channels, n) buffer, and the duration in seconds.  Only the hold scan runs:
    the other checks of :func:`~pedalchain.chains.detect.detect_input` (band limit, clipping: a second pass over
    the file) are not needed here and cost more than the repair's own analysis."""
    from ...chains.audio_io import finite_blocks, probe_audio, read_blocks, source_blocks
    from ...chains.detect import RMS_FRAME_S, WINDOW_FRAMES, _HoldScanner

    rate = int(round(sample_rate))
    window = WINDOW_FRAMES * max(1, round(RMS_FRAME_S * rate))
    scanner = _HoldScanner(window)
    if isinstance(source, np.ndarray):
        audio = np.atleast_2d(np.asarray(source, dtype=np.float32))
        frames, blocks = audio.shape[1], source_blocks(audio, window)
    else:
        info = probe_audio(source)
        rate, frames, blocks = info.sample_rate, info.frames, finite_blocks(read_blocks(info, window))
    for block in blocks:
        scanner.add(block)
    if frames == 0:
        return {"detected": False, "parity": None, "share": 0.0, "regions": []}, 0.0
    return scanner.summary(rate, frames)[0], frames / rate


# -- streaming parts ------------------------------------------------------------------------------------------------
class KeptSampleInterpolator:
    """Streaming half-band interpolation of the kept samples (positions ≡ ``parity`` mod 2) to the full rate.

    Output is delayed by :data:`HALF_TAPS` samples: kept positions of the output carry the 64-tap FIR value,
    the others the kept sample ``HALF_TAPS`` earlier, untouched.
    """

    def __init__(self, channels: int, parity: int) -> None:
        self.channels, self.parity = channels, parity
        taps = halfband_filter()
        self._even_taps = (2.0 * taps[0::2]).astype(np.float32)  # taps at even lags from the newest kept sample
        self.reset()

    def reset(self) -> None:
        self._history = np.zeros((self.channels, 2 * HALF_TAPS), np.float32)
        self._position = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        length = block.shape[1]
        extended = np.concatenate([self._history, block], axis=1)
        out = np.empty_like(block)
        first_kept = (self.parity - self._position) % 2
        if first_kept < length:  # a 1-sample block may hold no kept sample
            for channel in range(self.channels):
                kept = np.ascontiguousarray(extended[channel, first_kept::2])
                out[channel, first_kept::2] = np.convolve(kept, self._even_taps, "valid")
        other = 1 - first_kept
        out[:, other::2] = extended[:, HALF_TAPS + other : HALF_TAPS + length : 2]
        self._history = extended[:, -2 * HALF_TAPS :]
        self._position += length
        return out


class DoubledSampleRepair(Restorer):
    """Repair of doubled samples; see the module docstring for the method.

    Args:
        mode: ``detect`` (repair detected regions only, default), ``always`` or ``naive`` (low band only).
        parity: ``auto`` (detected, else 0), 0 (``y[2n+1] = y[2n]``) or 1 (``y[2n+2] = y[2n+1]``).
        model: a ``.safetensors`` file from ``chain train restorer --damage doubled-samples``; default the shipped
            ``models/weights/restorers/doubled-samples.safetensors``.
        base_dir: folder a relative ``model`` path resolves against (the YAML's folder).
    """

    name = "doubled-samples"
    min_rate_hz, max_rate_hz, rate_note = MIN_RATE_HZ, MAX_RATE_HZ, " (trained at 44.1 kHz)"

    def __init__(self, mode: str = "detect", parity: str | int = "auto", model: str | Path | None = None,
                 base_dir: str | Path | None = None, where: str | None = None,
                 weights: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.mode, self.parity = mode, parity
        self._model_param = model
        self.model_path = (DEFAULT_WEIGHTS if model is None
                           else resolve_model_param(model, f"restorer: {self.name}.model", base_dir, ARCHITECTURE))
        self._arrays: dict[str, np.ndarray] = {}
        self._config: dict[str, Any] = {}
        if weights is not None:  # (arrays, config) in memory: training evaluates candidates without a file
            self._arrays, self._config = weights
        elif self.model_path.is_file():  # naive mode loads it too: the model's lookahead sets the latency
            self._arrays, self._config = load_model(self.model_path)
        elif self.mode != "naive":
            raise ParameterError(
                f"the shipped model {self.model_path} is missing; train one with `chain train restorer --damage "
                "doubled-samples` and pass it as model:, or use mode: naive", where=where or f"restorer: {self.name}",
            )
        self.detected_parity: int | None = None
        self.regions: list[tuple[int, int]] | None = None
        """Detected damaged regions as sample ranges [start, end) (end may be sys.maxsize), or None: no analysis."""
        self._analysed_rate: float | None = None

    @property
    def mode(self) -> str:
        """``detect``, ``always`` or ``naive``; set (checked as in the constructor), it applies from the next call."""
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ParameterError(f"mode: expects one of {', '.join(MODES)}; got {mode!r}",
                                 where=f"restorer: {self.name}.mode")
        self._mode = mode
        self._set_up_again()

    @property
    def parity(self) -> str | int:
        """``auto``, 0 or 1; set (checked as in the constructor), it applies from the next call."""
        return self._parity

    @parity.setter
    def parity(self, parity: str | int) -> None:
        if isinstance(parity, str) and parity.strip() in ("0", "1"):
            parity = int(parity)
        if isinstance(parity, bool) or parity not in PARITIES:
            raise ParameterError(f"parity: expects auto, 0 or 1; got {parity!r}", where=f"restorer: {self.name}.parity")
        self._parity = parity if parity == "auto" else int(parity)
        self._set_up_again()

    def __repr__(self) -> str:
        return f"DoubledSampleRepair(mode={self.mode!r}, parity={self.parity!r})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> DoubledSampleRepair:
        unknown = sorted(set(params) - {"mode", "parity", "model"})
        if unknown:
            raise ParameterError(f"restorer 'doubled-samples' has no parameter {', '.join(unknown)} (it takes mode, "
                                 "parity, model)", where=where)
        try:
            return cls(params.get("mode", "detect"), params.get("parity", "auto"), params.get("model"),
                       base_dir=base_dir, where=where)
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if self.mode != "detect":
            values["mode"] = self.mode
        if self.parity != "auto":
            values["parity"] = self.parity
        if self._model_param is not None:
            values["model"] = str(self.model_path)
        return values

    @property
    def active_parity(self) -> int:
        """The parity the repair uses: the forced one, else the detected one, else 0."""
        if self.parity != "auto":
            return int(self.parity)
        return self.detected_parity if self.detected_parity is not None else 0

    # -- analysis ------------------------------------------------------------------------------------------------
    @property
    def analyses_input(self) -> bool:
        return self.mode == "detect" or self.parity == "auto"

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        self.check_rate(sample_rate)
        if self.mode != "detect" and self.parity != "auto":
            return []  # nothing to decide: forced parity, repaired throughout
        found, duration = scan_doubled(source, sample_rate)
        self.detected_parity = found["parity"] if found["detected"] else None
        self.regions = []
        if found["detected"]:
            for start_s, end_s in found["regions"]:
                # a region reaching the end of the input has no fade-out (the file's last samples are damaged too)
                end = sys.maxsize if end_s >= duration - 1e-3 else round(end_s * sample_rate)
                self.regions.append((round(start_s * sample_rate), end))
        self._reconfigured()
        if not found["detected"]:
            done = ", passed through" if self.mode == "detect" else f"; mode {self.mode}: repaired throughout, parity 0"
            return [f"{self.name}: no doubled samples found{done}"]
        parity_note = (f"parity {self.detected_parity}" if self.parity == "auto"
                       else f"parity {self.detected_parity} detected, {self.parity} forced")
        return [f"{self.name}: doubled samples in {found['share']:.0%} of the input ({parity_note}): "
                + ("repaired there" if self.mode == "detect" else f"mode {self.mode}, repaired throughout")]

    # -- Processor -----------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self.check_rate(sample_rate)
        self._channels = num_channels
        behind = int(self._config.get("lookbehind", 0)) if self._config.get("variant") == "band-mlp" else 0
        ahead = int(self._config.get("lookahead", 0)) if self._config.get("variant") == "band-mlp" else 0
        # one STFT and one interpolator per channel: channels are independent, and long blocks run them on threads
        self._stfts = [StftStream(1, N_FFT, HOP, self._synthesise_high_band, sample_rate, behind, ahead)
                       for _ in range(num_channels)]
        self._interpolators = [KeptSampleInterpolator(1, self.active_parity) for _ in range(num_channels)]
        # the trained model's lookahead sets the latency for every mode, so mode and detection never change timing
        latency = self._stfts[0].latency
        self._low_delay = DelayLine(num_channels, latency - HALF_TAPS)
        self._dry_delay = DelayLine(num_channels, latency)
        quarter = N_FFT // 4
        frequencies = np.arange(N_FFT // 2 + 1) / N_FFT
        weight = 1.0 - halfband_response(frequencies)
        self._first_bin = int(math.floor(0.9 * quarter))
        weight[: self._first_bin] = 0.0
        self._weight = weight.astype(np.float32)[np.newaxis, :, np.newaxis]
        self._sine = float(sqrt_hann(N_FFT).sum() / 2)
        self._crossfade = max(1, round(CROSSFADE_S * sample_rate))
        return latency

    def _reset_state(self) -> None:
        for stft, interpolator in zip(self._stfts, self._interpolators, strict=True):
            stft.reset()
            interpolator.parity = self.active_parity
            interpolator.reset()
        self._low_delay.reset()
        self._dry_delay.reset()
        self._position = 0

    def _synthesise_high_band(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        """STFT hook: the mirror above fs/4 with the model's magnitude, cross-faded in from 0.9·fs/4."""
        quarter = N_FFT // 4
        middle = spectra[:, :, context.lookbehind : spectra.shape[2] - context.lookahead]
        # bins 0..n_fft/4 only: z's power above is their exact mirror (bin q + j = bin q - j)
        power = np.square(np.abs(spectra[:, : quarter + 1]) / np.float32(self._sine))
        gain = high_band_gain(power, self._arrays, self._config)
        out = np.zeros_like(middle)
        first = self._first_bin
        out[:, first : quarter + 1] = middle[:, first : quarter + 1] * self._weight[:, first : quarter + 1]
        gain *= self._weight[:, quarter + 1 :]
        out[:, quarter + 1 :] = middle[:, quarter + 1 :] * gain
        return out

    def _mask(self, start: int, length: int) -> np.ndarray | None:
        """Repair weight 0..1 for output samples [start, start + length) (input positions), None for all ones."""
        if self.mode != "detect":
            return None
        mask = np.zeros(length, np.float32)
        positions = np.arange(start, start + length)
        fade = self._crossfade
        for region_start, region_end in self.regions or []:
            if region_end <= start or region_start >= start + length:
                continue
            inside = np.clip((positions - region_start + 0.5) / fade, 0.0, 1.0) if region_start > 0 else 1.0
            inside = np.minimum(inside, np.clip((region_end - positions - 0.5) / fade, 0.0, 1.0))
            weight = (0.5 - 0.5 * np.cos(np.pi * inside)) * ((positions >= region_start) & (positions < region_end))
            np.maximum(mask, weight.astype(np.float32), out=mask)
        return mask

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        return one_shot_blas_limited(super()._process_whole, audio, sample_rate, max(buffer_size, WHOLE_BLOCK))

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        length = audio.shape[1]
        dry = self._dry_delay.process(audio)
        if self.mode == "detect" and not self.regions:
            self._position += length
            return dry
        parity, position, naive = self.active_parity, self._position, self.mode == "naive"

        def lane(channel: int) -> tuple[np.ndarray, np.ndarray | None]:
            """Low band (delayed by HALF_TAPS) and synthesised high band (delayed by the latency) of one channel."""
            mono = audio[channel : channel + 1]
            low = self._interpolators[channel].process(mono)
            high = None if naive else self._stfts[channel].process(zero_stuffed(mono, parity, position))
            return low, high

        if length >= PARALLEL_MIN_BLOCK:
            lanes = on_threads(lane, range(self._channels))
        else:
            lanes = [lane(channel) for channel in range(self._channels)]
        repaired = self._low_delay.process(np.concatenate([low for low, _ in lanes], axis=0))
        if not naive:
            repaired += np.concatenate([high for _, high in lanes], axis=0)
        mask = self._mask(self._position - self._latency, length)
        self._position += length
        if mask is None:
            return repaired
        return dry + mask * (repaired - dry)
