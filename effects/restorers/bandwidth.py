"""``restorer: bandwidth``: bandwidth extension for audio whose top band was cut (MP3, lowpass, low-rate files).

Method (per channel, on the frames of :class:`pedalchain.effects.restorers.stft.StftStream`: sqrt-Hann windows of
2048 samples at 32–48 kHz, 4096 at 64–96 kHz, hop 1/4 of it, weighted overlap-add):

1. Features of each frame, taken from the damaged input below the cutoff ``fc``: the log power of 8 bands
   spaced logarithmically over [fc/2, fc - 400 Hz], relative to the top one (the *anchor*), the anchor's own
   level, the whole frame's level relative to it and ``fc`` as a share of Nyquist (:func:`frame_features`).
2. A small learned regressor (an MLP, numpy) predicts the log power of 8 bands spaced logarithmically over
   [fc, 2 fc] relative to the anchor (the spectral envelope above the cutoff).  It is trained on clean music
   cut by several lowpass shapes and by real MP3 (``models/restore/fit_bandwidth.py``), so it learns when the
   material has no highs to restore (a bass line gives an envelope falling far below the anchor).
3. Where the input above the cutoff is a stopband (>= 20 dB under the predicted envelope, fading out within
   10 dB of it), what it still holds there (a lowpass's stopband: an attenuated copy of the truth) is lifted
   coherently towards :data:`LIFT_HEADROOM_DB` under the envelope (at most :data:`MAX_LIFT`); what the lift does
   not reach is filled with the fine structure of the band just below the cutoff, copied up by a whole number
   of patches (a shift by a multiple of 4 bins keeps the phase coherent from hop to hop), whitened (holes raised
   to :data:`TEXTURE_FLOOR` of the local RMS) and shaped to the envelope minus what the lifted input holds
   there.  At the seam the envelope continues the anchor's level and hands over to the prediction within 1/8
   octave (no level step).  Where a low-bitrate MP3 left the anchor band empty for a few frames while the bands
   under it play on, the anchor keeps its recent level (:func:`held_anchor`).  The fill *ducks* in loud frames:
   in a frame whose anchor power is r times the channel's mean over the whole input (the long-term spectrum of
   the analysis), it is brought down by 10 log10(1 + d x r) dB (ramped in from 1/16 to 1/4 octave above the
   cutoff, so the seam keeps its level), d the model file's ``fill_duck``, chosen in training
   (``fit_bandwidth.choose_fill_duck``).  A fill is uncorrelated with the true highs, so it adds its own energy
   to the error, and the loudest frames hold most of that energy, while the log-spectral distance weighs every
   frame alike: ducking trades the least spectral fidelity for the most SNR.  Without an analysis (pure
   streaming) the fill does not duck.
4. Only this *added* signal goes through the STFT; the input itself is passed through delayed, bit for bit.
   The fill fades in across a 400 Hz raised-cosine transition below the cutoff, so below ``fc - 500 Hz``
   the added signal is only window leakage (below -100 dB relative to the input on pink noise).

``cutoff: auto`` (the default) finds the cutoff from the whole input in :meth:`BandwidthExtension.analyze_input`
with the band-limit estimator of :mod:`pedalchain.chains.detect` (the -6 dB point below a >= 30 dB drop that
lasts to Nyquist).  When nothing is found, or the cutoff lies outside 4 kHz … 0.95 x Nyquist, or the input was
never analysed (pure streaming with ``reset=False`` from the start), the restorer passes the input through
unchanged (delayed by its latency, like any step).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ParameterError
from ..streaming import DelayLine
from ..units import parse_quantity
from . import Restorer, resolve_model_param
from .stft import FrameContext, StftStream, sqrt_hann, stft_size

MIN_RATE_HZ = 32000.0
MAX_RATE_HZ = 96000.0
"""Sample rates the restorers run at (the file's own rate; the models are defined relative to the cutoff)."""
MIN_CUTOFF_HZ = 4000.0
MAX_CUTOFF_SHARE = 0.95
"""A cutoff above this share of Nyquist is the converter's own anti-alias filter: nothing to extend."""
TRANSITION_HZ = 400.0
"""Width of the raised-cosine fade-in of the fill below the cutoff (the issue allows at most 500 Hz)."""
IN_BANDS = 8
OUT_BANDS = 8
SEAM_OCTAVES = 1 / 8
"""Above the cutoff the envelope goes from the anchor's level (continuity at the seam) to the model's prediction
over this many octaves."""
FILL_DUCK_OCTAVES = (1 / 16, 1 / 4)
"""The fill's ducking ramps in over this span above the cutoff (linear in dB over octaves): it starts after the
seam, so the level does not step there."""
LIFT_HEADROOM_DB = 3.0
"""A stopband is lifted towards this far under the predicted envelope, not to it: the envelope is a guess, and a
lift that overshoots the truth by a factor g costs (g - 1)^2 of its energy in error, one that falls short by it
only (1 - 1/g)^2.  Chosen on the bandwidth model's validation clips (SNR change from passthrough, lowpass 11 kHz /
16 kHz, 9 shapes): with no fill (12 clips) 0 dB +0.50 / -0.45, 3 dB +0.61 / -0.07, 6 dB +0.53 / +0.15, 10 dB
+0.36 / +0.26; with the fill (24 clips) 0 dB -1.14 / -2.69, 3 dB -1.10 / -2.56, 6 dB -1.12 / -2.51, LSD above the
cutoff within 0.01 of each other.  3 dB rather than 6: as good for the SNR and less dull where the prediction is
right (a -50 dB stopband of pink noise comes back with an error of -5 dB of the highs at 3 dB, -3 at 6)."""
MAX_LIFT = 10.0 ** (80.0 / 20.0)
LIFT_RAMP_OCTAVES = 1 / 4
"""Largest lift of what the input holds in a stopband above the cutoff (80 dB: the depth of an elliptic or
Chebyshev stopband), allowed in full from 1/4 octave above the cutoff and rising to it from none at the cutoff
(320 dB per octave; an 80 dB lift from the cutoff on put the added signal at -50 dB of the input 556 Hz below
it, against the -60 dB allowed).  Chosen on the bandwidth model's validation clips: against the earlier 12 dB
lift over the first 1/12 octave, and before :data:`LIFT_FLOOR_DB`, the SNR change from passthrough went
-1.69 -> -0.27 dB (lowpass 11 kHz), -3.01 -> -1.97 (16 kHz), -1.86 -> -1.05 (11 kHz, then 16 bits with dither),
-0.28 -> -0.22 (MP3 64 kbps), -0.54 -> -0.48 (128 kbps), with LSD above the cutoff the same or lower in each
(60 dB reached at 1/8 octave: -0.61 dB at 11 kHz)."""
LIFT_FLOOR_DB = -125.0
"""Nothing under this power per STFT bin (dB re a full-scale sine) is lifted, and from 10 dB above it the lift is
whole.  An MP3 decoder leaves residues of -120 to -135 dB above its cutoff whatever the music's level (in a quiet
file an 80 dB lift turned them into steady whistles), and a 16-bit file's dither lies near -131 dB: what is
lifted must be more than that.  On the validation clips it gave up part of the gain above (lowpass 11 kHz SNR
change -0.93 dB, 16 kHz -2.47, 16-bit -1.10), the MP3 rates as without the lift."""
TEXTURE_FLOOR = 0.5
"""The copied-up fine structure is whitened (divided by its local RMS); magnitudes under this share of it are
raised to it, keeping their phase.  An MP3 zeroes whole scalefactor bands below the cutoff in many frames, and
copied up as they were those holes scored as missing highs.  Chosen on the bandwidth model's validation clips:
the lowest LSD above the cutoff (1.593 with no floor, 1.552 here) that costs at most 0.05 dB of SNR (0.03 here;
0.7 cost 0.1, 1.0 cost 0.34)."""
HOLE_HOLD_FRAMES = 8
HOLE_DECAY_BELS = 0.3
"""MP3 holes in the anchor band are bridged over up to 8 frames (93 ms at 44.1 kHz), the held level falling 3 dB
per frame (:func:`held_anchor`).  Chosen on the bandwidth model's validation clips: LSD above the cutoff at
MP3 64 kbps 2.686 -> 2.283, at 128 kbps 1.349 -> 1.303, lowpass 11 kHz 1.281 -> 1.283, for at most 0.07 dB
of SNR; a slower fall (2 dB over 12 frames: 2.132 at 64 kbps) cost lowpass 0.17 dB."""
HOLE_MAX_RELATIVE_BELS = 2.0
"""A frame whose anchor lies more than 20 dB over the bands under it holds nothing: the bridge is for bands under
the anchor that play on, and against a near-empty reference the anchor's relative level means nothing (a sweep
or a lone tone in the anchor band, held over a click that then fills the reference, gave a fill 30 dB over the
input).  Music stays under it: 99.99th percentile 1.2-2.0 bels on 60 corpus clips at 11/16 kHz, lowpass and MP3."""
EPS_POWER = 1e-14
"""Power floor (full-scale sine = 1): -140 dB."""
ARCHITECTURE = "bandwidth-envelope-mlp"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "restorers" / "bandwidth.safetensors"


# -- STFT helpers shared with the denoiser -------------------------------------------------------------------------
def analysis_spectra(frames: np.ndarray, n_fft: int) -> np.ndarray:
    """Spectra (..., bins) of frames (..., n_fft) as :class:`StftStream` takes them (sqrt-Hann, unscaled rfft),
    divided by the window gain so that a full-scale sine on a bin has magnitude 1 (the models' scale)."""
    window = sqrt_hann(n_fft)
    return np.fft.rfft(frames * window, axis=-1) / (window.sum() / 2)


# -- the envelope model (pure functions over frames) -------------------------------------------------------------
class Layout:
    """Bins of the feature bands, the output bands, the fade and the copy-up patch for one cutoff.

    Args:
        cutoff_hz: the band limit of the input, Hz (4 kHz … 0.95 x Nyquist).
        sample_rate: Hz.
        n_fft: STFT frame length (samples).
    """

    def __init__(self, cutoff_hz: float, sample_rate: float, n_fft: int) -> None:
        self.cutoff_hz, self.sample_rate, self.n_fft = float(cutoff_hz), float(sample_rate), int(n_fft)
        bins = n_fft // 2 + 1
        bin_hz = sample_rate / n_fft
        self.freqs = np.arange(bins) * bin_hz
        fade_start = cutoff_hz - TRANSITION_HZ
        edges = np.round(np.geomspace(cutoff_hz / 2, fade_start, IN_BANDS + 1) / bin_hz).astype(int)
        self.in_edges = np.maximum.accumulate(np.maximum(edges, np.arange(IN_BANDS + 1) + edges[0]))
        self.low_end = int(self.in_edges[0])
        out = np.geomspace(cutoff_hz, 2 * cutoff_hz, OUT_BANDS + 1) / bin_hz
        self.out_valid = np.round(out[:-1]).astype(int) < bins - 1
        self.out_lo = np.minimum(np.round(out[:-1]).astype(int), bins - 1)
        self.out_hi = np.minimum(np.maximum(np.round(out[1:]).astype(int), self.out_lo + 1), bins)
        """Output bands that start below Nyquist (the others are left out of training losses)."""
        self.out_centres = np.log2(np.sqrt(out[:-1] * out[1:]) * bin_hz / cutoff_hz)
        self.fade_bin = int(math.ceil(fade_start / bin_hz))
        self.patch = max(4, 4 * ((self.fade_bin - self.low_end) // 4))
        ramp = np.clip((self.freqs - fade_start) / TRANSITION_HZ, 0.0, 1.0)
        self.fade = (0.5 - 0.5 * np.cos(np.pi * ramp))[self.fade_bin:]
        self.octaves = np.log2(np.maximum(self.freqs[self.fade_bin:], 1.0) / cutoff_hz)
        """Octaves above the cutoff of every bin from the fade start up (negative in the fade)."""
        centres = self.out_centres[self.out_valid]
        identity = np.eye(len(centres))
        self.interpolation = np.stack([np.interp(self.octaves, centres, row) for row in identity], axis=1)
        """(bins from the fade start, valid bands): band values -> per-bin values, linear in log-frequency."""
        offsets = np.arange(bins - self.fade_bin)
        self.source = self.fade_bin - self.patch + offsets % self.patch
        """For each bin from the fade start up, the bin below it whose content it takes (shift = k x patch)."""


def band_power(power: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of ``power`` (..., bins) over bins [lo, hi) for each band (..., bands)."""
    cumulative = np.concatenate([np.zeros(power.shape[:-1] + (1,)), np.cumsum(power, axis=-1)], axis=-1)
    return (cumulative[..., hi] - cumulative[..., lo]) / (hi - lo)


def frame_features(power: np.ndarray, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of frames with bin powers ``power`` (F, bins) -> (features (F, 10), anchor log10 power (F,)).

    Features: 7 band levels relative to the anchor band (bels = log10 power units), the anchor level
    ((dB + 60) / 30), the level below fc/2 relative to the anchor (bels) and the cutoff as a share of Nyquist.
    """
    edges = layout.in_edges
    bands = np.log10(band_power(power, edges[:-1], edges[1:]) + EPS_POWER)
    anchor = bands[:, -1]
    low = np.log10(power[:, 1:layout.low_end].mean(axis=-1) + EPS_POWER)
    features = np.column_stack([
        bands[:, :-1] - anchor[:, None],
        (10 * anchor + 60) / 30,
        low - anchor,
        np.full(len(anchor), layout.cutoff_hz / (layout.sample_rate / 2)),
    ])
    return features, anchor


def target_bands(clean_power: np.ndarray, anchor: np.ndarray, layout: Layout) -> np.ndarray:
    """Training targets: log10 power of the clean output bands (F, OUT_BANDS) relative to the damaged anchor."""
    bands = band_power(clean_power, layout.out_lo, layout.out_hi)
    return np.log10(bands + EPS_POWER) - anchor[:, None]


def mlp_forward(features: np.ndarray, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The regressor: standardise, then tanh layers ``w0, b0, w1, b1, ...``, the last one linear."""
    hidden = (features - arrays["x_mean"]) / arrays["x_std"]
    layers = sum(1 for name in arrays if name.startswith("w"))
    for index in range(layers):
        hidden = hidden @ arrays[f"w{index}"].astype(np.float64) + arrays[f"b{index}"]
        if index < layers - 1:
            hidden = np.tanh(hidden)
    return hidden


def smooth_bins(power: np.ndarray, half_width: int = 8) -> np.ndarray:
    """Moving average of ``power`` (..., bins) over 2 x half_width + 1 bins (shrinking at the edges)."""
    cumulative = np.concatenate([np.zeros(power.shape[:-1] + (1,)), np.cumsum(power, axis=-1)], axis=-1)
    bins = power.shape[-1]
    index = np.arange(bins)
    lo, hi = np.maximum(index - half_width, 0), np.minimum(index + half_width + 1, bins)
    return (cumulative[..., hi] - cumulative[..., lo]) / (hi - lo)


def added_spectra(
    spectra: np.ndarray, predicted: np.ndarray, anchor: np.ndarray, layout: Layout, fill_duck: float = 0.0,
    anchor_mean: float | None = None,
) -> np.ndarray:
    """The spectra (F, bins) to add to frames ``spectra`` (F, bins): zero below the fade start, above it the
    copied-up, whitened fine structure shaped to the predicted envelope ``predicted`` (F, OUT_BANDS, bels relative
    to ``anchor``) minus what the input already holds there (lifted), times the fade.  In a frame whose anchor
    power is r times ``anchor_mean`` (the input's mean; None: no ducking) the fill ducks by
    10 log10(1 + ``fill_duck`` x r) dB, ramped in over :data:`FILL_DUCK_OCTAVES`."""
    start = layout.fade_bin
    power = spectra.real ** 2 + spectra.imag ** 2
    smooth = smooth_bins(power)
    # predicted envelope per bin: interpolate the band values over log-frequency (flat beyond the end bands)
    octaves = layout.octaves
    envelope = np.minimum(predicted[:, layout.out_valid] @ layout.interpolation.T, 0.3)
    # at the seam the envelope continues the anchor's level (no step), handing over to the model over 1/8 octave
    envelope *= np.clip(octaves / SEAM_OCTAVES, 0.0, 1.0)
    target = 10.0 ** (anchor[:, None] + envelope)
    # what the input holds: the wide average; above the cutoff not more than the 3-bin one, so that the in-band
    # level does not leak across a sharp cutoff into the bins just above it (they would look full, get no fill)
    above = octaves >= 0
    held = np.where(above, np.minimum(smooth[:, start:], smooth_bins(power[:, start - 1:], 1)[:, 1:]),
                    smooth[:, start:])
    # the input counts as a stopband where it lies >= 20 dB under the target; within 10 dB of it nothing is added
    # (real content above a cutoff detected too low stays as it is)
    depth_db = 10 * np.log10((target + EPS_POWER) / (held + EPS_POWER))
    stopband = np.clip((depth_db - 10.0) / 10.0, 0.0, 1.0)
    # what a stopband above the cutoff still holds over the floor of dither and codec residues is mostly an
    # attenuated copy of the truth (a lowpass's stopband): lifted coherently towards LIFT_HEADROOM_DB under the
    # target it comes back, where a fill would only add error; the lift allowed rises from none at the cutoff, as
    # a gain that jumps there leaks through the STFT window into the band below
    allowed = MAX_LIFT ** np.clip(octaves / LIFT_RAMP_OCTAVES, 0.0, 1.0)
    lift = np.minimum(np.sqrt(np.maximum(target * 10.0 ** (-LIFT_HEADROOM_DB / 10) / (held + EPS_POWER), 1.0)),
                      allowed)
    liftable = np.clip((10 * np.log10(held + EPS_POWER) - LIFT_FLOOR_DB) / 10.0, 0.0, 1.0)
    boost = 1.0 + (lift - 1.0) * stopband * liftable
    # the copied-up fine structure fills what the lift does not reach, up to the envelope (ducked in loud frames)
    fill_level = np.ones((1, 1))
    if fill_duck > 0 and anchor_mean:
        # an uncorrelated fill costs SNR in proportion to its energy, which the loudest frames hold, while the
        # log-spectral distance weighs every frame alike: the fill ducks where it costs the most error
        lo, hi = FILL_DUCK_OCTAVES
        duck = 1.0 / (1.0 + fill_duck * 10.0 ** anchor / anchor_mean)
        fill_level = duck[:, None] ** np.clip((octaves - lo) / (hi - lo), 0.0, 1.0)
    # (where the lift reaches its aim, LIFT_HEADROOM_DB under the envelope, it stands for the whole band: a fill
    # on top of it would add uncorrelated error to a band that is already there)
    missing = np.maximum(target * fill_level - boost ** 2 * held * 10.0 ** (LIFT_HEADROOM_DB / 10), 0.0) * stopband
    source = spectra[:, layout.source]
    whitened = source / np.sqrt(smooth[:, layout.source] + EPS_POWER)
    magnitude = np.abs(whitened)
    whitened = np.where(magnitude < TEXTURE_FLOOR, whitened * (TEXTURE_FLOOR / np.maximum(magnitude, 1e-30)), whitened)
    added = np.zeros_like(spectra)
    added[:, start:] = ((boost - 1.0) * spectra[:, start:] + whitened * np.sqrt(missing)) * layout.fade
    return added


_WEIGHTS_CACHE: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}


def load_weights(path: Path, architecture: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays as float64, config) of a restorer model file, cached per resolved path."""
    from ...models.model_file import load_arrays

    key = f"{architecture}:{Path(path).resolve()}"
    if key not in _WEIGHTS_CACHE:
        arrays, info = load_arrays(path, architecture)
        _WEIGHTS_CACHE[key] = ({name: value.astype(np.float64) for name, value in arrays.items()}, dict(info.config))
    return _WEIGHTS_CACHE[key]


def long_term_spectrum(source: Path | np.ndarray, sample_rate: float) -> Any:
    """The mean power spectrum of a file or a (channels, n) buffer (all channels), read in blocks: the
    ``_SpectrumAverager`` of :mod:`pedalchain.chains.detect`, whose ``cutoff_hz()`` is the band limit."""
    from ...chains.audio_io import source_blocks
    from ...chains.detect import _SpectrumAverager

    averager = _SpectrumAverager(int(round(sample_rate)))
    for block in source_blocks(source, 1 << 16):
        averager.add(block)
    return averager


def detect_cutoff(source: Path | np.ndarray, sample_rate: float) -> float | None:
    """Band limit (Hz, the -6 dB point) of a file or a (channels, n) buffer, or None; the estimator of
    :mod:`pedalchain.chains.detect`."""
    return long_term_spectrum(source, sample_rate).cutoff_hz()


def mean_anchor_power(spectrum: Any, layout: Layout) -> np.ndarray | None:
    """Each channel's mean power in the anchor band over the whole input (channels,), on the scale of
    :func:`extend_frames`' spectra, from its :func:`long_term_spectrum` (None when that holds no frame).  The two
    STFTs differ in window and length: the power of a smooth spectrum scales with the sum of the squared window,
    divided here by the square of the sine gain that sets the frames' scale."""
    if spectrum.frames == 0:
        return None
    bin_hz = spectrum.fs / spectrum.nfft
    lo_hz, hi_hz = layout.freqs[layout.in_edges[-2]], layout.freqs[layout.in_edges[-1]]
    lo = int(round(lo_hz / bin_hz))
    hi = max(int(round(hi_hz / bin_hz)), lo + 1)
    window = sqrt_hann(layout.n_fft)
    scale = float(np.sum(window ** 2) / (window.sum() / 2) ** 2 / np.sum(spectrum.window ** 2))
    frames_per_channel = spectrum.frames / len(spectrum.channel_power)
    return np.mean(spectrum.channel_power[:, lo:hi], axis=1) / frames_per_channel * scale


class BandwidthExtension(Restorer):
    """Bandwidth extension above a cutoff; see the module docstring.

    Args:
        cutoff: ``"auto"`` (find it in :meth:`analyze_input`) or the band limit in Hz (4 kHz … 0.95 x Nyquist
            of the audio it runs on).
        model: a model file written by ``chain train restorer --damage bandwidth:HZ``; default the shipped
            ``models/weights/restorers/bandwidth.safetensors``.
        base_dir: folder a relative ``model`` path resolves against (the YAML's folder).
    """

    name = "bandwidth"
    min_rate_hz, max_rate_hz = MIN_RATE_HZ, MAX_RATE_HZ

    def __init__(self, cutoff: float | str = "auto", model: str | Path | None = None,
                 base_dir: str | Path | None = None) -> None:
        super().__init__()
        self.cutoff = cutoff
        self.model_path = (DEFAULT_WEIGHTS if model is None
                           else resolve_model_param(model, "restorer: bandwidth.model", base_dir, ARCHITECTURE))
        self._model_param = model
        self.detected: float | None = None
        """Cutoff found by the last :meth:`analyze_input` (Hz), None for none or not analysed."""
        self._active_cutoff: float | None = None
        self._stream: StftStream | None = None
        self._delay: DelayLine | None = None
        self._layout: Layout | None = None
        self._arrays: dict[str, np.ndarray] = {}
        self._spectrum: Any = None
        """The input's long-term spectrum from the last :meth:`analyze_input` (the fill's ducking reference)."""

    @property
    def cutoff(self) -> float | str:
        """"auto" or the band limit in Hz; set (checked as in the constructor), it applies from the next call."""
        return self._cutoff

    @cutoff.setter
    def cutoff(self, cutoff: float | str) -> None:
        where = "restorer: bandwidth.cutoff"
        if isinstance(cutoff, str) and cutoff.strip().lower() == "auto":
            self._cutoff: float | str = "auto"
        else:
            value = parse_quantity(cutoff, "Hz", "cutoff", where=where, word="auto")  # 16000, "16 kHz"
            if value < MIN_CUTOFF_HZ:
                raise ParameterError(f"cutoff: {value:g} Hz is out of range: 'auto' or >= {MIN_CUTOFF_HZ:g} Hz",
                                     where=where)
            self._cutoff = value
        self._set_up_again()  # the fill's layout follows the cutoff

    def __repr__(self) -> str:
        return f"BandwidthExtension(cutoff={self.cutoff!r})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> BandwidthExtension:
        unknown = sorted(set(params) - {"cutoff", "model"})
        if unknown:
            raise ParameterError(f"restorer 'bandwidth' has no parameter {', '.join(unknown)} (it takes cutoff, "
                                 "model)", where=where)
        try:
            return cls(params.get("cutoff", "auto"), params.get("model"), base_dir=base_dir)
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        values: dict[str, Any] = {"cutoff": self.cutoff}
        if self._model_param is not None:
            values["model"] = str(self.model_path)
        return values

    @property
    def active_cutoff(self) -> float | None:
        """The cutoff the restorer extends from at the prepared rate (Hz), None when it passes through."""
        return self._active_cutoff

    @property
    def analyses_input(self) -> bool:
        return self.cutoff == "auto"

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        self.check_rate(sample_rate)
        self._spectrum = long_term_spectrum(source, sample_rate)
        if self.cutoff == "auto":
            self.detected = self._spectrum.cutoff_hz()
        self._reconfigured()
        if self.cutoff != "auto":
            return []
        if self.detected is None:
            return ["bandwidth: no band limit found: passed through"]
        if not self._usable(self.detected, sample_rate):
            return [f"bandwidth: band limit at {self.detected / 1000:.1f} kHz: outside {MIN_CUTOFF_HZ / 1000:g} kHz"
                    f" … {MAX_CUTOFF_SHARE:.0%} of Nyquist, passed through"]
        return [f"bandwidth: band limit at {self.detected / 1000:.1f} kHz: extended"]

    @staticmethod
    def _usable(cutoff: float, sample_rate: float) -> bool:
        return MIN_CUTOFF_HZ <= cutoff <= MAX_CUTOFF_SHARE * sample_rate / 2

    def check_format(self, sample_rate: float, num_channels: int) -> None:
        self.check_rate(sample_rate)
        if self.cutoff != "auto" and not self._usable(float(self.cutoff), sample_rate):
            raise ParameterError(
                f"{float(self.cutoff):g} Hz is out of range for {sample_rate:g} Hz audio: {MIN_CUTOFF_HZ:g} … "
                f"{MAX_CUTOFF_SHARE * sample_rate / 2:g} Hz", where="restorer: bandwidth.cutoff")

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self.check_format(sample_rate, num_channels)
        n_fft, hop = stft_size(sample_rate)
        cutoff = self.detected if self.cutoff == "auto" else float(self.cutoff)
        self._active_cutoff = cutoff if cutoff is not None and self._usable(cutoff, sample_rate) else None
        self._stream = None
        if self._active_cutoff is not None:
            self._arrays, config = load_weights(self.model_path, ARCHITECTURE)
            self._layout = Layout(self._active_cutoff, sample_rate, n_fft)
            measured = self._spectrum is not None and self._spectrum.fs == int(round(sample_rate))
            anchor_mean = mean_anchor_power(self._spectrum, self._layout) if measured else None
            self._stream = added_stream(num_channels, sample_rate, self._layout, self._arrays,
                                        float(config.get("fill_duck", 0.0)), anchor_mean)
        latency = StftStream(1, n_fft, hop, lambda spectra, context: spectra, sample_rate).latency
        self._delay = DelayLine(num_channels, latency)
        return latency

    def _reset_state(self) -> None:
        self._delay.reset()
        if self._stream is not None:
            self._stream.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        delayed = self._delay.process(audio)
        if self._stream is None:
            return delayed
        return delayed + self._stream.process(audio)


def added_stream(channels: int, sample_rate: float, layout: Layout, arrays: dict[str, np.ndarray],
                 fill_duck: float = 0.0, anchor_mean: np.ndarray | None = None) -> StftStream:
    """A :class:`StftStream` whose output is the signal to add to the (delayed) input.  ``fill_duck`` and each
    channel's ``anchor_mean`` (channels,): see :func:`added_spectra`; a mean measured over another number of
    channels is pooled for all of them."""
    if anchor_mean is not None and len(anchor_mean) != channels:
        anchor_mean = np.full(channels, float(np.mean(anchor_mean)))
    n_fft, hop = stft_size(sample_rate)
    scale = sqrt_hann(n_fft).sum() / 2

    def hook(spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        frames = spectra.transpose(0, 2, 1).astype(np.complex128) / scale
        added = np.stack([extend_frames(frames[channel], layout, arrays, context.lookbehind, fill_duck,
                                        None if anchor_mean is None else float(anchor_mean[channel]))
                          for channel in range(channels)])
        return (added * scale).transpose(0, 2, 1)

    return StftStream(channels, n_fft, hop, hook, sample_rate, lookbehind=HOLE_HOLD_FRAMES)


def held_anchor(features: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The anchor (F,) with the holes an MP3 encoder leaves in it bridged (bels).

    At low bitrates the encoder zeroes the top scalefactor bands below the cutoff in many frames while the
    bands under them play on; taken as it is, such an anchor shapes the fill tens of dB too low.  So the
    anchor's level relative to the bands under it (the first 6 input bands, mean power) may fall by at most
    :data:`HOLE_DECAY_BELS` per frame since any of the :data:`HOLE_HOLD_FRAMES` frames before; when the whole
    spectrum falls (a note ends) the reference falls with it, and nothing is held.  Silent frames (the stream's
    start included) hold nothing, nor do frames with an anchor over :data:`HOLE_MAX_RELATIVE_BELS` above the
    reference.  ``features`` and ``anchor``: as :func:`frame_features` returns them."""
    reference = anchor + np.log10(np.mean(10.0 ** features[:, :6], axis=-1))  # features: bands re the anchor
    relative = anchor - reference
    relative = np.where((reference > math.log10(EPS_POWER) + 1.0) & (relative <= HOLE_MAX_RELATIVE_BELS), relative,
                        -np.inf)
    held = relative.copy()
    for age in range(1, min(HOLE_HOLD_FRAMES, len(held) - 1) + 1):
        held[age:] = np.maximum(held[age:], relative[:-age] - age * HOLE_DECAY_BELS)
    return np.maximum(anchor, np.where(np.isfinite(held), reference + held, anchor))


def extend_frames(spectra: np.ndarray, layout: Layout, arrays: dict[str, np.ndarray], context: int = 0,
                  fill_duck: float = 0.0, anchor_mean: float | None = None) -> np.ndarray:
    """The spectra to add to frames ``spectra`` (F, bins) of one channel: features -> envelope -> fill.  The first
    ``context`` frames only inform :func:`held_anchor`; the result holds the F - context frames after them."""
    power = spectra.real ** 2 + spectra.imag ** 2
    features, anchor = frame_features(power, layout)
    anchor = held_anchor(features, anchor)[context:]
    predicted = mlp_forward(features[context:], arrays)
    return added_spectra(spectra[context:], predicted, anchor, layout, fill_duck, anchor_mean)
