"""``restorer: denoise``: removes stationary noise (hiss, hum, a noise floor) with a learned spectral gain that
never takes music down by more than ``amount_db``.

Method (per channel, on the frames of :class:`pedalchain.effects.restorers.stft.SpectralRestorer`: sqrt-Hann
1024/256 at 22.05–32 kHz, 2048/512 at 32–48 kHz, 4096/1024 above; :func:`frame_size`), from an analysis of the
whole input in :meth:`Denoise.analyze_input` (files read in blocks, memory bounded; :class:`NoiseProfiler`):

1. Mains hum is subtracted sample by sample first (:class:`HumModel`).  The analysis takes 2-second
   Hann-windowed spectra (0.5 Hz bins) on a fixed grid; a harmonic k x 50 or k x 60 Hz (up to 2 kHz) is hum
   when, in their sum, the highest bin within 1 Hz of it lies within 0.5 Hz of it and 10 dB over the median
   2–6 Hz either side, when it is steady (its amplitude and phase, measured in half-overlapping 1-second
   windows, barely move: a kick drum or a bass note on the grid comes and goes), when it is not one tooth of a
   comb of lines (a loop repeating in a whole number of mains periods, :func:`comb_tooth`), and when at least two
   harmonics of that base that are not also multiples of the other base qualify, one of them among its first
   four, and each one reaches -96 dBFS.  Inputs under 1.5 s are not searched.  Each one's amplitude and
   phase per 2-second block (the median over the windows, so a passing note does not bias it) is interpolated
   between block centres.  A bass note 2 Hz from a hum line is left alone, where any gain on 21 Hz-wide STFT
   bins would take both down.  Other stationary tones (a whine, a fan) count as music and are left in.
2. Noise profile, of the input with the hum subtracted (a second pass where hum was found: a steady line leaks
   through the window's sidelobes into every bin and would pass for a noise floor; :func:`analyse_noise`):
   per bin, a histogram of the frame powers (0.5 dB steps, all channels; digitally silent frames left out:
   an edit's padding would otherwise be the noise estimate) gives the 10th percentile, which for noise alone
   (exponentially distributed power) is 0.105 x its mean; so noise power =
   P10 / 0.105.  The DC and Nyquist bins of a real signal are real, their noise power chi-squared with one
   degree of freedom: there P10 is 0.0158 x the mean, and pure noise spreads 14.6 dB from P10 to the median
   instead of 8.2 (:func:`noise_quantile_factor`; read as exponential, the rumble below 20 Hz was kept).
   A held note is as stationary as hum, so stationary *lines* in that profile (bins over 6 dB above the 25th
   percentile of the 13 around them, and 2 bins either side) are not taken for noise: they get that floor
   instead.  Such bins falling away from DC (or Nyquist), up to where the level first rises again, are a noise
   slope running off the spectrum -- pink hiss rising towards DC -- and stay noise.
3. Per bin and frame, features of the a-posteriori SNR ``gamma = |X|^2 / noise`` in dB (clipped to -20..50):
   at the bin in the two frames before, this one and the next three (three frames of look-ahead: an onset is
   seen coming), at the two bins on either side, averaged over 17 bins, averaged over those 6 frames x 3 bins
   and over the 4 frames before them x 3 bins, the bin's frequency and how noise-like the bin is over the whole
   input (:func:`gain_features`).
4. A small MLP (15 -> 24 -> 12 -> 1, ReLU, sigmoid output; numpy) maps them to a gain in 0..1, trained on clean
   music with added noise (``models/restore/fit_denoise.py``) to minimise |g X - S|^2 (the phase-sensitive mask).
   On the bins of a held note (a line of step 2) the gain is at least the plain subtraction gain against the
   floor around it: the network sees a steady bin and leans towards "noise", as residual hum is steady too.
5. The gain is floored at ``-amount_db`` (default 12 dB): the restorer never attenuates anything -- a quiet
   passage included -- by more than that, so it cannot gate music to silence; ``amount_db: 0`` passes through
   bit for bit (hum included).  Where the analysis finds hum and no other stationary noise
   (:meth:`NoiseProfiler.noise_found`), no gain is applied at all: the profile is then the music's own quiet
   frames.  Wherever no gain applies (and with ``hum_only``) the input, less the hum, skips the STFT: it comes out
   exactly, only delayed by the latency.

The channels are independent and share the restorers' threads (:func:`~pedalchain.effects.restorers.on_threads`).
Without an analysis (pure streaming with ``reset=False`` from the start) there is no noise profile and the
restorer passes the input through bit for bit (delayed by its latency).  :func:`spectral_subtraction_gain` is the
classic baseline (power subtraction with the 10th-percentile profile, lines and hum included, and the same floor)
the benchmarks compare against.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from ...chains.audio_io import source_blocks
from ...errors import ModelFileError, ParameterError
from ..streaming import DelayLine
from ..units import parse_quantity
from . import on_threads, resolve_model_param
from .bandwidth import DEFAULT_WEIGHTS as _BANDWIDTH_WEIGHTS
from .bandwidth import load_weights
from .declip import runs_of
from .stft import FrameContext, SpectralRestorer, sqrt_hann, stft_size
from .tiles import BIN_TILE, dense_layers

ARCHITECTURE = "denoise-gain-mlp"
DEFAULT_WEIGHTS = _BANDWIDTH_WEIGHTS.parent / "denoise.safetensors"
DEFAULT_AMOUNT_DB = 12.0
MAX_AMOUNT_DB = 40.0
QUANTILE = 0.1
"""Percentile of the frame powers per bin taken as the noise floor; P_q of exponential power = -ln(1-q) x mean."""
HIST_LOW_DB, HIST_HIGH_DB, HIST_STEP_DB = -160.0, 80.0, 0.5
SILENT_FRAME_DBFS = -150.0
"""Frames (per channel) with a mean power below this are digital silence and left out of the noise profile (a
24-bit file's last bit is at -138 dBFS)."""
MIN_SILENCE_SAMPLES = 32
"""Runs of this many samples that are exactly 0 in every channel are digital silence: hum is not subtracted there
(music with hum in it is never 0 that long; without hum, there is nothing to subtract)."""
GAMMA_RANGE_DB = (-20.0, 50.0)
NEIGHBOURS = 2
"""Bins on either side whose SNR is a feature."""
WIDE = 8
"""Half-width (bins) of the wide SNR average."""
LOOKBEHIND, LOOKAHEAD = 6, 3
NEAR = 2
"""Frames before this one whose SNR at the bin is a feature of its own (the older ones are averaged)."""
FEATURES = 2 * NEIGHBOURS + NEAR + LOOKAHEAD + 6
STATIONARY_SPREAD_DB = 10.5
"""A bin looks noise-dominated when its median frame power is within this of its 10th percentile (8.2 dB for
pure noise, far more for music)."""
NOISE_FOUND_SHARE = 0.7
NOISE_FOUND_DBFS = -85.0
LINE_DB = 6.0
"""A profile bin this far above the floor around it (the 25th percentile of the LINE_REACH bins either side) is
a stationary line..."""
LINE_REACH = 6
LINE_SKIRT = 2
"""...and so are the bins this close to it (a sqrt-Hann window spreads a steady tone over about 5 bins)."""
HUM_BASES_HZ = (50.0, 60.0)
HUM_MAX_HZ = 2000.0
HUM_BLOCK_S = 2.0
"""Hum blocks: amplitude and phase of each harmonic are measured per block of this length (0.5 Hz bins)."""
HUM_TOLERANCE_HZ = 0.5
"""Mains frequency drifts by about 0.1 Hz; a harmonic's peak must lie this close to k x 50 (60) Hz..."""
HUM_PEAK_DB = 10.0
"""...and stand this far above the median power 2-6 Hz either side of it..."""
HUM_STEADY_DB = 5.0
"""...and be steady: the power of its median amplitude over a block's windows this far above the mean power of
the windows' deviations from it (a kick drum's or a bass note's partial on the grid comes and goes)..."""
HUM_COMB_HZ = (1.5, 6.0)
"""...and not be a tooth of a comb: lines (peaks HUM_PEAK_DB over the 25th percentile within twice the largest
spacing, and at most HUM_COMB_DB under the line itself) at the distances d and 2 d on both sides of it, d in this
range, are the spectrum of a loop repeating every 1/d seconds, as steady as hum (a kick drum on every beat at
150 bpm puts a line every 2.5 Hz, one of them on 60 Hz; at 120 bpm every 2 Hz, on 50 and 60 Hz); notes beside real
hum do not line up so..."""
HUM_COMB_DB = 20.0
HUM_MIN_HARMONICS = 2
"""...and its base needs this many such harmonics that are not multiples of the other base as well (one tone on
the grid is more likely a note)..."""
HUM_LOW_HARMONICS = 4
"""...one of them at most this many times the base: mains hum is strongest in its first few harmonics (the
fundamental; 2nd and 3rd for a rectifier's buzz), while a held note and its octave can sit on the grid high up
(E5 at 660 Hz and E6 at 1320 Hz are the 11th and 22nd harmonics of 60 Hz)."""
HUM_MIN_DBFS = -96.0
"""A harmonic also has to reach this level (peak amplitude) to count.  A steady synthetic tone's rounding error
is periodic too, with lines on the 50/60 Hz grid when the tone repeats in a multiple of 1/20 s (a 220 Hz sine at
44.1 kHz: int16 ones at -121 dBFS, float32 ones at -191; 1 kHz: lines on the 100 Hz grid, which made the tone
itself the 20th "hum" harmonic); all of 16-bit quantisation error in a single line would be -98 dBFS.  Without
this floor such a clean lossless tone came out changed."""
HUM_MIN_WINDOWS = 2
"""A block (the last one may be short) is measured only when it holds this many 1-second windows (1.5 s):
with one window there is nothing to tell steady hum from a held note.  Shorter inputs are not searched."""
HUM_MIN_INPUT_S = (HUM_MIN_WINDOWS + 1) * HUM_BLOCK_S / 4
"""Inputs shorter than this (1.5 s) are not searched for hum."""


PARALLEL_MIN_FRAMES = 16
"""Batches of at least this many frames denoise their channels on threads; in smaller ones (a script streaming
512-sample blocks: one frame each) the hand-over cost more than it saved (1.5x slower).  Same output either way."""
MIN_RATE_HZ = 22050.0
"""Lowest rate denoise runs at: with 1024-sample frames there, the frames the gain network was trained on."""
LOW_RATE_HZ = 32000.0
"""Below this rate the frames are 1024 / 256 samples (:func:`frame_size`)."""


def frame_size(sample_rate: float) -> tuple[int, int]:
    """``(n_fft, hop)`` of denoise's frames: those of :func:`stft_size`, but 1024 / 256 below LOW_RATE_HZ.  At
    22.05 kHz these are the 21.5 Hz bins and 11.6 ms hop that 2048 / 512 give at 44.1 kHz, where the gain network
    was trained (its features span 17 bins and 10 frames), and 24 kHz is close to them."""
    return (1024, 256) if sample_rate < LOW_RATE_HZ else stft_size(sample_rate)


def stft_power_scale(n_fft: int) -> float:
    """|rfft|^2 of a full-scale sine on a bin in the StftStream's unscaled spectra (for dBFS figures)."""
    return float((sqrt_hann(n_fft).sum() / 2) ** 2)


class HumModel:
    """Mains hum as harmonics of slowly varying amplitude and phase, to subtract sample by sample.

    Args:
        frequencies: the harmonics, Hz (K,).
        sample_rate: Hz.
        centres: absolute sample index of each measured block's centre (M,), increasing.
        amplitudes: complex amplitude of each harmonic per channel and block (channels, M, K), phase relative to
            sample 0: the hum near block m is Re(sum_k a[m, k] exp(2 pi i f_k n / rate)).  Between centres the
            amplitudes are interpolated linearly, before the first and after the last held.
        end: samples the hum was measured over; from there on, and before sample 0, there is none (the zeros
            that flush a step's latency, or a reverb's tail, hold no hum to subtract).
        bases: the mains frequencies (50 and/or 60 Hz) the harmonics belong to, Hz.
        silences: the input's digital silence, (R, 2) [start, end) absolute sample indices, increasing: runs of
            at least :data:`MIN_SILENCE_SAMPLES` samples that are 0 in every channel.  No hum is synthesized there:
            the amplitudes are interpolated over 2-second blocks, and an edit's padding or a gated pause next to
            hum would otherwise get hum subtracted from nothing, i.e. added.
    """

    def __init__(self, frequencies: np.ndarray, sample_rate: float, centres: np.ndarray,
                 amplitudes: np.ndarray, end: int, bases: tuple[float, ...],
                 silences: np.ndarray | None = None) -> None:
        self.frequencies = np.asarray(frequencies, np.float64)
        self.sample_rate = float(sample_rate)
        self.centres = np.asarray(centres, np.float64)
        self.amplitudes = np.asarray(amplitudes, complex)
        self.end = int(end)
        self.bases = tuple(bases)
        self.silences = np.zeros((0, 2), np.int64) if silences is None else np.asarray(silences, np.int64)

    def synthesize(self, start: int, count: int) -> np.ndarray:
        """The hum at absolute samples [start, start + count): float64 (channels, count)."""
        piece = 8192  # bounds the (channels, samples, harmonics) temporaries
        return np.concatenate([self._synthesize(first, min(piece, start + count - first))
                               for first in range(start, start + count, piece)] or
                              [np.zeros((self.amplitudes.shape[0], 0))], axis=1)

    def _synthesize(self, start: int, count: int) -> np.ndarray:
        n = np.arange(start, start + count, dtype=np.float64)
        position = np.clip(np.interp(n, self.centres, np.arange(len(self.centres))), 0, len(self.centres) - 1)
        lower = np.minimum(position.astype(np.int64), len(self.centres) - 1)
        upper = np.minimum(lower + 1, len(self.centres) - 1)
        fraction = (position - lower)[None, :, None]
        amplitude = (1 - fraction) * self.amplitudes[:, lower] + fraction * self.amplitudes[:, upper]
        # phase by whole periods first: n x f in float64 keeps micro-radian precision for days of audio
        cycles = np.outer(n, self.frequencies) / self.sample_rate
        carrier = np.exp(2j * np.pi * (cycles - np.floor(cycles)))
        run = np.searchsorted(self.silences[:, 0], n, side="right") - 1
        silent = (run >= 0) & (n < self.silences[np.maximum(run, 0), 1]) if len(self.silences) else False
        return np.einsum("cnk,nk->cn", amplitude, carrier).real * ((n >= 0) & (n < self.end) & ~silent)

    def power_dbfs(self) -> float:
        """Mean power of the hum over its blocks and channels, dBFS (a full-scale square wave is 0)."""
        power = float(np.mean(np.sum(np.abs(self.amplitudes) ** 2, axis=-1))) / 2
        return 10 * math.log10(max(power, 1e-30))

    def describe(self) -> str:
        level = 20 * math.log10(max(float(np.abs(self.amplitudes).max()), 1e-12))
        return (f"mains hum at {'/'.join(f'{b:g}' for b in self.bases)} Hz ({len(self.frequencies)} harmonics, "
                f"strongest {level:.0f} dBFS peak)")


def silent_samples(audio: np.ndarray) -> np.ndarray:
    """Mask of the samples of (channels, n) ``audio`` in runs of at least MIN_SILENCE_SAMPLES samples that are 0 in
    every channel (digital silence)."""
    starts, ends = runs_of(~np.any(audio != 0, axis=0))
    long = (ends - starts) >= MIN_SILENCE_SAMPLES
    change = np.zeros(audio.shape[1] + 1, np.int64)
    np.add.at(change, starts[long], 1)
    np.add.at(change, ends[long], -1)
    return np.cumsum(change[:-1]) > 0


def noise_quantile_factor(q: float, bins: int) -> np.ndarray:
    """Per bin of an even-length rfft: the q-quantile of noise power over its mean.  Complex bins have exponential
    power, -ln(1 - q); the real DC and Nyquist bins chi-squared power of one degree of freedom, z^2 with z the
    (1 + q) / 2 quantile of the standard normal."""
    factor = np.full(bins, -math.log(1 - q))
    factor[[0, -1]] = statistics.NormalDist().inv_cdf((1 + q) / 2) ** 2
    return factor


class NoiseProfiler:
    """Accumulates per-bin histograms of frame power (dB of the unscaled sqrt-Hann rfft) over non-overlapping
    frames of ``n_fft`` samples; :meth:`profile` gives the noise power per bin, :meth:`noise_found` the verdict,
    :meth:`hum` the mains hum (searched only with ``find_hum``, about three quarters of the cost)."""

    def __init__(self, n_fft: int, sample_rate: float, find_hum: bool = True) -> None:
        self.n_fft = n_fft
        self.find_hum = find_hum
        self.sample_rate = float(sample_rate)
        self.window = sqrt_hann(n_fft)
        self.levels = int((HIST_HIGH_DB - HIST_LOW_DB) / HIST_STEP_DB)
        self.bins = n_fft // 2 + 1
        self.counts = np.zeros((self.bins, self.levels), np.int64)
        self.frames = 0
        self.silent_frames = 0  # left out of the histograms (see SILENT_FRAME_DBFS)
        self._carry: np.ndarray | None = None
        self.hum_block = int(round(HUM_BLOCK_S * self.sample_rate))
        self.hum_candidates = np.unique([k * base for base in HUM_BASES_HZ
                                         for k in range(1, int(HUM_MAX_HZ / base) + 1)])
        self._hum_power = np.zeros(self.hum_block // 2 + 1)
        self._hum_blocks: list[np.ndarray] = []  # per block: (channels, candidates) complex amplitudes
        self._hum_steady = np.zeros(len(self.hum_candidates))  # power of the windows' median amplitude
        self._hum_unsteady = np.zeros(len(self.hum_candidates))  # mean power of the windows' deviations from it
        self._hum_carry: np.ndarray | None = None
        self._silences: list[tuple[int, int]] = []
        self._silence_from: int | None = None  # start of the run of zeros still open at the end of the input
        self._added = 0  # samples added

    def add(self, block: np.ndarray) -> None:
        """Add (channels, n) audio; samples short of a whole frame wait for the next block."""
        if self.find_hum:
            self._track_silence(block)
        data = block if self._carry is None else np.concatenate([self._carry, block], axis=1)
        usable = data.shape[1] // self.n_fft * self.n_fft
        if usable:
            frames = data[:, :usable].reshape(data.shape[0], -1, self.n_fft).astype(np.float64)
            # digital silence (an edit's padding, a gated pause) says nothing about the noise under the music: a
            # tenth of the frames silent would put the 10th percentile, the noise estimate, at zero
            audible = np.mean(frames ** 2, axis=-1) >= 10 ** (SILENT_FRAME_DBFS / 10)
            self.silent_frames += int(audible.size - np.count_nonzero(audible))
            frames = frames[audible]
            power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
            self.add_power(power)
        self._carry = data[:, usable:]
        if not self.find_hum:
            return
        data = block if self._hum_carry is None else np.concatenate([self._hum_carry, block], axis=1)
        for start in range(0, data.shape[1] // self.hum_block * self.hum_block, self.hum_block):
            self._hum_blocks.append(self._hum_block(data[:, start:start + self.hum_block],
                                                    len(self._hum_blocks) * self.hum_block))
        self._hum_carry = data[:, data.shape[1] // self.hum_block * self.hum_block:]

    def _track_silence(self, block: np.ndarray) -> None:
        """Note the runs of samples that are 0 in every channel (runs may span blocks)."""
        starts, ends = runs_of(~np.any(block != 0, axis=0))
        starts, ends = starts + self._added, ends + self._added
        if self._silence_from is not None:
            if len(starts) and starts[0] == self._added:
                starts[0] = self._silence_from
            else:
                self._close_silence(self._silence_from, self._added)
            self._silence_from = None
        self._added += block.shape[1]
        if len(ends) and ends[-1] == self._added:
            self._silence_from = int(starts[-1])
            starts, ends = starts[:-1], ends[:-1]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self._close_silence(start, end)

    def _close_silence(self, start: int, end: int) -> None:
        if end - start >= MIN_SILENCE_SAMPLES:
            self._silences.append((start, end))

    def _hum_block(self, audio: np.ndarray, start: int) -> np.ndarray:
        """Complex amplitudes (channels, candidates) of the hum candidates in the block of ``audio`` starting at
        absolute sample ``start``, phase relative to sample 0; adds the block's power spectrum (Hann window, 0.5 Hz
        bins) to the sum used for detection.

        A note or a kick drum on a hum frequency would bias a projection over the whole block, so the block is
        cut into half-overlapping Hann windows of half a block (1 Hz resolution: a note 2 Hz from a harmonic
        stays out of it) and each harmonic's amplitude is the median (real and imaginary parts) over them:
        steady hum gives the same complex amplitude in every window, music a different one in some."""
        data = audio.astype(np.float64)
        spectra = np.fft.rfft(data * np.hanning(data.shape[1]), n=self.hum_block, axis=-1)
        self._hum_power += (spectra.real ** 2 + spectra.imag ** 2).sum(axis=0)
        size = min(self.hum_block // 2, data.shape[1])
        starts = np.arange(0, data.shape[1] - size + 1, max(size // 2, 1))
        window = np.hanning(size)
        frames = np.lib.stride_tricks.sliding_window_view(data, size, axis=1)[:, starts] * window
        bins = self.hum_candidates * size / self.sample_rate
        if np.allclose(bins, np.rint(bins)):  # a window holds whole periods of every candidate
            values = np.fft.rfft(frames, axis=-1)[..., np.rint(bins).astype(np.int64)]
        else:
            values = frames @ np.exp(-2j * np.pi * np.outer(np.arange(size), self.hum_candidates) / self.sample_rate)
        cycles = np.outer(start + starts, self.hum_candidates) / self.sample_rate
        absolute = values * np.exp(-2j * np.pi * (cycles - np.floor(cycles)))[None]  # (channels, windows, K)
        # windows reaching into digital silence (no hum is subtracted there) are left out: next to an edit's
        # padding they would make every line look unsteady and pull the amplitude towards zero
        silent = np.concatenate([[0], np.cumsum(silent_samples(data))])
        audible = silent[starts + size] == silent[starts]
        if audible.sum() >= min(HUM_MIN_WINDOWS, len(starts)):
            absolute = absolute[:, audible]
            median = np.median(absolute.real, axis=1) + 1j * np.median(absolute.imag, axis=1)
            self._hum_steady += (np.abs(median) ** 2).sum(axis=0)
            self._hum_unsteady += np.mean(np.abs(absolute - median[:, None]) ** 2, axis=1).sum(axis=0)
        else:  # (mostly) silent: no evidence either way
            median = np.median(absolute.real, axis=1) + 1j * np.median(absolute.imag, axis=1)
        return 2 * median / float(window.sum())

    def add_power(self, power: np.ndarray) -> None:
        """Add frame powers (frames, bins)."""
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

    def floor_profile(self) -> np.ndarray:
        """Stationary power per bin (unscaled rfft power) from the 10th percentile, lines included; zeros before
        any frame."""
        if self.frames == 0:
            return np.zeros(self.bins)
        return 10 ** (self.quantile_db(QUANTILE) / 10) / noise_quantile_factor(QUANTILE, self.bins)

    def _lines(self) -> tuple[np.ndarray, np.ndarray]:
        """(boolean mask of the bins taken for stationary lines, the floor around each bin in dB); see the
        module docstring."""
        level = 10 * np.log10(self.floor_profile() + 1e-30)
        padded = np.pad(level, LINE_REACH, mode="edge")
        floor = np.percentile(np.lib.stride_tricks.sliding_window_view(padded, 2 * LINE_REACH + 1), 25, axis=1)
        peaks = level > floor + LINE_DB
        # from DC (Nyquist) up to where the level first rises again, such bins are a noise slope running off the
        # spectrum (pink hiss rising towards DC), not a note: the edge padding of the floor makes them stand out
        for run, levels in ((peaks, level), (peaks[::-1], level[::-1])):  # views: from DC up, from Nyquist down
            end = 1
            while end < len(levels) and run[end - 1] and levels[end] <= levels[end - 1]:
                end += 1
            run[:end] = False
        lines = np.pad(peaks, LINE_SKIRT)
        near_line = np.lib.stride_tricks.sliding_window_view(lines, 2 * LINE_SKIRT + 1).any(axis=1)
        return near_line & (level > floor), floor

    def profile(self) -> np.ndarray:
        """Noise power per bin: :meth:`floor_profile` with its stationary lines (see the module docstring)
        replaced by the floor around them."""
        raw = self.floor_profile()
        if self.frames == 0:
            return raw
        lines, floor = self._lines()
        return np.where(lines, 10 ** (floor / 10), raw)

    def hum(self) -> HumModel | None:
        """The mains hum found in everything added so far (see the module docstring), or None."""
        if not self.find_hum:
            return None
        blocks = list(self._hum_blocks)
        saved = self._hum_power.copy(), self._hum_steady.copy(), self._hum_unsteady.copy()
        carry = self._hum_carry
        if carry is not None and carry.shape[1] >= (HUM_MIN_WINDOWS + 1) * self.hum_block // 4:
            blocks.append(self._hum_block(carry, len(blocks) * self.hum_block))
        elif not blocks:
            return None
        power, steady, unsteady = self._hum_power, self._hum_steady, self._hum_unsteady
        self._hum_power, self._hum_steady, self._hum_unsteady = saved  # the carry may grow: sums as they were
        hz = self.sample_rate / self.hum_block
        peak_dbfs = 20 * np.log10(np.abs(np.stack(blocks, axis=1)).max(axis=(0, 1)) + 1e-300)
        found = []
        for index, frequency in enumerate(self.hum_candidates):
            centre = frequency / hz
            near = np.arange(math.ceil(centre - 1 / hz), math.floor(centre + 1 / hz) + 1)
            ring = np.concatenate([np.arange(math.ceil(centre - 6 / hz), math.floor(centre - 2 / hz) + 1),
                                   np.arange(math.ceil(centre + 2 / hz), math.floor(centre + 6 / hz) + 1)])
            if ring.min() < 0 or ring.max() >= len(power):
                continue
            top = near[np.argmax(power[near])]
            if (abs(top - centre) * hz <= HUM_TOLERANCE_HZ
                    and power[top] >= np.median(power[ring]) * 10 ** (HUM_PEAK_DB / 10)
                    and steady[index] >= unsteady[index] * 10 ** (HUM_STEADY_DB / 10)
                    and peak_dbfs[index] >= HUM_MIN_DBFS
                    and not comb_tooth(power, top, hz)):
                found.append(index)
        # a multiple of both bases (300 Hz, 600 Hz, ...) says nothing about which one is there
        shared = np.all([self.hum_candidates % base == 0 for base in HUM_BASES_HZ], axis=0)
        bases = [base for base in HUM_BASES_HZ
                 if sum(self.hum_candidates[i] % base == 0 and not shared[i] for i in found) >= HUM_MIN_HARMONICS
                 and any(self.hum_candidates[i] % base == 0 and self.hum_candidates[i] <= HUM_LOW_HARMONICS * base
                         for i in found)]
        keep = [i for i in found if any(self.hum_candidates[i] % base == 0 for base in bases)]
        if not keep:
            return None
        starts = np.arange(len(blocks)) * self.hum_block
        lengths = np.full(len(blocks), self.hum_block)
        lengths[-1] = self.hum_block if len(blocks) == len(self._hum_blocks) else carry.shape[1]
        amplitudes = np.stack(blocks, axis=1)[:, :, keep]  # (channels, blocks, harmonics)
        end = len(self._hum_blocks) * self.hum_block + (carry.shape[1] if carry is not None else 0)
        silences = list(self._silences)
        if self._silence_from is not None and self._added - self._silence_from >= MIN_SILENCE_SAMPLES:
            silences.append((self._silence_from, self._added))
        return HumModel(self.hum_candidates[keep], self.sample_rate, starts + lengths / 2, amplitudes, end,
                        tuple(bases), np.array(silences, np.int64).reshape(-1, 2))

    def spread_db(self) -> np.ndarray:
        """Per bin, median minus 10th percentile of the frame power, dB, less what noise alone spreads beyond
        a complex bin's 8.2 dB (the real DC and Nyquist bins spread 6.4 dB more): about 8 for a noise-dominated
        bin."""
        if self.frames == 0:
            return np.zeros(self.bins)
        excess = 10 * np.log10(noise_quantile_factor(0.5, self.bins) / noise_quantile_factor(QUANTILE, self.bins))
        return self.quantile_db(0.5) - self.quantile_db(QUANTILE) - (excess - excess[1])

    def line_bins(self) -> np.ndarray:
        """Boolean mask of the bins taken for stationary lines (music: see the module docstring)."""
        if self.frames == 0:
            return np.zeros(self.bins, bool)
        return self._lines()[0]

    def noise_found(self) -> tuple[bool, float, float]:
        """(verdict, share of noise-dominated bins, noise level dBFS): stationary noise above -85 dBFS in at
        least 70 % of the bins above 100 Hz (a dense drum loop reaches about 60 %)."""
        if self.frames == 0:
            return False, 0.0, -200.0
        spread = self.spread_db()
        low = max(1, int(100 * self.n_fft / self.sample_rate))
        share = float(np.mean(spread[low:] <= STATIONARY_SPREAD_DB))
        noise = self.floor_profile()
        level = 10 * math.log10(max(float(noise[low:].sum()) / stft_power_scale(self.n_fft) / 2, 1e-20))
        return share >= NOISE_FOUND_SHARE and level >= NOISE_FOUND_DBFS, share, level


def comb_tooth(power: np.ndarray, line: int, hz: float) -> bool:
    """Whether the line at bin ``line`` of ``power`` (the hum analysis's spectrum, ``hz`` per bin) is a tooth of a
    comb (:data:`HUM_COMB_HZ`): lines at ``line`` +- d and +- 2 d bins, each found within a bin."""
    low, high = (round(limit / hz) for limit in HUM_COMB_HZ)
    reach = 2 * high + 1
    if line - reach < 1 or line + reach + 1 >= len(power):
        return False
    around = np.arange(line - reach, line + reach + 1)
    level = max(np.percentile(power[around[np.abs(around - line) > 1]], 25) * 10 ** (HUM_PEAK_DB / 10),
                power[line] * 10 ** (-HUM_COMB_DB / 10))
    peak = (power[around] >= level) & (power[around] >= power[around - 1]) & (power[around] >= power[around + 1])
    offsets = around[peak] - line
    return any(all(np.any(np.abs(offsets - side * step * spacing) <= 1) for side in (-1, 1) for step in (1, 2))
               for spacing in range(low, high + 1))


def analyse_noise(source: Path | np.ndarray, sample_rate: float, find_hum: bool = True
                  ) -> tuple[NoiseProfiler, HumModel | None]:
    """The analysis of a file or (channels, n) buffer (read in blocks): the noise profiler of what the gain will
    see and the mains hum found (None without ``find_hum``).  Where hum is found the input is profiled a second
    time with the hum subtracted: a steady line leaks through the window's sidelobes into every bin, and that
    leakage, which the subtraction removes, would pass for a broadband noise floor."""
    n_fft, _ = frame_size(sample_rate)
    profiler = NoiseProfiler(n_fft, sample_rate, find_hum)
    for block in source_blocks(source, 1 << 16):
        profiler.add(block)
    hum = profiler.hum()
    if hum is None:
        return profiler, None
    profiler = NoiseProfiler(n_fft, sample_rate, find_hum=False)
    position = 0
    for block in source_blocks(source, 1 << 16):
        profiler.add(block - hum.synthesize(position, block.shape[1])[: block.shape[0]])
        position += block.shape[1]
    return profiler, hum


def only_hum(noise_found: bool, hum: HumModel | None) -> bool:
    """Whether an analysis found mains hum and no other stationary noise: such an input gets no gain, only the
    hum subtracted (:meth:`Denoise._gain_applies`; the training leaves such cases out)."""
    return hum is not None and not noise_found


def gamma_db(power: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """A-posteriori SNR in dB, clipped to GAMMA_RANGE_DB: power (..., bins, frames), noise (bins,)."""
    ratio = power / np.maximum(noise, 1e-30).astype(power.dtype)[:, None]  # float32 at run time: half the work
    return np.clip(10 * np.log10(ratio + 1e-30), *GAMMA_RANGE_DB)


def gain_features(gamma: np.ndarray, sample_rate: float, spread_db: np.ndarray) -> np.ndarray:
    """Features (FEATURES, bins, F) float32 for the central frames of ``gamma`` (bins, LOOKBEHIND + F + LOOKAHEAD)
    in dB: SNR at the bin over frames t-2..t+3, at bins k-2, k-1, k+1, k+2 in frame t, the 17-bin mean at t,
    the mean over frames t-2..t+3 and bins k-1..k+1, the mean over frames t-6..t-3 and bins k-1..k+1,
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
    features (FEATURES, ...) -> gains (...), on tiles (:func:`~.tiles.dense_layers`)."""
    output = dense_layers(arrays, features.reshape(features.shape[0], -1), BIN_TILE)[0]
    return (1.0 / (1.0 + np.exp(-output))).reshape(features.shape[1:])


def spectral_subtraction_gain(power: np.ndarray, noise: np.ndarray, floor: float, over: float = 1.0) -> np.ndarray:
    """Baseline: power spectral subtraction, gain sqrt(max(1 - over x noise / power, floor^2)); power (bins, F)."""
    ratio = over * np.maximum(noise, 0.0)[:, None] / np.maximum(power, 1e-30)
    return np.sqrt(np.maximum(1.0 - ratio, floor ** 2))


def check_features(path: Path) -> None:
    """ModelFileError unless the gain network in ``path`` takes the features this version computes."""
    from ...models.model_file import read_model_info

    config = read_model_info(path).config
    trained = (config.get("features"), config.get("lookahead"))
    if trained != (FEATURES, LOOKAHEAD):
        raise ModelFileError(
            f"its gain network takes {trained[0]} features with {trained[1]} frames of look-ahead; this version "
            f"computes {FEATURES} with {LOOKAHEAD}: retrain it with `chain train restorer --damage noise:DB`",
            where=path,
        )


class Denoise(SpectralRestorer):
    """Learned spectral-gain denoiser with a floor; see the module docstring.

    Args:
        amount_db: the most any bin is attenuated, dB (0 … 40; default 12).
        model: a model file written by ``chain train restorer --damage noise:DB``; default the shipped
            ``models/weights/restorers/denoise.safetensors``.
        base_dir: folder a relative ``model`` path resolves against (the YAML's folder).
        hum_only: subtract the mains hum the analysis finds and nothing else (no gain): what ``restorer: auto``
            runs, as hum, unlike hiss, is not mistaken for sustained music.
    """

    name = "denoise"
    lookbehind = LOOKBEHIND
    lookahead = LOOKAHEAD
    min_rate_hz = MIN_RATE_HZ

    def stft_size(self, sample_rate: float) -> tuple[int, int]:
        return frame_size(sample_rate)

    def __init__(self, amount_db: float = DEFAULT_AMOUNT_DB, model: str | Path | None = None,
                 base_dir: str | Path | None = None, hum_only: bool = False) -> None:
        super().__init__()
        self._bypass: DelayLine | None = None
        self.hum_only = hum_only
        self.amount_db = amount_db
        self.model_path = (DEFAULT_WEIGHTS if model is None
                           else resolve_model_param(model, "restorer: denoise.model", base_dir, ARCHITECTURE))
        if model is not None:
            check_features(self.model_path)
        self._model_param = model
        self.noise_profile: np.ndarray | None = None
        """Noise power per bin from the last :meth:`analyze_input` (None: not analysed, pass through)."""
        self.noise_found = False
        """Whether the last analysis found stationary noise worth removing (what ``restorer: auto`` asks)."""
        self.noise_level_dbfs = -200.0
        """Level of that noise (dBFS, all bins above 100 Hz) from the last analysis."""
        self.noise_spread: np.ndarray | None = None
        self.line_bins: np.ndarray | None = None
        """Bins of stationary lines that are not hum (held notes) in the last analysis."""
        self.hum: HumModel | None = None
        """The mains hum the last analysis found (subtracted before the gain), or None."""
        self._profile_rate: float | None = None
        self._position = 0
        self.input_offset = 0
        """Samples by which this restorer's input lags the input it analysed: the latency of restorers before it
        in ``restorer: auto`` (the hum is subtracted at the analysed input's sample positions)."""
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def amount_db(self) -> float:
        """The most any bin is attenuated, dB (0 … 40).  Set (checked as in the constructor), it applies from the
        next frames; where it turns the gain on or off (to or from 0), from the next call."""
        return self._amount_db

    @amount_db.setter
    def amount_db(self, amount_db: float | str) -> None:
        where = "restorer: denoise.amount_db"
        amount = parse_quantity(amount_db, "dB", "amount_db", where=where)  # 12, "12 dB"
        if not 0.0 <= amount <= MAX_AMOUNT_DB:
            raise ParameterError(f"amount_db: {amount_db!r} is out of range [0, {MAX_AMOUNT_DB:g}] dB", where=where)
        self._amount_db = amount
        self._gain_switched()

    @property
    def hum_only(self) -> bool:
        """Subtract the hum and apply no gain; set, it applies from the next call."""
        return self._hum_only

    @hum_only.setter
    def hum_only(self, hum_only: bool) -> None:
        if not isinstance(hum_only, bool):
            raise ParameterError(f"hum_only: expects true or false, got {hum_only!r}",
                                 where="restorer: denoise.hum_only")
        self._hum_only = hum_only
        self._gain_switched()

    def _gain_switched(self) -> None:
        """After a setting changed: prepare again where the gain now runs or no longer does (the weights load, or
        the bypass replaces the STFT); a changed amount alone applies from the next frames."""
        if self._prepared is not None and (self._bypass is None) != self._gain_applies():
            self._set_up_again()

    def __repr__(self) -> str:
        return f"Denoise(amount_db={self.amount_db:g}{', hum_only=True' if self.hum_only else ''})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> Denoise:
        unknown = sorted(set(params) - {"amount_db", "model", "hum_only"})
        if unknown:
            raise ParameterError(f"restorer 'denoise' has no parameter {', '.join(unknown)} (it takes amount_db, "
                                 "model, hum_only)", where=where)
        try:
            return cls(params.get("amount_db", DEFAULT_AMOUNT_DB), params.get("model"), base_dir=base_dir,
                       hum_only=params.get("hum_only", False))
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        values: dict[str, Any] = {"amount_db": self.amount_db}
        if self._model_param is not None:
            values["model"] = str(self.model_path)
        if self.hum_only:
            values["hum_only"] = True
        return values

    # -- analysis ------------------------------------------------------------------------------------------------
    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        self.check_rate(sample_rate)
        profiler, self.hum = analyse_noise(source, sample_rate, find_hum=self.amount_db > 0)
        self.noise_profile = profiler.profile() if profiler.frames else None
        self.noise_spread = profiler.spread_db()
        self.line_bins = profiler.line_bins()
        self._profile_rate = float(sample_rate)
        found, share, level = profiler.noise_found()
        self.noise_found = found
        self.noise_level_dbfs = level
        self._reconfigured()
        if self.noise_profile is None:
            what = "digital silence throughout" if profiler.silent_frames else "input shorter than one frame"
            return [f"denoise: {what}: passed through"]
        verdict = "stationary noise" if found else "little stationary noise"
        if self._gain_applies():
            action = f"reduced by at most {self.amount_db:g} dB"
        elif self.hum is not None:
            action = "no gain applied, only the hum subtracted"
        else:
            action = "passed through" + ("" if self.hum_only else " (amount_db 0)")
        notes = [f"denoise: {verdict} at {level:.0f} dBFS ({share:.0%} of bins noise-dominated); {action}"]
        if self.hum is not None:
            notes.append(f"denoise: {self.hum.describe()}: subtracted")
        return notes

    @property
    def analyses_input(self) -> bool:
        return self.amount_db > 0  # the noise profile and the hum

    def _gain_applies(self) -> bool:
        """Whether the gain network runs.  Not where the analysis found mains hum and no other stationary noise:
        after the hum is subtracted, the 10th-percentile "noise" profile is the music's own quiet frames, and a
        gain against it only takes them down (validation, 10 dB input SNR, noise kinds drawn: +0.5 dB SI-SDR on
        the mean; the gain had cost two hum-only clips 6-7 dB and gained two speech clips 0.5-0.8 dB).  Without
        hum, the gain runs whatever the verdict: it is what was asked for, and on light hiss the verdict can
        miss real noise (at 20-30 dB SNR it missed white noise in 3-7 of 24 validation clips)."""
        return (self.noise_profile is not None and self.amount_db > 0 and not self.hum_only
                and not only_hum(self.noise_found, self.hum))

    # -- frames --------------------------------------------------------------------------------------------------
    def _prepare_frames(self, sample_rate: float, num_channels: int, n_fft: int, hop: int) -> None:
        if self._profile_rate is not None and self._profile_rate != sample_rate:
            self.noise_profile = self.hum = None  # a profile is only valid at the rate it was measured at
        if self._gain_applies():
            self._arrays = {name: value.astype(np.float32)
                            for name, value in load_weights(self.model_path, ARCHITECTURE)[0].items()}

    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        latency = super()._prepare(sample_rate, num_channels)
        # without a gain the frames would only round-trip through the STFT (about 1e-7 of full scale of error,
        # window leakage into digital silence): the input, less any hum, is delayed by the same latency instead
        self._bypass = None if self._gain_applies() else DelayLine(num_channels, latency)
        return latency

    def _reset_frames(self) -> None:
        self._position = 0
        if self._bypass is not None:
            self._bypass.reset()

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        if self.hum is not None and self.noise_profile is not None:
            hum = self.hum.synthesize(self._position - self.input_offset, audio.shape[1])
            audio = (audio - hum[: audio.shape[0]]).astype(np.float32)
        self._position += audio.shape[1]
        if self._bypass is not None:
            return self._bypass.process(audio)
        return super()._process_block(audio, sample_rate)

    def _process_frames(self, spectra: np.ndarray, context: FrameContext) -> np.ndarray:
        count = spectra.shape[2] - LOOKBEHIND - LOOKAHEAD
        centre = spectra[:, :, LOOKBEHIND:LOOKBEHIND + count]
        floor = 10 ** (-self.amount_db / 20)

        def denoised(channel: int) -> np.ndarray:
            power = spectra[channel].real ** 2 + spectra[channel].imag ** 2
            features = gain_features(gamma_db(power, self.noise_profile), context.sample_rate, self.noise_spread)
            gain = np.maximum(mlp_gain(features, self._arrays), floor)
            if self.line_bins is not None and self.line_bins.any():
                # a held note's bins: the network sees a steady bin and leans towards "noise" (residual hum is
                # steady too); there the plain subtraction of the floor around the note decides instead
                lines = self.line_bins
                held = spectral_subtraction_gain(power[lines, LOOKBEHIND:LOOKBEHIND + count],
                                                 self.noise_profile[lines], floor)
                gain[lines] = np.maximum(gain[lines], held)
            return centre[channel] * gain

        # the channels are independent: on the restorers' threads (numpy releases the GIL in their array work),
        # when there is enough of it to pay for the hand-over
        channels = range(spectra.shape[0])
        return np.stack(on_threads(denoised, channels) if count >= PARALLEL_MIN_FRAMES
                        else [denoised(channel) for channel in channels])
