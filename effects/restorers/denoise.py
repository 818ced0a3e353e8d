"""``restorer: denoise``: removes stationary noise (hiss, hum, a noise floor) with a learned spectral gain that
never takes music down by more than ``amount_db``.

Method (per channel, on the frames of :class:`pedalchain.effects.restorers.stft.SpectralRestorer`: sqrt-Hann
2048/512 at 32–48 kHz, 4096/1024 above):

1. Noise profile, from the whole input in :meth:`Denoise.analyze_input` (files read in blocks, memory bounded):
   per bin, a histogram of the frame powers (0.5 dB steps, all channels) gives the 10th percentile, which for
   noise alone (exponentially distributed power) is 0.105 x its mean; so noise power = P10 / 0.105
   (:class:`NoiseProfiler`).  Stationary hum lines are part of this profile like hiss is.
2. Per bin and frame, features of the a-posteriori SNR ``gamma = |X|^2 / noise`` in dB (clipped to -20..50):
   at the bin in the two frames before, this one and the next (one frame of look-ahead), at the two bins on
   either side, averaged over 17 bins, averaged over 4 frames x 3 bins, the bin's frequency and how
   noise-like the bin is over the whole input (:func:`gain_features`).
3. A small MLP (12 -> 24 -> 12 -> 1, ReLU, sigmoid output; numpy) maps them to a gain in 0..1, trained on clean
   music with added noise (``models/restore/fit_denoise.py``) to minimise |g X - S|^2 (the phase-sensitive mask).
4. The gain is floored at ``-amount_db`` (default 12 dB): the restorer never attenuates anything -- a quiet
   passage included -- by more than that, so it cannot gate music to silence; ``amount_db: 0`` passes through.

Without an analysis (pure streaming with ``reset=False`` from the start) there is no noise profile and the
restorer passes the input through (delayed by its latency).  :func:`spectral_subtraction_gain` is the classic
baseline (power subtraction with the same profile and floor) the benchmarks compare against.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from . import resolve_model_param
from .bandwidth import DEFAULT_WEIGHTS as _BANDWIDTH_WEIGHTS
from .bandwidth import load_weights
from .stft import FrameContext, SpectralRestorer, sqrt_hann, stft_size

ARCHITECTURE = "denoise-gain-mlp"
DEFAULT_WEIGHTS = _BANDWIDTH_WEIGHTS.parent / "denoise.safetensors"
DEFAULT_AMOUNT_DB = 12.0
MAX_AMOUNT_DB = 40.0
QUANTILE = 0.1
"""Percentile of the frame powers per bin taken as the noise floor; P_q of exponential power = -ln(1-q) x mean."""
HIST_LOW_DB, HIST_HIGH_DB, HIST_STEP_DB = -160.0, 80.0, 0.5
GAMMA_RANGE_DB = (-20.0, 50.0)
NEIGHBOURS = 2
"""Bins on either side whose SNR is a feature."""
WIDE = 8
"""Half-width (bins) of the wide SNR average."""
LOOKBEHIND, LOOKAHEAD = 6, 1
NEAR = 2
"""Frames before this one whose SNR at the bin is a feature of its own (the older ones are averaged)."""
FEATURES = 2 * NEIGHBOURS + NEAR + LOOKAHEAD + 6
STATIONARY_SPREAD_DB = 10.5
"""A bin looks noise-dominated when its median frame power is within this of its 10th percentile (8.2 dB for
pure noise, far more for music)."""
NOISE_FOUND_SHARE = 0.7
NOISE_FOUND_DBFS = -85.0


def stft_power_scale(n_fft: int) -> float:
    """|rfft|^2 of a full-scale sine on a bin in the StftStream's unscaled spectra (for dBFS figures)."""
    return float((sqrt_hann(n_fft).sum() / 2) ** 2)


class NoiseProfiler:
    """Accumulates per-bin histograms of frame power (dB of the unscaled sqrt-Hann rfft) over non-overlapping
    frames of ``n_fft`` samples; :meth:`profile` gives the noise power per bin, :meth:`noise_found` the verdict."""

    def __init__(self, n_fft: int) -> None:
        self.n_fft = n_fft
        self.window = sqrt_hann(n_fft)
        self.levels = int((HIST_HIGH_DB - HIST_LOW_DB) / HIST_STEP_DB)
        self.bins = n_fft // 2 + 1
        self.counts = np.zeros((self.bins, self.levels), np.int64)
        self.frames = 0
        self._carry: np.ndarray | None = None

    def add(self, block: np.ndarray) -> None:
        """Add (channels, n) audio; samples short of a whole frame wait for the next block."""
        data = block if self._carry is None else np.concatenate([self._carry, block], axis=1)
        usable = data.shape[1] // self.n_fft * self.n_fft
        if usable:
            frames = data[:, :usable].reshape(data.shape[0], -1, self.n_fft).astype(np.float64)
            power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
            self.add_power(power.reshape(-1, self.bins))
        self._carry = data[:, usable:]

    def add_power(self, power: np.ndarray) -> None:
        """Add frame powers (frames, bins) directly (the fit uses this on its own frames)."""
        level = 10 * np.log10(power + 1e-30)
        index = np.clip(((level - HIST_LOW_DB) / HIST_STEP_DB).astype(np.int64), 0, self.levels - 1)
        flat = (np.arange(self.bins)[None, :] * self.levels + index).ravel()
        self.counts += np.bincount(flat, minlength=self.bins * self.levels).reshape(self.bins, self.levels)
        self.frames += power.shape[0]

    def quantile_db(self, q: float) -> np.ndarray:
        """Per-bin q-quantile of the frame power, dB (bin centres of the histogram)."""
        cumulative = np.cumsum(self.counts, axis=1)
        index = np.argmax(cumulative >= q * cumulative[:, -1:], axis=1)
        return HIST_LOW_DB + (index + 0.5) * HIST_STEP_DB

    def profile(self) -> np.ndarray:
        """Noise power per bin (unscaled rfft power), from the 10th percentile; zeros before any frame."""
        if self.frames == 0:
            return np.zeros(self.bins)
        return 10 ** (self.quantile_db(QUANTILE) / 10) / -math.log(1 - QUANTILE)

    def spread_db(self) -> np.ndarray:
        """Per bin, median minus 10th percentile of the frame power, dB: about 8 for a noise-dominated bin."""
        if self.frames == 0:
            return np.zeros(self.bins)
        return self.quantile_db(0.5) - self.quantile_db(QUANTILE)

    def noise_found(self) -> tuple[bool, float, float]:
        """(verdict, share of noise-dominated bins, noise level dBFS): stationary noise above -85 dBFS in at
        least 70 % of the bins above 100 Hz (a dense drum loop reaches about 60 %)."""
        if self.frames == 0:
            return False, 0.0, -200.0
        spread = self.quantile_db(0.5) - self.quantile_db(QUANTILE)
        low = max(1, int(100 / 48000 * self.n_fft))
        share = float(np.mean(spread[low:] <= STATIONARY_SPREAD_DB))
        noise = self.profile()
        level = 10 * math.log10(max(float(noise[low:].sum()) / stft_power_scale(self.n_fft) / 2, 1e-20))
        return share >= NOISE_FOUND_SHARE and level >= NOISE_FOUND_DBFS, share, level


def gamma_db(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """A-posteriori SNR in dB, clipped to GAMMA_RANGE_DB: power (..., bins, frames), noise (bins,)."""
    ratio = power / np.maximum(noise, 1e-30)[:, None]
    return np.clip(10 * np.log10(ratio + 1e-30), *GAMMA_RANGE_DB)


def gain_features(gamma: np.ndarray, sample_rate: float, spread_db: np.ndarray) -> np.ndarray:
    """Features (FEATURES, bins, F) float32 for the central frames of ``gamma`` (bins, LOOKBEHIND + F + LOOKAHEAD)
    in dB: SNR at the bin over frames t-2..t+1, at bins k-2, k-1, k+1, k+2 in frame t, the 17-bin mean at t,
    the mean over frames t-2..t+1 and bins k-1..k+1, the mean over frames t-6..t-3 and bins k-1..k+1,
    the bin's spread (median minus 10th percentile of its power over the input, dB / 20: how far the profile
    can be trusted) and log2(f / 1 kHz) / 4.  SNRs are scaled by 1/20.  Feature-major, so that the network's
    layers are (units x FEATURES) @ (FEATURES x rows) products over contiguous rows."""
    bins, total = gamma.shape
    count = total - LOOKBEHIND - LOOKAHEAD
    g = (gamma / 20.0).astype(np.float32)
    out = np.empty((FEATURES, bins, count), np.float32)
    row = 0
    for shift in range(-NEAR, LOOKAHEAD + 1):
        out[row] = g[:, LOOKBEHIND + shift:LOOKBEHIND + shift + count]
        row += 1
    centre = out[NEAR]
    padded = np.pad(centre, ((NEIGHBOURS, NEIGHBOURS), (0, 0)), mode="edge")
    for shift in (-2, -1, 1, 2):
        out[row] = padded[NEIGHBOURS + shift:NEIGHBOURS + shift + bins]
        row += 1
    cumulative = np.concatenate([np.zeros((1, count), np.float32), np.cumsum(centre, axis=0)], axis=0)
    index = np.arange(bins)
    lo, hi = np.maximum(index - WIDE, 0), np.minimum(index + WIDE + 1, bins)
    out[row] = (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None].astype(np.float32)
    row += 1
    for recent in (True, False):
        frames = out[:NEAR + LOOKAHEAD + 1] if recent else np.stack(
            [g[:, shift:shift + count] for shift in range(LOOKBEHIND - NEAR)])
        mean = frames.mean(axis=0)
        padded_mean = np.pad(mean, ((1, 1), (0, 0)), mode="edge")
        out[row] = (padded_mean[:-2] + padded_mean[1:-1] + padded_mean[2:]) / 3
        row += 1
    out[row] = (np.clip(spread_db, 0.0, 60.0) / 20)[:, None]
    freqs = np.maximum(np.arange(bins) * sample_rate / (2 * (bins - 1)), 20.0)
    out[row + 1] = (np.log2(freqs / 1000.0) / 4)[:, None]
    return out


def mlp_gain(features: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The gain network: ReLU hidden layers ``w0, b0, ...`` (w: inputs x units), sigmoid output;
    features (FEATURES, ...) -> gains (...)."""
    hidden = features.reshape(features.shape[0], -1)
    layers = sum(1 for name in arrays if name.startswith("w"))
    for index in range(layers):
        hidden = arrays[f"w{index}"].T @ hidden
        hidden += arrays[f"b{index}"][:, None]
        if index < layers - 1:
            np.maximum(hidden, 0.0, out=hidden)
    return (1.0 / (1.0 + np.exp(-hidden[0]))).reshape(features.shape[1:])


def spectral_subtraction_gain(power: np.ndarray, noise: np.ndarray, floor: float, over: float = 1.0) -> np.ndarray:
    """Baseline: power spectral subtraction, gain sqrt(max(1 - over x noise / power, floor^2)); power (bins, F)."""
    ratio = over * np.maximum(noise, 0.0)[:, None] / np.maximum(power, 1e-30)
    return np.sqrt(np.maximum(1.0 - ratio, floor ** 2))


class Denoise(SpectralRestorer):
    """Learned spectral-gain denoiser with a floor; see the module docstring.

    Args:
        amount_db: the most any bin is attenuated, dB (0 … 40; default 12).
        model: a model file written by ``chain train restorer --damage noise:DB``; default the shipped
            ``models/weights/restorers/denoise.safetensors``.
        base_dir: folder a relative ``model`` path resolves against (the YAML's folder).
    """

    name = "denoise"
    lookbehind = LOOKBEHIND
    lookahead = LOOKAHEAD

    def __init__(self, amount_db: float = DEFAULT_AMOUNT_DB, model: str | Path | None = None,
                 base_dir: str | Path | None = None) -> None:
        super().__init__()
        where = "restorer: denoise"
        try:
            amount = float(str(amount_db).lower().removesuffix("db").strip()) if isinstance(amount_db, str) \
                else float(amount_db)
        except (TypeError, ValueError):
            raise ParameterError(f"amount_db: expects a number of dB (0 … {MAX_AMOUNT_DB:g}), got {amount_db!r}",
                                 where=f"{where}.amount_db") from None
        if isinstance(amount_db, bool) or not 0.0 <= amount <= MAX_AMOUNT_DB:
            raise ParameterError(f"amount_db: {amount_db!r} is out of range [0, {MAX_AMOUNT_DB:g}] dB",
                                 where=f"{where}.amount_db")
        self.amount_db = amount
        self.model_path = (DEFAULT_WEIGHTS if model is None
                           else resolve_model_param(model, f"{where}.model", base_dir, ARCHITECTURE))
        self._model_param = model
        self.noise_profile: np.ndarray | None = None
        """Noise power per bin from the last :meth:`analyze_input` (None: not analysed, pass through)."""
        self.noise_found = False
        """Whether the last analysis found stationary noise worth removing (what ``restorer: auto`` asks)."""
        self.noise_level_dbfs = -200.0
        """Level of that noise (dBFS, all bins above 100 Hz) from the last analysis."""
        self.noise_spread: np.ndarray | None = None
        self._profile_rate: float | None = None
        self._arrays: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"Denoise(amount_db={self.amount_db:g})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> Denoise:
        unknown = sorted(set(params) - {"amount_db", "model"})
        if unknown:
            raise ParameterError(f"restorer 'denoise' has no parameter {', '.join(unknown)} (it takes amount_db, "
                                 "model)", where=where)
        try:
            return cls(params.get("amount_db", DEFAULT_AMOUNT_DB), params.get("model"), base_dir=base_dir)
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        values: dict[str, Any] = {"amount_db": self.amount_db}
        if self._model_param is not None:
            values["model"] = str(self.model_path)
        return values

    # -- analysis ------------------------------------------------------------------------------------------------
    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        self.check_rate(sample_rate)
        n_fft, _ = stft_size(sample_rate)
        profiler = NoiseProfiler(n_fft)
        if isinstance(source, np.ndarray):
            audio = np.atleast_2d(source)
            for start in range(0, audio.shape[1], 1 << 16):
                profiler.add(audio[:, start:start + (1 << 16)])
        else:
            from ...chains.audio_io import probe_audio, read_blocks

            info = probe_audio(source)
            for block in read_blocks(info, 1 << 16):
                profiler.add(block)
        self.noise_profile = profiler.profile() if profiler.frames else None
        self.noise_spread = profiler.spread_db()
        self._profile_rate = float(sample_rate)
        found, share, level = profiler.noise_found()
        self.noise_found = found
        self.noise_level_dbfs = level
        self._reconfigured()
        if self.noise_profile is None:
            return ["denoise: input shorter than one frame: passed through"]
        verdict = "stationary noise" if found else "little stationary noise"
        return [f"denoise: {verdict} at {level:.0f} dBFS ({share:.0%} of bins noise-dominated); "
                f"reduced by at most {self.amount_db:g} dB"]

    # -- frames --------------------------------------------------------------------------------------------------
    def _prepare_frames(self, sample_rate: float, num_channels: int, n_fft: int, hop: int) -> None:
        if self._profile_rate is not None and self._profile_rate != sample_rate:
            self.noise_profile = None  # a profile is only valid at the rate it was measured at
        if self.noise_profile is not None and self.amount_db > 0:
            self._arrays = {name: value.astype(np.float32)
                            for name, value in load_weights(self.model_path, ARCHITECTURE)[0].items()}

    def _process_frames(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        count = spectra.shape[2] - LOOKBEHIND - LOOKAHEAD
        centre = spectra[:, :, LOOKBEHIND:LOOKBEHIND + count]
        if self.noise_profile is None or self.amount_db <= 0:
            return centre
        floor = 10 ** (-self.amount_db / 20)
        out = np.empty_like(centre)
        for channel in range(spectra.shape[0]):
            power = spectra[channel].real ** 2 + spectra[channel].imag ** 2
            features = gain_features(gamma_db(power, self.noise_profile), context.sample_rate, self.noise_spread)
            gain = np.maximum(mlp_gain(features, self._arrays), floor)
            out[channel] = centre[channel] * gain
        return out
