"""Checks on a dry/wet pair and their alignment, one named function per check (in the spirit of NAM's validators).

Every check returns a :class:`Check`: passed or not, what was measured, and a message that says what is wrong,
the likely causes and what to do.  :func:`prepare_pair` runs them all, aligns the wet recording to the dry one
and raises :class:`~pedalchain.errors.AudioFileError` for a critical failure; advisory failures become
warnings in the returned :class:`Pair`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import AudioFileError
from .excitation import Excitation

MAX_LATENCY_S = 0.5
"""Latencies up to this many seconds (either direction) are searched for."""

REPEATABILITY_ESR = 1e-2
"""The repeated section's two wet renditions must agree within this ESR (NAM uses a similar bound)."""

MIN_PAIR_S = 1.0
"""Shortest dry file a capture is trained on: its validation part and the report's spectra need some length."""


@dataclass
class Check:
    """One check's result.

    Args:
        name: the check's function name.
        passed: whether the data passed.
        critical: a failure stops training (advisory failures are warnings).
        measured: what was measured (JSON-able).
        message: for a failure, what is wrong, likely causes and what to do; for a pass, a short summary.
    """

    name: str
    passed: bool
    critical: bool
    measured: dict[str, Any]
    message: str


@dataclass
class Latency:
    """A latency estimate: ``samples`` by which wet lags dry, and how sure (``confidence`` 0–1)."""

    samples: int
    method: str
    confidence: float
    certain: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pair:
    """Aligned mono dry/wet audio ready for training, with the checks that were run."""

    dry: np.ndarray
    wet: np.ndarray
    sample_rate: int
    train: tuple[int, int]
    validation: tuple[int, int]
    latency: Latency
    checks: list[Check]
    description: str

    @property
    def warnings(self) -> list[str]:
        return [c.message for c in self.checks if not c.passed and not c.critical]


def check_sample_rates(dry_rate: float, wet_rate: float) -> Check:
    """The dry and wet files must have the same sample rate (no resampling of one of them is attempted)."""
    ok = float(dry_rate) == float(wet_rate)
    message = ("sample rates match" if ok else
               f"the dry file is {dry_rate:g} Hz but the wet file is {wet_rate:g} Hz. Likely cause: the interface "
               "or DAW recorded at another rate than the excitation was written at. Fix: record again with the "
               f"project at {dry_rate:g} Hz (or make the excitation at {wet_rate:g} Hz with --sample-rate).")
    return Check("check_sample_rates", ok, True, {"dry_hz": dry_rate, "wet_hz": wet_rate}, message)


def check_lengths(dry_samples: int, wet_samples: int, sample_rate: float, tolerance_s: float = 1.0) -> Check:
    """The wet recording must cover the dry file: not shorter, at most ``tolerance_s`` seconds longer."""
    difference = (wet_samples - dry_samples) / sample_rate
    ok = 0.0 <= difference <= tolerance_s
    if ok:
        message = "lengths match"
    elif difference < 0:
        message = (f"the wet file is {-difference:.3f} s shorter than the dry file ({wet_samples} vs {dry_samples} "
                   "samples). Likely causes: the recording was stopped early or trimmed. Fix: record the whole "
                   "excitation plus about half a second, and do not trim the start.")
    else:
        message = (f"the wet file is {difference:.3f} s longer than the dry file. Likely causes: a different dry "
                   "file was played, or a long silence was recorded before it. Fix: trim the wet file to the dry "
                   "file's length plus at most 1 s, or check that the right dry file is given.")
    return Check("check_lengths", ok, True, {"dry_samples": dry_samples, "wet_samples": wet_samples,
                                             "difference_s": difference}, message)


def check_finite(dry: np.ndarray, wet: np.ndarray) -> Check:
    """Every sample of both files is a number (critical): one NaN spreads through training and every score."""
    for name, audio in (("dry", dry), ("wet", wet)):
        bad = np.flatnonzero(~np.isfinite(audio))
        if bad.size:
            return Check("check_finite", False, True, {"file": name, "first": int(bad[0]), "count": int(bad.size)},
                         f"the {name} file holds {bad.size} NaN/Inf sample(s), the first at sample {bad[0]}. Likely "
                         "cause: a broken export or a plugin that blew up. Fix: export the file again.")
    return Check("check_finite", True, True, {}, "every sample is finite")


def check_duration(dry_samples: int, sample_rate: float, minimum_s: float = MIN_PAIR_S) -> Check:
    """The dry file lasts at least ``minimum_s`` seconds (critical)."""
    seconds = dry_samples / sample_rate
    ok = seconds >= minimum_s
    message = ("long enough" if ok else
               f"the dry file is {seconds:.3f} s long; a capture needs at least {minimum_s:g} s (the built-in "
               "excitation of `chain train excitation` is made for it). Fix: play and record a longer file.")
    return Check("check_duration", ok, True, {"seconds": seconds, "minimum_s": minimum_s}, message)


def check_levels(dry: np.ndarray, wet: np.ndarray, rendered: bool = False) -> Check:
    """Neither recording is silent (critical), and the wet one is not clipped (advisory: ≥ 10 repeated full-scale
    samples; not for a render, whose flat tops are the chain's own saturation)."""
    dry_peak = float(np.max(np.abs(dry))) if len(dry) else 0.0
    if dry_peak <= 1e-4:
        return Check("check_levels", False, True, {"dry_peak": dry_peak},
                     f"the dry recording is silent (peak {20 * np.log10(dry_peak + 1e-12):.1f} dBFS): there is "
                     "nothing the device's response could be learnt from. Fix: give the file that was played into "
                     "the device (`chain train excitation` writes one).")
    peak = float(np.max(np.abs(wet))) if len(wet) else 0.0
    full = np.abs(wet) >= 0.999
    clipped = 0 if rendered else int(np.sum(full[1:] & (wet[1:] == wet[:-1])))  # flat tops, not a mere loud peak
    ok = 1e-4 < peak and clipped < 10
    if peak <= 1e-4:
        message = (f"the wet recording is silent (peak {20 * np.log10(peak + 1e-12):.1f} dBFS). Likely causes: a "
                   "muted output, the wrong input channel, or the device bypassed. Fix: check the routing and record "
                   "again.")
    elif clipped >= 10:
        message = (f"the wet recording clips ({clipped} samples at full scale). Likely cause: the return level "
                   "into the interface is too hot. Fix: lower the device's output or the input gain by 6 dB and "
                   "record again; clipping is not part of the device and the model will learn it.")
    else:
        message = f"wet peak {20 * np.log10(peak):.1f} dBFS"
    return Check("check_levels", ok, peak <= 1e-4, {"peak": peak, "clipped_samples": clipped}, message)


def _onset(magnitude: np.ndarray, peak: int, level: float, reach: int = 64) -> int:
    """The first index within ``reach`` before ``peak`` from which ``magnitude`` stays at or above ``level``.

    A filter delays the correlation peak by its group delay although its response starts at once; the onset is
    the latency a causal model can follow.
    """
    onset = peak
    while onset > 0 and peak - onset < reach and magnitude[onset - 1] >= level:
        onset -= 1
    return onset


def _blip_lags(dry: np.ndarray, wet: np.ndarray, blips: list[int], search: int) -> list[int]:
    """Per blip: the lag of the cross-correlation peak of a window around it (a filter's group delay included)."""
    lags = []
    for start in blips:
        lo, hi = max(0, start - 64), start + 64
        window = dry[lo:hi].astype(np.float64)
        segment_lo = max(0, lo - search)
        segment = wet[segment_lo : hi + search].astype(np.float64)
        if len(segment) < len(window) or not np.any(segment):
            continue
        correlation = np.abs(np.correlate(segment, window, mode="valid"))
        lags.append(segment_lo + int(np.argmax(correlation)) - lo)
    return lags


def impulse_estimate(dry: np.ndarray, wet: np.ndarray, search: int) -> tuple[np.ndarray, np.ndarray]:
    """Regularised least-squares (Wiener) estimate of the impulse response, lags −search..search: (lags, h).

    ``H = W·D* / (|D|² + 10⁻³·mean|D|²)`` over the whole signal; for a linear device this is its impulse
    response, for a nonlinear one its best linear approximation, which starts where the device's output starts.
    """
    n = min(len(dry), len(wet))
    size = 1 << int(np.ceil(np.log2(n + search + 1)))
    d = np.fft.rfft(dry[:n].astype(np.float64), size)
    w = np.fft.rfft(wet[:n].astype(np.float64), size)
    power = np.abs(d) ** 2
    h = np.fft.irfft(w * np.conj(d) / (power + 1e-3 * power.mean() + 1e-30), size)
    lags = np.arange(-search, search + 1)
    return lags, h[lags % size]


ONSET_NOISE_FACTOR = 3.0
ONSET_FLOOR = 0.02
"""The latency onset threshold: 2 % of the impulse estimate's peak, or 3 x its median noise where that is higher.
Below 2 %, a nonlinear device's best linear approximation shows a smear on both sides of its peak (about 1 % for
the compressor, fuzz and ZamComp captures) that is not a response."""
RENDERED_ONSET_SAMPLES = 8
"""A pair rendered by pedalchain (``--target``) has the plugins' reported latency compensated already: an onset
this close to zero is the device's gradual response, not latency, and nothing is removed."""


def detect_latency(dry: np.ndarray, wet: np.ndarray, sample_rate: float, blips: list[int] | None = None,
                   max_latency_s: float = MAX_LATENCY_S) -> Latency:
    """Samples by which ``wet`` lags ``dry`` (negative: wet is early), searched within ``max_latency_s``.

    The impulse response is estimated by regularised deconvolution (a whitened cross-correlation); the latency
    is its onset: the first lag, at most 64 samples before the peak, from which ``|h|`` stays above the estimate's
    noise and smear (:data:`ONSET_FLOOR` of the peak, or :data:`ONSET_NOISE_FACTOR` x the median ``|h|`` more
    than 256 samples from the peak).  The peak itself moves with a filter's group delay, the onset does not; and
    the threshold sits low because the two errors differ in cost: latency left in is a delay the causal model
    learns, latency removed beyond the true onset asks it to predict the future (a 4-pole low-pass's response
    rises gradually from its first sample: a 5 % threshold took 3 samples off a ladder filter and made the error
    on music five times larger).  ``confidence`` is
    1 − (largest ``|h|`` more than 256 samples from the peak / the peak).  With the excitation's blip positions
    the blips' correlation peaks must fall within 64 samples after the onset.  ``certain`` is False when the
    confidence is below 0.5 or the blips disagree: the caller warns then.
    """
    search = int(max_latency_s * sample_rate)
    lags, h = impulse_estimate(dry, wet, search)
    magnitude = np.abs(h)
    peak = int(np.argmax(magnitude))
    far = np.abs(lags - lags[peak]) > 256
    noise = ONSET_NOISE_FACTOR * float(np.median(magnitude[far])) if far.any() else 0.0
    onset = _onset(magnitude, peak, max(noise, ONSET_FLOOR * float(magnitude[peak])))
    second = float(magnitude[far].max()) if far.any() else 0.0
    confidence = float(1.0 - second / (magnitude[peak] + 1e-30))
    latency = int(lags[onset])
    detail: dict[str, Any] = {"peak_lag": int(lags[peak]),
                              "second_peak_ratio": float(second / (magnitude[peak] + 1e-30))}
    certain = confidence >= 0.5
    method = "deconvolution"
    if blips:
        blip_lags = _blip_lags(dry, wet, blips, min(search, int(0.1 * sample_rate)))
        detail["blip_lags"] = blip_lags
        agree = [0 <= lag - latency <= 64 for lag in blip_lags]
        method = "deconvolution, checked at the blips"
        if len(agree) < 2 or sum(agree) < len(agree):
            certain = False
    return Latency(latency, method, confidence, certain, detail)


def check_latency(latency: Latency, sample_rate: float, rendered: bool = False) -> Check:
    """Advisory: the latency estimate is certain, and a render (``rendered``, latency-compensated) has none."""
    ms = 1000.0 * latency.samples / sample_rate
    if rendered and latency.samples:
        return Check("check_latency", False, False, {"samples": latency.samples, "ms": ms, **latency.detail},
                     f"the render lags the excitation by {latency.samples} samples ({ms:.2f} ms): a plugin that "
                     "does not report its latency, or the chain's own delay. It is removed for training, so the "
                     "model will not delay by it; to emulate a delay, put a Delay step beside the model")
    if latency.certain:
        message = f"latency {latency.samples} samples ({ms:.2f} ms, by {latency.method})"
    else:
        message = (f"latency detection is uncertain: best guess {latency.samples} samples ({ms:.2f} ms) by "
                   f"{latency.method}, confidence {latency.confidence:.2f}. Likely causes: the blips were not "
                   "recorded (trimmed start), the device is very noisy, time-varying (modulation, delay, reverb) "
                   "or inverts polarity in a frequency-dependent way. Fix: record the whole excitation without "
                   "trimming; if the device really is time-varying, expect a poor capture.")
    return Check("check_latency", latency.certain, False,
                 {"samples": latency.samples, "ms": ms, "method": latency.method, "confidence": latency.confidence,
                  **latency.detail}, message)


def check_repeatability(wet: np.ndarray, source: tuple[int, int], repeat: tuple[int, int],
                        bound: float = REPEATABILITY_ESR) -> Check:
    """Advisory: the wet renditions of the repeated section agree (ESR ≤ ``bound``) — the device is repeatable."""
    a = wet[source[0] : source[1]].astype(np.float64)
    b = wet[repeat[0] : repeat[1]].astype(np.float64)
    n = min(len(a), len(b))
    if n == 0:
        return Check("check_repeatability", False, False, {}, "the repeated section is missing from the wet file")
    esr = float(np.sum((a[:n] - b[:n]) ** 2) / (np.sum(a[:n] ** 2) + 1e-30))
    ok = esr <= bound
    message = (f"the device sounds like itself when played twice (ESR {esr:.2g})" if ok else
               f"the device does not sound like itself when played twice: ESR {esr:.3g} between the two renditions "
               f"of the repeated section (bound {bound:g}). Likely causes: noise or hum, a time-varying effect "
               "(modulation, tape wow, auto-gain), a control touched during the recording, or clock drift between "
               "two interfaces. Fix: remove the cause and record again; the capture can be no better than this.")
    return Check("check_repeatability", ok, False, {"esr": esr, "bound": bound}, message)


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    return audio if audio.ndim == 1 else audio[0]


def prepare_pair(dry: np.ndarray, wet: np.ndarray, sample_rate: float, wet_rate: float | None = None,
                 excitation: Excitation | None = None, where: str | Path | None = None,
                 validation_fraction: float = 0.2, rendered: bool = False) -> Pair:
    """Check, align and split a dry/wet pair (mono: the first channel of each is used).

    With ``excitation`` (the dry file is the built-in excitation) its train/validation regions, blips and
    repeated section are used; otherwise the last ``validation_fraction`` of the file is validation.
    ``rendered``: the wet audio is pedalchain's own render of a chain (latency-compensated), so an onset within
    :data:`RENDERED_ONSET_SAMPLES` of zero is kept as zero latency; a later one (a plugin that does not report its
    latency, or the chain's own Delay) is removed with a warning: the model will not delay by it.
    Raises AudioFileError (naming ``where``) when a critical check fails.
    """
    dry, wet = _mono(dry), _mono(wet)
    checks = [check_sample_rates(sample_rate, wet_rate if wet_rate is not None else sample_rate),
              check_finite(dry, wet), check_duration(len(dry), sample_rate)]
    if all(c.passed for c in checks):
        checks.append(check_lengths(len(dry), len(wet), sample_rate))
        checks.append(check_levels(dry, wet, rendered))
    failed = [c for c in checks if c.critical and not c.passed]
    if failed:
        raise AudioFileError(failed[0].message, where=where)
    latency = detect_latency(dry, wet, sample_rate, excitation.blips if excitation is not None else None)
    if rendered and abs(latency.samples) <= RENDERED_ONSET_SAMPLES:
        latency = Latency(0, "pedalchain's latency-compensated render", latency.confidence,
                          latency.certain, {**latency.detail, "detected_onset": latency.samples})
    checks.append(check_latency(latency, sample_rate, rendered))
    shift = latency.samples
    if shift >= 0:
        aligned = wet[shift : shift + len(dry)]
    else:
        aligned = np.concatenate([np.zeros(-shift, np.float32), wet])[: len(dry)]
    is_excitation = excitation is not None and len(excitation.audio) == len(dry)
    # a wet file as long as the dry one ends `shift` samples early once aligned: those samples are left out of
    # both, not scored against silence (a perfect fit of a 240-sample interface latency reported ESR 4e-3)
    dry = dry[: len(aligned)]
    if is_excitation:
        checks.append(check_repeatability(aligned, excitation.regions["repeat_source"], excitation.regions["repeat"]))
        train, validation = ((start, min(end, len(dry))) for start, end in
                             (excitation.regions["train"], excitation.regions["validation"]))
        description = excitation.description
    else:
        split = int(len(dry) * (1.0 - validation_fraction))
        train, validation = (0, split), (split, len(dry))
        description = f"paired recordings, {len(dry) / sample_rate:.1f} s; last {validation_fraction:.0%} validation"
    return Pair(dry.astype(np.float32), aligned.astype(np.float32), int(sample_rate), train, validation, latency,
                checks, description)
