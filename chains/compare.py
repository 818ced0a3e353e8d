"""Compare a candidate (a restoration, a render) with a reference: LSD, LSD below/above a split, SNR, SI-SDR.

Files (:func:`compare_files`): the candidate is aligned to the reference first (cross-correlation lag of the
channel averages over the first :data:`ALIGN_EXCERPT_S` seconds, searched within ``max_lag_s``, reported as
``lag_samples``), both are cut to the shorter aligned length, then everything is measured in one streamed pass
over blocks (bounded memory, whatever the length).  Buffers (:func:`compare_arrays`) are measured the same way,
aligned only when asked.  Different sample rates or channel counts are refused.

Definitions (x = reference, y = aligned candidate, each (channels, n); sums over all compared samples and channels):

- SNR = 10 log10(sum x^2 / sum (x - y)^2) dB.
- SI-SDR = 10 log10(|a x|^2 / |a x - y|^2) dB with a = <y, x> / <x, x> (Le Roux et al. 2019), computed as
  10 log10(r^2 / (1 - r^2)), r = <x, y> / (|x| |y|).
- Both are capped at :data:`MAX_DB` (identical signals) so the result stays JSON-able; a silent reference
  gives SNR None, a silent reference or candidate gives SI-SDR None.
- LSD ("log-spectral distance", in bels = log10 power units, not dB), per channel: a centred STFT -- the signal
  reflect-padded by n_fft/2 = 1024 samples at both ends (numpy ``mode="reflect"``: the edge sample is not
  repeated), frames of :data:`LSD_FFT` = 2048 samples every :data:`LSD_HOP` = 512 (1 + n // 512 frames, frame t
  centred on sample 512 t), periodic Hann window, one-sided ``rfft`` without normalisation; power
  P = max(|X|^2, :data:`LSD_FLOOR` = 1e-8); per frame d = sqrt(mean over bins k of (log10 P_x - log10 P_y)^2)
  (the RMS over the 1025 bins); per channel the mean of d over frames; LSD = the average over channels.
  ``lsd_low`` / ``lsd_high``: the same with the bins of f < split_hz / f >= split_hz only (split_hz defaults
  to fs/4; bin k is at k fs / 2048 Hz).  This equals ``torch.stft(x, 2048, 512, window=torch.hann_window(2048),
  center=True, pad_mode="reflect")`` powers fed to the formula above.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal

from ..errors import AudioFileError, ParameterError
from .audio_io import AudioInfo, probe_audio, read_blocks

LSD_FFT = 2048
LSD_HOP = 512
LSD_FLOOR = 1e-8
MAX_DB = 200.0
"""Cap for SNR and SI-SDR in dB (identical signals)."""
ALIGN_EXCERPT_S = 20.0
"""The lag is estimated from the first 20 s of each file (channels averaged)."""
PLOT_EXCERPT_S = 30.0
"""``plot=`` draws the spectrograms of the first 30 s of the aligned reference and candidate."""
BLOCK = 65536
UNCOMPARED_NOTE_SHARE = 0.01
"""Where more than this share of the longer file is not compared (the files' lengths differ), the report says so."""


def compare_files(
    reference: str | Path,
    candidate: str | Path,
    split_hz: float | None = None,
    plot: str | Path | None = None,
    max_lag_s: float = 1.0,
) -> dict:
    """Measure ``candidate`` against ``reference`` (see the module docstring for the exact definitions).

    Args:
        reference: the clean file.
        candidate: the file to score; it must have the reference's sample rate and channel count.
        split_hz: boundary between "low" and "high" LSD, Hz, 0 < split_hz < fs/2; default fs/4.
        plot: when given, a PNG with the spectrograms of the aligned reference and candidate (first
            :data:`PLOT_EXCERPT_S` seconds) is written there (atomically).
        max_lag_s: largest alignment lag searched, seconds (either direction), >= 0.

    Returns a JSON-able dict: ``reference``, ``candidate`` (paths), ``sample_rate`` (Hz), ``channels``,
    ``lag_samples`` (> 0: the candidate is late by that many samples and its start is skipped; < 0: the
    reference's start is skipped), ``compared_samples`` (per channel), ``compared_s``, ``split_hz``, ``lsd``,
    ``lsd_low``, ``lsd_high`` (bels; None for empty input), ``snr_db``, ``si_sdr_db``, and ``plot`` (the PNG's
    path, or None).

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
    split_hz = _checked_split(split_hz, fs)
    if not max_lag_s >= 0:
        raise ParameterError(f"max_lag_s ({max_lag_s} s) must be >= 0", where="max_lag_s")
    lag = _estimate_lag(ref_info, cand_info, round(max_lag_s * fs))
    skip_ref, skip_cand = max(0, -lag), max(0, lag)
    length = max(0, min(ref_info.frames - skip_ref, cand_info.frames - skip_cand))
    meter = _Meter(fs, split_hz)
    pairs = zip(
        _blocks_from(ref_info, skip_ref, length), _blocks_from(cand_info, skip_cand, length), strict=True
    )
    keep = round(PLOT_EXCERPT_S * fs) if plot is not None else 0
    excerpts: list[tuple[np.ndarray, np.ndarray]] = []
    kept = 0
    for ref_block, cand_block in pairs:
        meter.add(ref_block, cand_block)
        if kept < keep:
            excerpts.append((ref_block[:, : keep - kept], cand_block[:, : keep - kept]))
            kept += excerpts[-1][0].shape[1]
    result = {
        "reference": str(reference),
        "candidate": str(candidate),
        "sample_rate": fs,
        "channels": ref_info.channels,
        "lag_samples": lag,
        "compared_samples": length,
        "compared_s": length / fs,
        "reference_s": ref_info.frames / fs,
        "candidate_s": cand_info.frames / fs,
        "split_hz": float(split_hz),
    }
    result.update(meter.result())
    result["plot"] = None
    if plot is not None:
        signals = {
            f"reference: {Path(reference).name}": np.concatenate([e[0] for e in excerpts], axis=1)
            if excerpts else np.zeros((ref_info.channels, 0)),
            f"candidate: {Path(candidate).name}": np.concatenate([e[1] for e in excerpts], axis=1)
            if excerpts else np.zeros((ref_info.channels, 0)),
        }
        spectrogram_png(Path(plot), signals, fs, title=_plot_title(result, kept / fs))
        result["plot"] = str(plot)
    return result


def compare_arrays(
    reference: np.ndarray,
    candidate: np.ndarray,
    sample_rate: int,
    split_hz: float | None = None,
    align: bool = False,
    max_lag_s: float = 1.0,
) -> dict:
    """:func:`compare_files` for buffers: same keys, ``reference``/``candidate`` are ``"<array>"``, ``plot`` None.

    Args:
        reference, candidate: (channels, n) or 1-D (mono) arrays with the same channel count; lengths may differ
            (cut to the shorter after alignment).
        sample_rate: Hz, of both.
        split_hz: as for :func:`compare_files`.
        align: estimate and remove a lag (cross-correlation over the first :data:`ALIGN_EXCERPT_S` s, within
            ``max_lag_s``); otherwise the lag is 0.

    Raises ParameterError for different channel counts, a bad ``split_hz`` or ``max_lag_s``.
    """
    x, y = np.atleast_2d(np.asarray(reference)), np.atleast_2d(np.asarray(candidate))
    if x.ndim != 2 or y.ndim != 2:
        raise ParameterError(f"expected (channels, n) arrays, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"channel counts differ: the reference has {x.shape[0]}, the candidate {y.shape[0]}")
    fs = int(round(sample_rate))
    split_hz = _checked_split(split_hz, fs)
    if not max_lag_s >= 0:
        raise ParameterError(f"max_lag_s ({max_lag_s} s) must be >= 0", where="max_lag_s")
    lag = 0
    if align:
        count = round(ALIGN_EXCERPT_S * fs)
        lag = _lag_of(x[:, :count].mean(axis=0, dtype=np.float64), y[:, :count].mean(axis=0, dtype=np.float64),
                      round(max_lag_s * fs))
    x, y = x[:, max(0, -lag):], y[:, max(0, lag):]
    length = min(x.shape[1], y.shape[1])
    meter = _Meter(fs, split_hz)
    for start in range(0, length, BLOCK):
        stop = min(length, start + BLOCK)
        meter.add(x[:, start:stop].astype(np.float64), y[:, start:stop].astype(np.float64))
    result = {"reference": "<array>", "candidate": "<array>", "sample_rate": fs, "channels": x.shape[0],
              "lag_samples": lag, "compared_samples": length, "compared_s": length / fs, "split_hz": float(split_hz)}
    result.update(meter.result())
    result["plot"] = None
    return result


def _checked_split(split_hz: float | None, fs: int) -> float:
    if split_hz is None:
        return fs / 4
    if not 0 < split_hz < fs / 2:
        raise ParameterError(f"split_hz ({split_hz} Hz) must lie in (0, {fs / 2:g}) Hz", where="split_hz")
    return float(split_hz)


def _plot_title(result: dict, seconds: float) -> str:
    def number(value: float | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value:.2f}{unit}"

    return (f"LSD {number(result['lsd'])} (low {number(result['lsd_low'])}, high {number(result['lsd_high'])}), "
            f"SNR {number(result['snr_db'], ' dB')}, SI-SDR {number(result['si_sdr_db'], ' dB')}"
            f" — first {seconds:.1f} s, lag {result['lag_samples']}")


def spectrogram_png(path: Path, signals: dict[str, np.ndarray], sample_rate: int, title: str = "") -> None:
    """Write a PNG with one spectrogram per entry of ``signals`` (label -> (channels, n) or 1-D audio), side by
    side on one colour scale (dB re full scale, channels averaged first, 2048-sample Hann frames, hop 512,
    0 Hz to Nyquist).  Uses matplotlib's Agg canvas directly (no pyplot, no global backend change); the file is
    written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .atomic import publish, temporary_beside

    path = Path(path)
    images = []
    for label, audio in signals.items():
        mono = np.atleast_2d(np.asarray(audio, dtype=np.float64)).mean(axis=0)
        if mono.shape[0] < LSD_FFT:
            mono = np.pad(mono, (0, LSD_FFT - mono.shape[0]))
        count = 1 + (mono.shape[0] - LSD_FFT) // LSD_HOP
        frames = np.lib.stride_tricks.sliding_window_view(mono, LSD_FFT)[: (count - 1) * LSD_HOP + 1 : LSD_HOP]
        window = np.hanning(LSD_FFT + 1)[:-1]
        power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2 * (2 / window.sum()) ** 2
        images.append((label, 10 * np.log10(np.maximum(power, 1e-14)).T, mono.shape[0] / sample_rate))
    top = max((float(image.max()) for _, image, _ in images), default=0.0)
    figure = Figure(figsize=(5.5 * max(1, len(images)), 4.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, max(1, len(images)), squeeze=False)[0]
    mesh = None
    for axis, (label, image, seconds) in zip(axes, images, strict=False):
        mesh = axis.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=top - 100, vmax=top,
                           extent=(0.0, seconds, 0.0, sample_rate / 2000))
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("time (s)")
        axis.set_ylabel("frequency (kHz)")
    if mesh is not None:
        figure.colorbar(mesh, ax=list(axes), label="dB re full scale")
    if title:
        figure.suptitle(title, fontsize=9)
    temporary = temporary_beside(path, ".png")
    try:
        figure.savefig(str(temporary), format="png")
        publish(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _finite_blocks(info: AudioInfo, block: int) -> Iterator[np.ndarray]:
    """:func:`read_blocks`, refusing NaN/Inf samples (no metric or alignment is defined on them) with an
    AudioFileError that says where the first one is."""
    position = 0
    for data in read_blocks(info, block):
        finite = np.isfinite(data).all(axis=0)
        if not finite.all():
            first = position + int(np.argmin(finite))
            raise AudioFileError(f"contains NaN/Inf samples (first at {first / info.sample_rate:.3f} s): nothing to "
                                 "compare there", where=info.path)
        position += data.shape[1]
        yield data


def _read_prefix(info: AudioInfo, count: int) -> np.ndarray:
    """The first ``count`` samples (or fewer) of the channel average, float64."""
    parts, have = [], 0
    for block in _finite_blocks(info, min(BLOCK, count)):
        parts.append(block.mean(axis=0, dtype=np.float64))
        have += block.shape[1]
        if have >= count:
            break
    return np.concatenate(parts)[:count]


def _estimate_lag(ref_info: AudioInfo, cand_info: AudioInfo, max_lag: int) -> int:
    """Candidate delay in samples: argmax over |lag| <= max_lag of sum_n x[n] y[n + lag] (FFT cross-correlation
    of the channel averages of the first ALIGN_EXCERPT_S seconds); 0 when either excerpt is silent."""
    count = round(ALIGN_EXCERPT_S * ref_info.sample_rate)
    return _lag_of(_read_prefix(ref_info, count), _read_prefix(cand_info, count), max_lag)


def _lag_of(x: np.ndarray, y: np.ndarray, max_lag: int) -> int:
    """argmax over |lag| <= max_lag of sum_n x[n] y[n + lag]; 0 when either is silent."""
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
    for block in _finite_blocks(info, BLOCK):
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
    """Accumulates energies, the cross term and per-frame log-spectral distances over aligned block pairs.

    The centred STFT is streamed: the reflected start is prepended once the first n_fft/2 + 1 samples are in,
    the reflected end is appended by :meth:`result`; ``carry`` holds the samples of frames not yet complete.
    """

    def __init__(self, fs: int, split_hz: float) -> None:
        self.window = np.hanning(LSD_FFT + 1)[:-1]
        self.low = np.fft.rfftfreq(LSD_FFT, 1 / fs) < split_hz
        self.carry: tuple[np.ndarray, np.ndarray] | None = None
        self.started = False
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
        half = LSD_FFT // 2
        if not self.started:
            if x.shape[1] <= half:
                self.carry = (x, y)
                return
            x = np.concatenate([x[:, half:0:-1], x], axis=1)
            y = np.concatenate([y[:, half:0:-1], y], axis=1)
            self.started = True
        self.carry = self._frames(x, y)

    def _frames(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Measure every complete frame of the padded stream ``x``, ``y``; return what later frames still need."""
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
        return x[:, keep:], y[:, keep:]

    def _finish(self) -> None:
        """Append the reflected end (or pad a stream shorter than n_fft/2 + 1 at both ends) and measure the rest."""
        if self.carry is None:
            return
        x, y = self.carry
        half = LSD_FFT // 2
        if not self.started:
            if x.shape[1] == 0:
                return
            mode = "reflect" if x.shape[1] > 1 else "edge"
            x = np.pad(x, ((0, 0), (half, half)), mode=mode)
            y = np.pad(y, ((0, 0), (half, half)), mode=mode)
        else:
            x = np.concatenate([x, x[:, -2 : -half - 2 : -1]], axis=1)
            y = np.concatenate([y, y[:, -2 : -half - 2 : -1]], axis=1)
        self.carry = None
        self._frames(x, y)

    def result(self) -> dict:
        self._finish()
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
    longer = max(result.get("reference_s", 0.0), result.get("candidate_s", 0.0))
    uncompared = ([f"note       only {result['compared_s']:.2f} s of {longer:.2f} s compared (the reference is "
                   f"{result['reference_s']:.2f} s long, the candidate {result['candidate_s']:.2f} s): the scores say "
                   "nothing about the rest"]
                  if longer - result["compared_s"] > UNCOMPARED_NOTE_SHARE * longer else [])
    return "\n".join([
        f"reference  {result['reference']}",
        f"candidate  {result['candidate']}",
        f"alignment  candidate lag {result['lag_samples']} samples ({result['lag_samples'] / fs * 1000:.2f} ms)",
        f"compared   {result['compared_samples']} samples ({result['compared_s']:.2f} s) at {fs} Hz, "
        f"{result['channels']} channel(s)",
        *uncompared,
        f"LSD        {number(result['lsd'])} (below {result['split_hz']:g} Hz {number(result['lsd_low'])}, "
        f"above {number(result['lsd_high'])}) [log10 power]",
        f"SNR        {number(result['snr_db'], ' dB')}",
        f"SI-SDR     {number(result['si_sdr_db'], ' dB')}",
    ] + ([f"plot       {result['plot']}"] if result.get("plot") else []))
