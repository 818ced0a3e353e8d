"""Damage detection on audio files: doubled samples, sample-and-hold, band limit, clipping, DC, noise floor,
mains hum (files), NaN/Inf samples.

Every check reads the file in blocks of about 0.5 s (one analysis window) and keeps only small per-window
statistics, so memory does not grow with the file's length (the 50 ms RMS list grows by 20 floats per
second; the averaged spectrum is one vector). Clipping needs the file's rails first, so it is a second pass.

Doubled samples and sample-and-hold are found from *where the signal changes*: ``k`` is a change when
``y[k] != y[k-1]`` (exact comparison, any channel). A hold by ``N`` (runs of ``N`` equal samples) puts every
change on one residue of ``k mod N``; clean audio spreads the changes evenly. Equal neighbours by chance
(silence, quiet or slow passages) only remove changes, they never add changes on the wrong residue, so the
test is immune to them; windows with too few changes (digital silence, very quiet material) give no evidence
either way. Doubled samples (``y[2n+1] == y[2n]``, parity 0, changes on even ``k``; or ``y[2n+2] == y[2n+1]``,
parity 1, changes on odd ``k``) are a hold by 2. Fades, gain changes, resampling, dither or lossy coding
after the damage break the exact equalities: such stretches are reported clean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AudioFileError
from .audio_io import INTEGER_BITS, AudioInfo, finite_blocks, probe_audio, read_blocks

WINDOW_FRAMES = 10
"""Analysis window = 10 RMS frames of 50 ms (0.5 s)."""
RMS_FRAME_S = 0.05
MAX_HOLD = 16
"""Hold factors 2..MAX_HOLD are looked for."""
HOLD_CONCENTRATION = 0.95
"""A window shows hold ``N`` when at least this share of its changes fall on one residue of k mod N."""
MIN_CHANGES = 500
MIN_CHANGE_DENSITY = 0.02
"""A window is evidence when it has at least max(MIN_CHANGES, MIN_CHANGE_DENSITY x samples) changes."""
STOPBAND_DROP_DB = 30.0
"""Band limit: the spectrum stays this far below the in-band level from the cutoff up to Nyquist."""
CUTOFF_DROP_DB = 6.0
"""The reported cutoff is where the spectrum is this far below the in-band level (the -6 dB point)."""
MIN_STOPBAND_SHARE = 0.05
"""The stopband must cover at least this share of 0..Nyquist (and 500 Hz) to count as a band limit."""
QUIET_DBFS = -70.0
"""Below this mean power (dBFS) the band-limit check is skipped: the spectrum is mostly noise floor."""
CLIP_MIN_RUN = 3
CLIP_MIN_SHARE = 1e-4
CLIP_EDGE_STEP = 1e-3
"""A run at a rail counts as clipped only where the sample before or after it lies this share of the rail below
it: a clipped waveform meets the rail at speed, while a slow wave's crest approaches it (a full-scale 40 Hz int16
sine holds its highest value for 2-3 samples, its neighbours 1-4 steps under it)."""
CLIP_EDGE_STEPS_INTEGER = 4
"""...and in an integer file at least this many integer steps: a quiet smooth wave sits on its highest integer
for several samples, entered by steps of one or two."""
CLIP_MAX_SHARE = 0.95
"""Clipping: runs of at least CLIP_MIN_RUN samples at a rail (the input's highest or lowest value), making up
CLIP_MIN_SHARE .. CLIP_MAX_SHARE of all samples.  A signal that sits at its rails nearly all the time is a square
or pulse wave (or +-1 LSB dither), not clipped audio: there is nothing between the clips to rebuild them from (a
sine driven 20 dB into clipping still has 6 % of its samples between the rails)."""
SILENCE_DBFS = -200.0
"""Floor for levels in dBFS (digital silence)."""


def _empty_result(path: str | Path) -> dict:
    return {
        "file": str(path),
        "sample_rate": None,
        "channels": None,
        "duration_s": None,
        "doubled_samples": {"detected": False, "parity": None, "share": 0.0, "regions": []},
        "hold": {"detected": False, "factor": None},
        "band_limit": {"detected": False, "cutoff_hz": None},
        "clipping": {"detected": False, "share": 0.0},
        "dc_offset": None,
        "noise_floor_dbfs": None,
        "mean_power_dbfs": None,
        "non_finite_samples": 0,
        "error": None,
    }


@dataclass(frozen=True)
class _Source:
    """Audio to analyse, read in blocks (twice: clipping needs the rails first): a file or an in-memory buffer."""

    fs: int
    channels: int
    frames: int
    integer_bits: int | None
    """Bits of the integer samples the audio came from (file subtype), None for float or unknown."""
    raw_blocks: Callable[[int], Iterator[np.ndarray]]
    """Blocks as stored, NaN and Inf included."""

    def blocks(self, size: int) -> Iterator[np.ndarray]:
        """Blocks of ``size`` samples, NaN and Inf read as 0 (as ``--sanitize`` renders them)."""
        return finite_blocks(self.raw_blocks(size))

    @classmethod
    def of_file(cls, info: AudioInfo) -> _Source:
        return cls(info.sample_rate, info.channels, info.frames, INTEGER_BITS.get(info.subtype),
                   lambda size: read_blocks(info, size))

    @classmethod
    def of_array(cls, audio: np.ndarray, sample_rate: int) -> _Source:
        audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        return cls(int(sample_rate), audio.shape[0], audio.shape[1], None,
                   lambda size: (audio[:, start:start + size] for start in range(0, audio.shape[1], size)))


def detect_input(source: str | Path | np.ndarray, sample_rate: float | None = None, find_hum: bool = False) -> dict:
    """:func:`detect_file`'s measurements for a file path or a (channels, samples) buffer at ``sample_rate`` Hz;
    the mains hum only with ``find_hum`` (it doubles the time; ``restorer: auto`` has denoise look for it).

    What restorers call from ``analyze_input``.  Raises AudioFileError for an unreadable file; an empty buffer
    gives the "nothing detected" result.
    """
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("detect_input needs the sample rate of a buffer")
        result = _empty_result("<buffer>")
        if source.size:
            result.update(_analyse(_Source.of_array(source, int(round(sample_rate))), find_hum))
        return result
    result = _empty_result(source)
    result.update(_analyse(_Source.of_file(probe_audio(source)), find_hum))
    return result


def detect_file(path: str | Path) -> dict:
    """Analyse one file for damage; returns a JSON-able dict (see the module docstring for the methods).

    Keys: ``file``; ``sample_rate`` (Hz); ``channels``; ``duration_s``;
    ``doubled_samples``: ``detected``, ``parity`` (0: y[2n+1] == y[2n], 1: y[2n+2] == y[2n+1], None),
    ``share`` (0..1 of the duration inside ``regions``), ``regions`` ([[start_s, end_s], ...], 0.5 s resolution);
    ``hold``: ``detected``, ``factor`` (N: runs of N equal samples; 2 = doubled samples);
    ``band_limit``: ``detected``, ``cutoff_hz`` (-6 dB point below a >= 30 dB drop that lasts to Nyquist);
    ``clipping``: ``detected`` (see :data:`CLIP_MAX_SHARE`), ``share`` (0..1 of all samples lying at the file's
    highest or lowest value in runs >= 3 met at speed);
    ``dc_offset``: mean of all samples (full scale = 1.0); ``noise_floor_dbfs``: 10th percentile of the 50 ms
    RMS levels (all channels' power averaged), dBFS, floored at -200; ``mean_power_dbfs``: mean power of all
    samples, dBFS (a full-scale square wave is 0), floored at -200; ``non_finite_samples``: how many samples are
    NaN or infinite (read as 0 by the other checks; ``chain apply`` refuses such a file without ``--sanitize``);
    ``hum``: ``detected``, ``base_hz`` (50 or 60), ``harmonics`` (Hz, those found), ``level_dbfs`` (their mean
    power, dBFS), by the mains-hum analysis of ``restorer: denoise``
    (:class:`~pedalchain.effects.restorers.denoise.NoiseProfiler`); ``error``: None, or the one-line message
    of the AudioFileError that stopped the analysis (then the measurements are None or defaults).
    """
    try:
        result = detect_input(path, find_hum=True)
    except AudioFileError as error:
        result = _empty_result(path)
        result.update(error=str(error), non_finite_samples=None, hum=None)  # the keys of a read file, not measured
    return result


def _analyse(source: _Source, find_hum: bool) -> dict:
    fs, channels = source.fs, source.channels
    profiler = None
    if find_hum:
        from ..effects.restorers.denoise import NoiseProfiler, frame_size  # numpy only; that module needs this one

        profiler = NoiseProfiler(frame_size(fs)[0], fs)
    non_finite = 0
    frame = max(1, round(RMS_FRAME_S * fs))
    window = WINDOW_FRAMES * frame
    holds = _HoldScanner(window)
    spectrum = _SpectrumAverager(fs)
    frame_power: list[np.ndarray] = []
    total = total_sq = 0.0
    rails = (0.0, 0.0)  # the highest and the lowest sample
    count = 0
    for block in source.raw_blocks(window):
        finite = np.isfinite(block)
        if not finite.all():
            non_finite += int(finite.size - np.count_nonzero(finite))
            block = np.where(finite, block, np.zeros((), block.dtype))
        holds.add(block)
        if profiler is not None:
            profiler.add(block)
        spectrum.add(block)
        block64 = block.astype(np.float64)
        total += float(block64.sum())
        total_sq += float(np.square(block64).sum())
        rails = (max(rails[0], float(block.max())), min(rails[1], float(block.min())))
        count += block.size
        length = block.shape[1]
        edges = np.arange(0, length, frame)
        sums = np.add.reduceat(np.square(block64).sum(axis=0), edges)
        frame_power.append(sums / (channels * np.diff(np.append(edges, length))))
    powers = np.concatenate(frame_power)
    noise_floor = 10 * math.log10(max(float(np.percentile(powers, 10)), 10 ** (SILENCE_DBFS / 10)))
    mean_power_dbfs = 10 * math.log10(max(total_sq / count, 10 ** (SILENCE_DBFS / 10)))
    clipped = sum(_count_clipped(source, window, rails)[1])
    clip_share = clipped / count
    doubled, hold = holds.summary(fs, source.frames)
    cutoff = spectrum.cutoff_hz() if mean_power_dbfs >= QUIET_DBFS else None
    result = {
        "sample_rate": fs,
        "channels": channels,
        "duration_s": source.frames / fs,
        "doubled_samples": doubled,
        "hold": hold,
        "band_limit": {"detected": cutoff is not None, "cutoff_hz": cutoff},
        "clipping": {"detected": clipped >= CLIP_MIN_RUN and CLIP_MIN_SHARE <= clip_share <= CLIP_MAX_SHARE,
                     "share": clip_share},
        "dc_offset": total / count,
        "noise_floor_dbfs": noise_floor,
        "mean_power_dbfs": mean_power_dbfs,
        "non_finite_samples": non_finite,
    }
    if profiler is not None:
        hum = profiler.hum()
        result["hum"] = {"detected": hum is not None, "base_hz": hum.bases[0] if hum is not None else None,
                         "harmonics": hum.frequencies.tolist() if hum is not None else [],
                         "level_dbfs": hum.power_dbfs() if hum is not None else None}
    return result


class _HoldScanner:
    """Per window: how many changes fall on each residue of k mod N, N = 2..MAX_HOLD; keeps one verdict a window.

    A window's verdict is the largest N whose best residue holds >= HOLD_CONCENTRATION of the changes (a hold
    by 4 also concentrates mod 2, but not mod 8), or None (evidence of no hold), or "no evidence".
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.start = 0
        self.previous: np.ndarray | None = None
        self.verdicts: list[tuple[int | None, int | None] | None] = []
        """Per window: (factor, residue) with factor None for clean, or None for no evidence."""
        self._residues = {n: np.arange(window) % n for n in range(2, MAX_HOLD + 1)}

    def add(self, block: np.ndarray) -> None:
        length = block.shape[1]
        changed = np.empty(block.shape, dtype=bool)
        changed[:, 1:] = block[:, 1:] != block[:, :-1]
        if self.previous is None:
            changed[:, 0] = False
        else:
            changed[:, 0] = block[:, 0] != self.previous
        self.previous = block[:, -1].copy()
        per_sample = changed.sum(axis=0)
        changes = int(per_sample.sum())
        if changes < max(MIN_CHANGES, MIN_CHANGE_DENSITY * block.size):
            self.verdicts.append(None)
        else:
            verdict: tuple[int | None, int | None] = (None, None)
            for n, residues in self._residues.items():
                counts = np.bincount(residues[:length], weights=per_sample, minlength=n)
                best = int(np.argmax(counts))
                if counts[best] >= HOLD_CONCENTRATION * changes:
                    verdict = (n, (best + self.start) % n)
            self.verdicts.append(verdict)
        self.start += length

    def summary(self, fs: int, frames: int) -> tuple[dict, dict]:
        """(doubled_samples, hold) result entries; a finding needs min(2, evidence windows) windows."""
        evidence = [v for v in self.verdicts if v is not None]
        needed = min(2, len(evidence)) or 1
        factors = [v[0] for v in evidence if v[0] is not None]
        hold = {"detected": False, "factor": None}
        if factors:
            values, counts = np.unique(factors, return_counts=True)
            best = int(values[np.argmax(counts)])
            if counts.max() >= needed:
                hold = {"detected": True, "factor": best}
        doubled_flags = [v is not None and v[0] == 2 for v in self.verdicts]
        parities = [v[1] for v in self.verdicts if v is not None and v[0] == 2]
        doubled = {"detected": False, "parity": None, "share": 0.0, "regions": []}
        if len(parities) >= needed:
            regions = self._regions(doubled_flags, fs, frames)
            doubled = {
                "detected": True,
                "parity": int(round(float(np.mean(parities)))),
                "share": min(1.0, sum(end - start for start, end in regions) * fs / frames),
                "regions": regions,
            }
        return doubled, hold

    def _regions(self, flags: list[bool], fs: int, frames: int) -> list[list[float]]:
        """Runs of flagged windows, bridging windows without evidence that lie between two flagged ones."""
        bridged = list(flags)
        last = None
        for index, flag in enumerate(flags):
            if flag:
                if last is not None and all(self.verdicts[j] is None for j in range(last + 1, index)):
                    for j in range(last + 1, index):
                        bridged[j] = True
                last = index
        regions: list[list[float]] = []
        for index, flag in enumerate(bridged):
            if not flag:
                continue
            start, end = index * self.window / fs, min((index + 1) * self.window, frames) / fs
            if regions and abs(regions[-1][1] - start) < 1e-9:
                regions[-1][1] = end
            else:
                regions.append([start, end])
        return [[round(start, 3), round(end, 3)] for start, end in regions]


class _SpectrumAverager:
    """Mean power spectrum over all channels: Hann frames of ``nfft`` ~ fs/10 samples (power of two), hop nfft.
    ``channel_power`` sums each channel's frames, :attr:`power` all ``frames`` of all channels."""

    def __init__(self, fs: int) -> None:
        self.fs = fs
        self.nfft = 2 ** round(math.log2(fs / 10))
        self.window = np.hanning(self.nfft + 1)[:-1]
        self.carry: np.ndarray | None = None
        self.channel_power = np.zeros((0, self.nfft // 2 + 1))
        self.frames = 0

    @property
    def power(self) -> np.ndarray:
        return self.channel_power.sum(axis=0)

    def add(self, block: np.ndarray) -> None:
        data = block if self.carry is None else np.concatenate([self.carry, block], axis=1)
        usable = data.shape[1] // self.nfft * self.nfft
        if usable:
            frames = data[:, :usable].reshape(data.shape[0], -1, self.nfft).astype(np.float64)
            spectra = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2
            if len(self.channel_power) != spectra.shape[0]:
                self.channel_power = np.zeros((spectra.shape[0], spectra.shape[2]))
            self.channel_power += spectra.sum(axis=1)
            self.frames += spectra.shape[0] * spectra.shape[1]
        self.carry = data[:, usable:]

    def cutoff_hz(self) -> float | None:
        """The -6 dB point below the lowest frequency f_s >= 1 kHz from which the spectrum stays >= 30 dB
        below the in-band level (median level of the octave below f_s) up to Nyquist; None if there is none.

        The spectrum is smoothed over 5 bins (in power) first; the stopband must span >= 5 % of Nyquist.
        """
        if self.frames == 0:
            return None
        smooth = np.convolve(self.power / self.frames, np.ones(5) / 5, mode="same")
        level = 10 * np.log10(smooth + 1e-30)
        bins = len(level)
        hz_per_bin = self.fs / self.nfft
        suffix_max = np.maximum.accumulate(level[::-1])[::-1]
        lowest = max(2, int(math.ceil(1000 / hz_per_bin)))
        highest = bins - max(int(MIN_STOPBAND_SHARE * bins), int(math.ceil(500 / hz_per_bin)), 3)
        for k in range(lowest, highest):
            in_band = float(np.median(level[k // 2:k]))
            if suffix_max[k] <= in_band - STOPBAND_DROP_DB:
                edge = k
                while edge > k // 2 and level[edge - 1] < in_band - CUTOFF_DROP_DB:
                    edge -= 1
                return float(edge * hz_per_bin)
        return None


@dataclass(frozen=True)
class ClippingRails:
    """Where an input clips (:func:`clipping_rails`); index 0 is the positive rail, 1 the negative one."""

    peaks: tuple[float, float]
    """The input's highest and lowest sample (0.0 where it has none above or below zero)."""
    levels: tuple[float, float]
    """A sample is at the positive rail when x >= levels[0], at the negative one when x <= levels[1] (a hundredth
    of an integer step inside the peak, or 1e-6 of it in a float input; +-inf where no sample lies on that side
    of zero)."""
    clipped: tuple[int, int]
    """Samples at each rail in runs of at least CLIP_MIN_RUN samples met at speed (see :func:`_count_clipped`)."""
    samples: int
    """All samples (every channel)."""


def clipping_rails(source: str | Path | np.ndarray) -> ClippingRails:
    """The rails of a file (read in blocks, twice) or a (channels, n) buffer and the clipped samples at each, by
    polarity, as ``detect`` counts them (for ``restorer: declip``, which repairs what detection calls clipped)."""
    if isinstance(source, np.ndarray):
        data = _Source.of_array(source, 0)  # the rate plays no part in finding rails
    else:
        data = _Source.of_file(probe_audio(source))
    top, bottom, count = 0.0, 0.0, 0
    for block in data.blocks(1 << 16):
        if block.size:
            top, bottom = max(top, float(block.max())), min(bottom, float(block.min()))
            count += block.size
    levels, clipped = _count_clipped(data, 1 << 16, (top, bottom))
    return ClippingRails((top, bottom), levels, clipped, count)


def _rail_level(rail: float, integer_bits: int | None) -> float:
    """The level from which a sample counts as at ``rail`` (> 0): a hundredth of an integer step under it, or 1e-6
    of it in a float input."""
    return rail - (0.01 * 2.0 ** (1 - integer_bits) if integer_bits else 1e-6 * rail)


def _count_clipped(source: _Source, block: int, rails: tuple[float, float]
                   ) -> tuple[tuple[float, float], tuple[int, int]]:
    """The rail levels (see :attr:`ClippingRails.levels`) and the samples at each rail -- the input's highest
    value, and its lowest -- that lie in runs of >= CLIP_MIN_RUN along one channel (runs may span blocks) entered
    or left by a step of at least CLIP_EDGE_STEP x the rail (and CLIP_EDGE_STEPS_INTEGER integer steps).  Each
    polarity has its own rail (an integer file's are one step apart: +32767 and -32768)."""
    integer_step = 2.0 ** (1 - source.integer_bits) if source.integer_bits else 0.0
    levels, counts = [math.inf, -math.inf], [0, 0]
    for side, (sign, rail) in enumerate(((1.0, rails[0]), (-1.0, -rails[1]))):
        if rail <= 0:
            continue
        threshold = _rail_level(rail, source.integer_bits)
        levels[side] = sign * threshold
        clipped = 0
        step = max(CLIP_EDGE_STEP * rail, CLIP_EDGE_STEPS_INTEGER * integer_step)
        carry = np.zeros(source.channels, dtype=np.int64)  # the run still open at the end of the last block
        carry_entry = np.zeros(source.channels)  # how far under the rail the sample before that run lay
        last = np.zeros(source.channels)  # the last block's last sample (times sign)
        for data in source.blocks(block):
            level = sign * data
            length = data.shape[1]
            for channel in range(source.channels):
                edges = np.diff(np.concatenate(([0], (level[channel] >= threshold).astype(np.int8), [0])))
                starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
                runs = ends - starts
                entry = rail - np.where(starts > 0, level[channel, np.maximum(starts - 1, 0)], last[channel])
                exit_ = rail - level[channel, np.minimum(ends, length - 1)]
                if len(runs) and starts[0] == 0 and carry[channel]:
                    runs[0] += carry[channel]
                    entry[0] = carry_entry[channel]
                elif carry[channel] >= CLIP_MIN_RUN and max(carry_entry[channel], rail - level[channel, 0]) >= step:
                    clipped += int(carry[channel])
                carry[channel] = 0
                if len(runs) and ends[-1] == length:
                    carry[channel], carry_entry[channel] = runs[-1], entry[-1]
                    runs, entry, exit_ = runs[:-1], entry[:-1], exit_[:-1]
                counted = (runs >= CLIP_MIN_RUN) & (np.maximum(entry, exit_) >= step)
                clipped += int(runs[counted].sum())
                last[channel] = level[channel, -1]
        # a run that lasts to the end of the input counts by its entry alone
        counts[side] = clipped + int(carry[(carry >= CLIP_MIN_RUN) & (carry_entry >= step)].sum())
    return (levels[0], levels[1]), (counts[0], counts[1])


def format_detect_table(results: list[dict]) -> str:
    """One line per file: duration, doubled samples (parity, share), hold, band limit, clipping, mains hum, DC,
    floor, NaN/Inf samples; errors are listed after the table."""
    header = ["file", "dur s", "doubled", "hold", "band limit", "clipping", "hum", "DC", "floor dBFS", "NaN/Inf"]
    rows = [header]
    errors = []
    for result in results:
        if result.get("error"):
            rows.append([result["file"], "-", "error (below)"] + [""] * (len(header) - 3))
            errors.append(f"error: {result['error']}")
            continue
        doubled = result["doubled_samples"]
        hold = result["hold"]
        band = result["band_limit"]
        clip = result["clipping"]
        hum = result.get("hum") or {"detected": False}
        rows.append([
            result["file"],
            f"{result['duration_s']:.1f}",
            f"yes (parity {doubled['parity']}, {doubled['share']:.0%})" if doubled["detected"] else "no",
            f"x{hold['factor']}" if hold["detected"] else "no",
            f"{band['cutoff_hz'] / 1000:.1f} kHz" if band["detected"] else "no",
            f"yes ({clip['share']:.3%})" if clip["detected"] else "no",
            f"{hum['base_hz']:g} Hz, {hum['level_dbfs']:.0f} dBFS" if hum["detected"] else "no",
            f"{result['dc_offset']:+.4f}",
            f"{result['noise_floor_dbfs']:.1f}",
            f"{result['non_finite_samples']}" if result["non_finite_samples"] else "no",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines + errors)
