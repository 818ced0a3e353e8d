"""Compare a candidate file (a restoration, a render) with a reference: LSD, LSD below/above a split, SNR, SI-SDR.

The candidate is aligned to the reference first (cross-correlation lag), both are cut to the shorter aligned
length, then everything is measured in one streamed pass over blocks (bounded memory).

Definitions (all channels pooled; x = reference, y = aligned candidate, sums over all compared samples):

- SNR = 10 log10(sum x^2 / sum (x - y)^2) dB.
- SI-SDR = 10 log10(|a x|^2 / |a x - y|^2) dB with a = <y, x> / <x, x> (Le Roux et al. 2019), computed as
  10 log10(r^2 / (1 - r^2)), r = <x, y> / (|x| |y|).
- Both are capped at :data:`MAX_DB` (identical files, or a silent reference for SNR with a silent error) so
  the result stays JSON-able; a silent reference or candidate gives SNR/SI-SDR of None where undefined.
- LSD ("log-spectral distance", in bels = log10 power units, not dB): STFT with a periodic Hann window of
  :data:`LSD_FFT` = 2048 samples, hop :data:`LSD_HOP` = 512, no padding (only frames fully inside the compared
  length), one-sided ``rfft`` without normalisation; power P = max(|X|^2, :data:`LSD_FLOOR` = 1e-10) per bin;
  per frame and channel d = sqrt(mean over bins k of (log10 P_x - log10 P_y)^2); LSD = mean of d over frames
  and channels (square root first, then the mean). LSD low / high use the same formula over bins with
  f < split_hz / f >= split_hz only (split_hz defaults to fs/4).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal

from ..errors import ParameterError
from .audio_io import AudioInfo, probe_audio, read_blocks

LSD_FFT = 2048
LSD_HOP = 512
LSD_FLOOR = 1e-10
MAX_DB = 200.0
"""Cap for SNR and SI-SDR in dB (identical signals)."""
ALIGN_EXCERPT_S = 20.0
"""The lag is estimated from the first 20 s of each file (channels averaged)."""
BLOCK = 65536


def compare_files(
    reference: str | Path, candidate: str | Path, split_hz: float | None = None, max_lag_s: float = 1.0
) -> dict:
    """Measure ``candidate`` against ``reference`` (see the module docstring for the exact definitions).

    Args:
        reference: the clean file.
        candidate: the file to score; it must have the reference's sample rate and channel count.
        split_hz: boundary between "low" and "high" LSD, Hz, 0 < split_hz < fs/2; default fs/4.
        max_lag_s: largest alignment lag searched, seconds (either direction), >= 0.

    Returns a JSON-able dict: ``reference``, ``candidate`` (paths), ``sample_rate`` (Hz), ``channels``,
    ``lag_samples`` (> 0: the candidate is late by that many samples and its start is skipped; < 0: the
    reference's start is skipped), ``compared_samples`` (per channel), ``compared_s``, ``split_hz``, ``lsd``,
    ``lsd_low``, ``lsd_high`` (bels; None when shorter than one 2048-sample frame), ``snr_db``, ``si_sdr_db``.

    Raises:
        AudioFileError: a file is missing or unreadable.
        ParameterError: different sample rates or channel counts, bad ``split_hz`` or ``max_lag_s``.
    """
    ref_info, cand_info = probe_audio(reference), probe_audio(candidate)
    if ref_info.sample_rate != cand_info.sample_rate:
        raise ParameterError(
            f"sample rates differ: {reference} is {ref_info.sample_rate} Hz, {candidate} is "
            f"{cand_info.sample_rate} Hz; resample one of them first"
        )
    if ref_info.channels != cand_info.channels:
        raise ParameterError(
            f"channel counts differ: {reference} has {ref_info.channels}, {candidate} has {cand_info.channels}"
        )
    fs = ref_info.sample_rate
    if split_hz is None:
        split_hz = fs / 4
    if not 0 < split_hz < fs / 2:
        raise ParameterError(f"split_hz ({split_hz} Hz) must lie in (0, {fs / 2:g}) Hz", where="split_hz")
    if not max_lag_s >= 0:
        raise ParameterError(f"max_lag_s ({max_lag_s} s) must be >= 0", where="max_lag_s")
    lag = _estimate_lag(ref_info, cand_info, round(max_lag_s * fs))
    skip_ref, skip_cand = max(0, -lag), max(0, lag)
    length = max(0, min(ref_info.frames - skip_ref, cand_info.frames - skip_cand))
    meter = _Meter(fs, split_hz)
    pairs = zip(
        _blocks_from(ref_info, skip_ref, length), _blocks_from(cand_info, skip_cand, length), strict=True
    )
    for ref_block, cand_block in pairs:
        meter.add(ref_block, cand_block)
    result = {
        "reference": str(reference),
        "candidate": str(candidate),
        "sample_rate": fs,
        "channels": ref_info.channels,
        "lag_samples": lag,
        "compared_samples": length,
        "compared_s": length / fs,
        "split_hz": float(split_hz),
    }
    result.update(meter.result())
    return result


def _read_prefix(info: AudioInfo, count: int) -> np.ndarray:
    """The first ``count`` samples (or fewer) of the channel average, float64."""
    parts, have = [], 0
    for block in read_blocks(info, min(BLOCK, count)):
        parts.append(block.mean(axis=0, dtype=np.float64))
        have += block.shape[1]
        if have >= count:
            break
    return np.concatenate(parts)[:count]


def _estimate_lag(ref_info: AudioInfo, cand_info: AudioInfo, max_lag: int) -> int:
    """Candidate delay in samples: argmax over |lag| <= max_lag of sum_n x[n] y[n + lag] (FFT cross-correlation
    of the channel averages of the first ALIGN_EXCERPT_S seconds); 0 when either excerpt is silent."""
    count = round(ALIGN_EXCERPT_S * ref_info.sample_rate)
    x, y = _read_prefix(ref_info, count), _read_prefix(cand_info, count)
    if max_lag == 0 or not np.any(x) or not np.any(y):
        return 0
    correlation = scipy.signal.correlate(y, x, mode="full", method="fft")
    lags = scipy.signal.correlation_lags(len(y), len(x), mode="full")
    allowed = np.abs(lags) <= max_lag
    return int(lags[allowed][np.argmax(correlation[allowed])])


def _blocks_from(info: AudioInfo, skip: int, length: int) -> Iterator[np.ndarray]:
    """Blocks of exactly BLOCK samples (the last shorter) of samples [skip, skip + length), float64."""
    pending: list[np.ndarray] = []
    have = 0
    position = 0
    remaining = length
    for block in read_blocks(info, BLOCK):
        start = min(max(0, skip - position), block.shape[1])
        position += block.shape[1]
        block = block[:, start:]
        if block.shape[1] == 0:
            continue
        pending.append(block.astype(np.float64))
        have += block.shape[1]
        while have >= BLOCK and remaining > 0:
            data = np.concatenate(pending, axis=1)
            size = min(BLOCK, remaining)
            yield data[:, :size]
            remaining -= size
            pending, have = [data[:, size:]], data.shape[1] - size
        if remaining <= 0:
            return
    if remaining > 0 and have:
        yield np.concatenate(pending, axis=1)[:, :remaining]


class _Meter:
    """Accumulates energies, the cross term and per-frame log-spectral distances over aligned block pairs."""

    def __init__(self, fs: int, split_hz: float) -> None:
        self.window = np.hanning(LSD_FFT + 1)[:-1]
        self.low = np.fft.rfftfreq(LSD_FFT, 1 / fs) < split_hz
        self.carry: tuple[np.ndarray, np.ndarray] | None = None
        self.xx = self.yy = self.xy = self.ee = 0.0
        self.lsd = np.zeros(3)
        self.frames = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.xx += float(np.sum(x * x))
        self.yy += float(np.sum(y * y))
        self.xy += float(np.sum(x * y))
        self.ee += float(np.sum((x - y) ** 2))
        if self.carry is not None:
            x = np.concatenate([self.carry[0], x], axis=1)
            y = np.concatenate([self.carry[1], y], axis=1)
        count = 0 if x.shape[1] < LSD_FFT else (x.shape[1] - LSD_FFT) // LSD_HOP + 1
        if count:
            index = np.arange(LSD_FFT)[None, :] + LSD_HOP * np.arange(count)[:, None]
            log_x = np.log10(np.maximum(np.abs(np.fft.rfft(x[:, index] * self.window, axis=-1)) ** 2, LSD_FLOOR))
            log_y = np.log10(np.maximum(np.abs(np.fft.rfft(y[:, index] * self.window, axis=-1)) ** 2, LSD_FLOOR))
            squared = (log_x - log_y) ** 2
            self.lsd[0] += np.sqrt(squared.mean(axis=-1)).sum()
            self.lsd[1] += np.sqrt(squared[..., self.low].mean(axis=-1)).sum()
            self.lsd[2] += np.sqrt(squared[..., ~self.low].mean(axis=-1)).sum()
            self.frames += squared.shape[0] * squared.shape[1]
        keep = count * LSD_HOP
        self.carry = (x[:, keep:], y[:, keep:])

    def result(self) -> dict:
        lsd = [float(v / self.frames) if self.frames else None for v in self.lsd]
        snr = None
        if self.xx > 0:
            snr = MAX_DB if self.ee <= self.xx * 10 ** (-MAX_DB / 10) else 10 * math.log10(self.xx / self.ee)
        si_sdr = None
        if self.xx > 0 and self.yy > 0:
            r2 = self.xy**2 / (self.xx * self.yy)
            residual = 1 - r2
            si_sdr = MAX_DB if residual <= r2 * 10 ** (-MAX_DB / 10) else 10 * math.log10(r2 / residual)
        return {"lsd": lsd[0], "lsd_low": lsd[1], "lsd_high": lsd[2], "snr_db": snr, "si_sdr_db": si_sdr}


def format_compare(result: dict) -> str:
    """A few readable lines: files, alignment, compared length, LSD (all / low / high), SNR, SI-SDR."""

    def number(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:.3f}{unit}"

    fs = result["sample_rate"]
    return "\n".join([
        f"reference  {result['reference']}",
        f"candidate  {result['candidate']}",
        f"alignment  candidate lag {result['lag_samples']} samples ({result['lag_samples'] / fs * 1000:.2f} ms)",
        f"compared   {result['compared_samples']} samples ({result['compared_s']:.2f} s) at {fs} Hz, "
        f"{result['channels']} channel(s)",
        f"LSD        {number(result['lsd'])} (below {result['split_hz']:g} Hz {number(result['lsd_low'])}, "
        f"above {number(result['lsd_high'])}) [log10 power]",
        f"SNR        {number(result['snr_db'], ' dB')}",
        f"SI-SDR     {number(result['si_sdr_db'], ' dB')}",
    ])
