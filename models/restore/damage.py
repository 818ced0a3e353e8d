"""Damage simulation for training and benchmarking the restorers (numpy, scipy, pedalboard; no torch).

Every damage takes clean audio (channels, n) float32 at its sample rate and returns damaged audio of the same
shape, sample-aligned with the clean input (filters are zero-phase or have their delay removed; the MP3
round trip has the encoder + decoder padding removed).  Where real damage comes in several flavours (filter
shapes, noise colours, dither or not, hold phase) the flavour is drawn from the ``rng`` passed to
:meth:`Damage.apply`, unless it was fixed when the damage was built; after ``apply`` the flavour used is in
:attr:`Damage.variant` (for logs and reports).

Forms accepted by :func:`parse_damage` (:data:`DAMAGE_FORMS`):

- ``doubled-samples``: y[2n+1] = y[2n] (parity 0) or y[2n+2] = y[2n+1] (parity 1), parity drawn.
- ``hold:N``: sample-and-hold by N >= 2 samples (y[k] = x[N floor((k - phase) / N) + phase]), phase drawn.
- ``bandwidth:HZ``: lowpass at HZ (1 kHz .. 0.98 x Nyquist) with a drawn shape (:data:`LOWPASS_SHAPES`).
- ``mp3:KBPS``: encode and decode through pedalboard.io's MP3 (LAME) at KBPS (32..320) kbit/s.
- ``noise:DB``: additive noise at DB dB SNR (-20..100, relative to the clean signal's mean power over all
  channels) of a drawn kind (:data:`NOISE_KINDS`).
- ``bits:N``: quantisation to N bits (2..24, step 2^(1-N) of full scale 1.0), with or without TPDF dither (drawn).
- ``clip:DB``: hard clipping at the clean peak minus DB dB (0 < DB <= 40), i.e. DB dB "over threshold".
"""

from __future__ import annotations

import io
import math
import re
from abc import ABC, abstractmethod

import numpy as np

from ...errors import ParameterError

DAMAGE_FORMS = "doubled-samples|hold:N|bandwidth:HZ|mp3:KBPS|noise:DB|bits:N|clip:DB"
LOWPASS_SHAPES = ("butter4", "butter6", "butter8", "butter12", "ellip", "cheby1", "cheby2", "fir", "pedalboard")
"""Lowpass shapes of ``bandwidth:HZ``: zero-phase Butterworth of orders 4-12, elliptic (order 8, 0.1 dB ripple,
80 dB stop), Chebyshev I (order 8, 0.5 dB ripple) and II (order 10, 70 dB stop, edge at 1.1 x HZ), a 1023-tap
linear-phase Kaiser brickwall FIR (delay removed) and a zero-phase cascade of 4 one-pole pedalboard.LowpassFilter
with corners at HZ (-24 dB at HZ, a soft knee below it)."""
NOISE_KINDS = ("white", "pink", "hum50", "hum60", "mixture")
"""Noise of ``noise:DB``: stationary white, pink hiss (-3 dB/octave), mains hum at 50 or 60 Hz with 8
harmonics of random levels and phases, or a random mixture of hiss and hum."""
MP3_DELAY_SAMPLES = 1105
"""LAME encoder delay (576) plus the mpg123 decoder delay (529) seen through pedalboard.io 0.9.26 at 44.1/48 kHz
(measured by cross-correlation for 64..320 kbit/s); other rates are aligned by cross-correlation."""


class Damage(ABC):
    """A kind of damage with its parameter; :meth:`apply` is deterministic given the ``rng`` state."""

    spec: str
    """The form that builds it again through :func:`parse_damage`, e.g. ``"hold:3"``."""

    def __init__(self) -> None:
        self.variant = ""

    @abstractmethod
    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        """Damage ``clean`` (channels, n) float32 at ``sample_rate`` Hz; returns (channels, n) float32, aligned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def _checked(clean: np.ndarray) -> np.ndarray:
    audio = np.asarray(clean, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"damage expects (channels, n) audio, got shape {audio.shape}")
    return audio


class DoubledSamples(Damage):
    """y[2n+1] = y[2n] (``parity`` 0) or y[2n+2] = y[2n+1] (``parity`` 1); ``parity`` None draws it."""

    def __init__(self, parity: int | None = None) -> None:
        super().__init__()
        self.parity = parity
        self.spec = "doubled-samples"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        parity = int(rng.integers(0, 2)) if self.parity is None else int(self.parity)
        self.variant = f"parity {parity}"
        return _hold(_checked(clean), 2, parity)


def _hold(audio: np.ndarray, factor: int, phase: int) -> np.ndarray:
    """Sample-and-hold: y[k] = x[phase + factor floor((k - phase) / factor)], and y[k] = x[k] for k < phase."""
    out = audio.copy()
    n = audio.shape[1]
    index = np.arange(phase, n)
    out[:, phase:] = audio[:, phase + factor * ((index - phase) // factor)]
    return out


class Hold(Damage):
    """Sample-and-hold by ``factor`` >= 2 samples, phase (0..factor-1) drawn unless given."""

    def __init__(self, factor: int, phase: int | None = None) -> None:
        super().__init__()
        if factor < 2:
            raise ParameterError(f"hold:N needs N >= 2, got {factor}", where="--damage")
        self.factor, self.phase = int(factor), phase
        self.spec = f"hold:{self.factor}"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        phase = int(rng.integers(0, self.factor)) if self.phase is None else int(self.phase) % self.factor
        self.variant = f"phase {phase}"
        return _hold(_checked(clean), self.factor, phase)


class Bandwidth(Damage):
    """Lowpass at ``cutoff_hz`` with a shape from :data:`LOWPASS_SHAPES` (drawn unless ``shape`` is given)."""

    def __init__(self, cutoff_hz: float, shape: str | None = None) -> None:
        super().__init__()
        if shape is not None and shape not in LOWPASS_SHAPES:
            raise ParameterError(f"unknown lowpass shape {shape!r} (known: {', '.join(LOWPASS_SHAPES)})",
                                 where="--damage")
        self.cutoff_hz, self.shape = float(cutoff_hz), shape
        self.spec = f"bandwidth:{self.cutoff_hz:g}"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        audio = _checked(clean)
        nyquist = sample_rate / 2
        if not 1000 <= self.cutoff_hz <= 0.98 * nyquist:
            raise ParameterError(f"bandwidth:{self.cutoff_hz:g} needs 1000 Hz <= HZ <= {0.98 * nyquist:g} Hz at "
                                 f"{sample_rate} Hz", where="--damage")
        shape = self.shape or LOWPASS_SHAPES[int(rng.integers(0, len(LOWPASS_SHAPES)))]
        self.variant = shape
        return lowpass(audio, sample_rate, self.cutoff_hz, shape)


def lowpass(audio: np.ndarray, sample_rate: int, cutoff_hz: float, shape: str) -> np.ndarray:
    """``audio`` (channels, n) lowpassed at ``cutoff_hz`` (Hz) with ``shape``, aligned (zero phase or delay
    removed), float32.  IIR shapes run forwards and backwards (the magnitude squared: orders stated are of the
    one-way filter, whose -3 dB point is moved so the two-way response is -3 dB at the cutoff)."""
    import scipy.signal as ss

    nyquist = sample_rate / 2
    x = audio.astype(np.float64)
    if shape.startswith("butter"):
        order = int(shape[len("butter"):])
        # two passes: |H|^2 is -3 dB where |H| is -1.5 dB: Butterworth -1.5 dB point = fc * (10^0.15 - 1)^(1/2N)
        edge = cutoff_hz / (10 ** 0.15 - 1) ** (1 / (2 * order))
        sos = ss.butter(order, min(edge, 0.99 * nyquist) / nyquist, output="sos")
        y = ss.sosfiltfilt(sos, x, axis=-1)
    elif shape == "ellip":
        y = ss.sosfiltfilt(ss.ellip(8, 0.1, 80, cutoff_hz / nyquist, output="sos"), x, axis=-1)
    elif shape == "cheby1":
        y = ss.sosfiltfilt(ss.cheby1(8, 0.5, cutoff_hz / nyquist, output="sos"), x, axis=-1)
    elif shape == "cheby2":
        y = ss.sosfiltfilt(ss.cheby2(10, 70, min(1.1 * cutoff_hz, 0.99 * nyquist) / nyquist, output="sos"), x,
                           axis=-1)
    elif shape == "fir":
        taps = ss.firwin(1023, cutoff_hz, fs=sample_rate, window=("kaiser", 12.0))
        y = ss.oaconvolve(x, taps[None, :], mode="full", axes=-1)[:, 511:511 + x.shape[1]]
    elif shape == "pedalboard":
        import pedalboard

        # 8 one-pole passes (4 each way), each with its corner at the cutoff: -24 dB there, a soft knee below
        board = pedalboard.Pedalboard([pedalboard.LowpassFilter(cutoff_frequency_hz=cutoff_hz) for _ in range(4)])
        forward = board(x.astype(np.float32), sample_rate)
        y = board(np.ascontiguousarray(forward[:, ::-1]), sample_rate)[:, ::-1].astype(np.float64)
    else:
        raise ValueError(f"unknown lowpass shape {shape!r}")
    return np.ascontiguousarray(y, dtype=np.float32)


class Mp3(Damage):
    """Round trip through pedalboard.io's MP3 encoder at ``kbps`` kbit/s and its decoder, padding removed."""

    def __init__(self, kbps: int) -> None:
        super().__init__()
        if not 32 <= kbps <= 320:
            raise ParameterError(f"mp3:KBPS needs 32 <= KBPS <= 320, got {kbps}", where="--damage")
        self.kbps = int(kbps)
        self.spec = f"mp3:{self.kbps}"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        self.variant = f"{self.kbps} kbit/s"
        return mp3_round_trip(_checked(clean), sample_rate, self.kbps)


def mp3_round_trip(audio: np.ndarray, sample_rate: int, kbps: int) -> np.ndarray:
    """``audio`` (channels, n) encoded to MP3 at ``kbps`` and decoded (pedalboard.io), aligned to the input."""
    from pedalboard.io import AudioFile

    channels, n = audio.shape
    if channels > 2:
        return np.concatenate([mp3_round_trip(audio[c:c + 1], sample_rate, kbps) for c in range(channels)])
    buffer = io.BytesIO()
    with AudioFile(buffer, "w", samplerate=sample_rate, num_channels=channels, quality=kbps, format="mp3") as out:
        out.write(audio)
    buffer.seek(0)
    with AudioFile(buffer) as reader:
        decoded = reader.read(reader.frames)
    delay = MP3_DELAY_SAMPLES if sample_rate in (44100, 48000) else _lag(audio, decoded, 4 * MP3_DELAY_SAMPLES)
    out = np.zeros_like(audio)
    part = decoded[:, delay:delay + n]
    out[:, :part.shape[1]] = part
    return out


def _lag(reference: np.ndarray, delayed: np.ndarray, max_lag: int) -> int:
    """Delay (0..max_lag samples) of ``delayed`` behind ``reference`` by cross-correlating channel sums."""
    import scipy.signal as ss

    x, y = reference.sum(axis=0), delayed.sum(axis=0)
    if not np.any(x) or not np.any(y):
        return 0
    correlation = ss.correlate(y, x, mode="full", method="fft")
    lags = ss.correlation_lags(len(y), len(x), mode="full")
    allowed = (lags >= 0) & (lags <= max_lag)
    return int(lags[allowed][np.argmax(correlation[allowed])])


class Noise(Damage):
    """Additive noise at ``snr_db`` dB below the clean signal's mean power, kind from :data:`NOISE_KINDS`."""

    def __init__(self, snr_db: float, kind: str | None = None) -> None:
        super().__init__()
        if not -20 <= snr_db <= 100:
            raise ParameterError(f"noise:DB needs -20 <= DB <= 100 (SNR in dB), got {snr_db:g}", where="--damage")
        if kind is not None and kind not in NOISE_KINDS:
            raise ParameterError(f"unknown noise kind {kind!r} (known: {', '.join(NOISE_KINDS)})", where="--damage")
        self.snr_db, self.kind = float(snr_db), kind
        self.spec = f"noise:{self.snr_db:g}"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        audio = _checked(clean)
        kind = self.kind or NOISE_KINDS[int(rng.integers(0, len(NOISE_KINDS)))]
        self.variant = kind
        noise = make_noise(kind, audio.shape, sample_rate, rng)
        signal_power = float(np.mean(audio.astype(np.float64) ** 2))
        noise_power = float(np.mean(noise ** 2))
        if signal_power == 0 or noise_power == 0:
            return audio.copy()
        noise *= math.sqrt(signal_power / noise_power / 10 ** (self.snr_db / 10))
        return (audio + noise).astype(np.float32)


def make_noise(kind: str, shape: tuple[int, int], sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unscaled noise of ``kind`` (:data:`NOISE_KINDS`), float64 ``shape`` (channels, n)."""
    channels, n = shape
    if kind == "white":
        return rng.standard_normal(shape)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(shape), axis=-1)
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        spectrum *= 1 / np.sqrt(np.maximum(freqs, 20.0))
        return np.fft.irfft(spectrum, n=n, axis=-1)
    if kind in ("hum50", "hum60"):
        base = 50.0 if kind == "hum50" else 60.0
        t = np.arange(n) / sample_rate
        hum = np.zeros(shape)
        for harmonic in range(1, 9):
            if harmonic * base >= sample_rate / 2:
                break
            level = 10 ** (-rng.uniform(0, 30) / 20) / harmonic ** 0.5
            phases = rng.uniform(0, 2 * np.pi, size=(channels, 1))
            hum += level * np.sin(2 * np.pi * harmonic * base * t[None, :] + phases)
        return hum
    if kind == "mixture":
        parts = [make_noise(k, shape, sample_rate, rng) for k in ("white", "pink", "hum50" if rng.random() < 0.5
                                                                  else "hum60")]
        weights = rng.uniform(0.2, 1.0, size=3)
        return sum(w * p / max(np.sqrt(np.mean(p ** 2)), 1e-12) for w, p in zip(weights, parts, strict=True))
    raise ValueError(f"unknown noise kind {kind!r}")


class Bits(Damage):
    """Quantisation to ``bits`` bits (step 2^(1-bits)); TPDF dither of +-1 step (drawn unless ``dither`` given)."""

    def __init__(self, bits: int, dither: bool | None = None) -> None:
        super().__init__()
        if not 2 <= bits <= 24:
            raise ParameterError(f"bits:N needs 2 <= N <= 24, got {bits}", where="--damage")
        self.bits, self.dither = int(bits), dither
        self.spec = f"bits:{self.bits}"

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        audio = _checked(clean).astype(np.float64)
        dither = bool(rng.integers(0, 2)) if self.dither is None else bool(self.dither)
        self.variant = "TPDF dither" if dither else "no dither"
        step = 2.0 ** (1 - self.bits)
        if dither:
            audio = audio + step * (rng.random(audio.shape) - rng.random(audio.shape))
        levels = np.clip(np.round(audio / step), -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1)
        return (levels * step).astype(np.float32)


class Clip(Damage):
    """Hard clipping at the clean peak (over all channels) minus ``over_db`` dB."""

    def __init__(self, over_db: float) -> None:
        super().__init__()
        if not 0 < over_db <= 40:
            raise ParameterError(f"clip:DB needs 0 < DB <= 40 (dB over threshold), got {over_db:g}",
                                 where="--damage")
        self.over_db = float(over_db)
        self.spec = f"clip:{self.over_db:g}"

    def threshold(self, clean: np.ndarray) -> float:
        """Clipping level (full scale 1.0) for ``clean``."""
        return float(np.max(np.abs(clean))) * 10 ** (-self.over_db / 20) if clean.size else 0.0

    def apply(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        audio = _checked(clean)
        level = np.float32(self.threshold(audio))
        self.variant = f"threshold {level:.4g}"
        return np.clip(audio, -level, level)


_FORM = re.compile(r"^\s*([a-z][a-z0-9-]*)\s*(?::\s*(\S+)\s*)?$")


def parse_damage(spec: str) -> Damage:
    """The :class:`Damage` named by ``spec`` (one of :data:`DAMAGE_FORMS`); ParameterError(where="--damage")."""

    def bad(reason: str) -> ParameterError:
        return ParameterError(f"{reason} in damage {spec!r}; forms: {DAMAGE_FORMS}", where="--damage")

    match = _FORM.match(str(spec))
    if not match:
        raise bad("cannot read")
    name, value = match.group(1), match.group(2)
    if name == "doubled-samples":
        if value is not None:
            raise bad("doubled-samples takes no value")
        return DoubledSamples()
    kinds = {"hold": (Hold, int), "bandwidth": (Bandwidth, float), "mp3": (Mp3, int), "noise": (Noise, float),
             "bits": (Bits, int), "clip": (Clip, float)}
    if name not in kinds:
        raise bad(f"unknown damage '{name}'")
    if value is None:
        raise bad(f"'{name}' needs a value")
    cls, kind = kinds[name]
    try:
        number = float(value)
    except ValueError:
        raise bad(f"'{value}' is not a number") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise bad(f"'{value}' is not {'a whole number' if kind is int else 'a finite number'}")
    try:
        return cls(kind(number))
    except ParameterError as error:
        raise bad(error.message) from None
