"""The built-in capture excitation: a deterministic mono test signal to play through (or re-amp) gear.

Layout (all at ``sample_rate``, default 48 kHz; about 100 s)::

    | lead-in silence | 3 alignment blips | train material | validation material | repeat of a train section |
    | 3 alignment blips | tail silence |

Material (each part is built by :func:`_material` from its own seeded generator, so train and validation are
the same kinds of sound but different instances): a noise level staircase from −60 to 0 dBFS in 6 dB steps,
exponential sine sweeps (20 Hz to 20 kHz) at several levels, sine/square/saw tones (band-limited) at many
pitches with decaying envelopes, plucked strings (Karplus–Strong), drum-like bursts (pitched kick, noise
snare), pink noise with abrupt and slow level changes (compressor attack/release), and silences.  An optional
folder of real recordings (``extra_audio``) is appended to the train material.

Blips are 4-sample Hann pulses at −6 dBFS, 0.25 s apart: with the known positions the latency of a recording
is found to the sample (see :mod:`pedalchain.models.capture.pairing`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_SAMPLE_RATE = 48000
BLIP_COUNT = 3
BLIP_SPACING_S = 0.25
BLIP_LEVEL = 0.5
LEAD_IN_S = 0.5
TAIL_S = 1.0
REPEAT_S = 4.0
EXCITATION_VERSION = 1
"""Bumped whenever the signal changes: recordings made from another version no longer line up."""


@dataclass
class Excitation:
    """The excitation signal and where its parts are (sample indices, end exclusive).

    Args:
        audio: mono float32 samples in [−1, 1].
        sample_rate: Hz.
        seed: the generator seed.
        regions: name -> (start, end) for "train", "validation", "repeat", "repeat_source".
        blips: sample index of every alignment blip's first sample.
        description: one-line text recorded in model files.
    """

    audio: np.ndarray
    sample_rate: int
    seed: int
    regions: dict[str, tuple[int, int]]
    blips: list[int]
    description: str
    extra_files: list[str] = field(default_factory=list)

    def layout(self) -> dict[str, Any]:
        """JSON-able description (version, rate, seed, regions, blips)."""
        return {"version": EXCITATION_VERSION, "sample_rate": self.sample_rate, "seed": self.seed,
                "length": int(len(self.audio)), "regions": {k: list(v) for k, v in self.regions.items()},
                "blips": self.blips, "extra_files": self.extra_files}


def _db(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0))


def _envelope(n: int, sr: int, attack_s: float, decay_s: float) -> np.ndarray:
    t = np.arange(n) / sr
    attack = np.minimum(1.0, t / max(attack_s, 1.0 / sr))
    return attack * np.exp(-t / decay_s)


def _bandlimited(kind: str, frequency: float, n: int, sr: int, phase: float) -> np.ndarray:
    """Sine, square or saw of ``frequency`` Hz from harmonics below 0.45·sr (peak about 1)."""
    t = np.arange(n) / sr
    if kind == "sine":
        return np.sin(2 * np.pi * frequency * t + phase)
    harmonics = np.arange(1, int(0.45 * sr / frequency) + 1)
    if kind == "square":
        harmonics = harmonics[harmonics % 2 == 1]
        weights = 4 / np.pi / harmonics
    else:
        weights = 2 / np.pi / harmonics * (-1.0) ** (harmonics + 1)
    out = np.zeros(n)
    for h, w in zip(harmonics, weights, strict=True):
        out += w * np.sin(2 * np.pi * frequency * h * t + phase * h)
    return out / max(1.0, np.max(np.abs(out)))


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return pink / (np.sqrt(np.mean(pink**2)) + 1e-12) * 0.25


def _pluck(rng: np.random.Generator, frequency: float, n: int, sr: int) -> np.ndarray:
    period = max(2, int(round(sr / frequency)))
    out = np.zeros(n)
    buffer = rng.uniform(-1, 1, period)
    damping = rng.uniform(0.990, 0.999)
    # vectorised Karplus-Strong: each period is the averaged previous period
    for start in range(0, n, period):
        chunk = buffer[: min(period, n - start)]
        out[start : start + len(chunk)] = chunk
        buffer = damping * 0.5 * (buffer + np.roll(buffer, 1))
    return out / (np.max(np.abs(out)) + 1e-12)


def _drum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    if rng.random() < 0.5:  # kick: falling sine
        f0, f1 = rng.uniform(100, 200), rng.uniform(40, 60)
        frequency = f1 + (f0 - f1) * np.exp(-t * 30)
        body = np.sin(2 * np.pi * np.cumsum(frequency) / sr) * np.exp(-t * rng.uniform(8, 20))
        click = rng.standard_normal(n) * np.exp(-t * 400) * 0.3
        return np.clip(body + click, -1, 1)
    tone = np.sin(2 * np.pi * rng.uniform(150, 300) * t) * np.exp(-t * 30) * 0.5
    noise = rng.standard_normal(n) * np.exp(-t * rng.uniform(15, 40)) * 0.5
    return np.clip(tone + noise, -1, 1)


def _material(rng: np.random.Generator, sr: int, scale: float) -> list[np.ndarray]:
    """One instance of every kind of sound; ``scale`` (0–1] shortens the lists (validation uses less)."""
    parts: list[np.ndarray] = []

    def count(n: int) -> int:
        return max(1, int(round(n * scale)))

    # noise level staircase -60..0 dBFS, 0.4 s per step, going up then down
    steps = list(range(-60, 1, 6))
    for level in steps + steps[::-1][1:]:
        parts.append(_db(level) * _pink(rng, int(0.4 * sr)) * 2.0)
    # exponential sweeps 20 Hz - 20 kHz at several levels
    for level in rng.permutation([-40.0, -24.0, -12.0, -6.0, -1.0])[: count(5)]:
        n = int(2.0 * sr)
        t = np.arange(n) / sr
        low, high = 20.0, min(20000.0, 0.45 * sr)
        rate = np.log(high / low) / (n / sr)
        parts.append(_db(level) * np.sin(2 * np.pi * low * (np.exp(rate * t) - 1) / rate))
    # tones at many pitches (E1 .. E6), three wave shapes, random levels, decaying envelope
    pitches = 41.2 * 2.0 ** (np.arange(0, 61, 3) / 12.0)
    tones = [(kind, f) for f in pitches for kind in ("sine", "square", "saw")]
    for index in rng.permutation(len(tones))[: count(len(tones))]:
        kind, frequency = tones[index]
        n = int(rng.uniform(0.15, 0.35) * sr)
        level = _db(rng.uniform(-36.0, 0.0))
        env = _envelope(n, sr, 0.002, rng.uniform(0.1, 1.0))
        parts.append(level * env * _bandlimited(kind, frequency, n, sr, rng.uniform(0, 2 * np.pi)))
    # plucked strings
    for _ in range(count(30)):
        n = int(rng.uniform(0.3, 0.6) * sr)
        parts.append(_db(rng.uniform(-30.0, 0.0)) * _pluck(rng, rng.uniform(70.0, 1000.0), n, sr))
    # drum-like bursts, sometimes in quick succession
    for _ in range(count(30)):
        n = int(rng.uniform(0.12, 0.4) * sr)
        parts.append(_db(rng.uniform(-30.0, 0.0)) * _drum(rng, n, sr))
    # noise with abrupt level jumps (attack/release) and a slow swell, white and pink
    for _ in range(count(12)):
        n = int(rng.uniform(0.3, 0.8) * sr)
        low, high = _db(rng.uniform(-50, -25)), _db(rng.uniform(-12, 0))
        gate = np.repeat([low, high, low], [n // 3, n // 3, n - 2 * (n // 3)])
        source = _pink(rng, n) * 2.0 if rng.random() < 0.5 else rng.uniform(-1, 1, n)
        parts.append(np.clip(source * gate, -1, 1))
    for _ in range(count(3)):
        n = int(2.0 * sr)
        swell = _db(-60.0) ** (1 - np.sin(np.linspace(0, np.pi, n)))
        parts.append(np.clip(rng.uniform(-1, 1, n) * swell, -1, 1))
    # sine bursts with level jumps: classic compressor test (gain reduction and recovery)
    for _ in range(count(10)):
        n = int(0.6 * sr)
        levels = np.repeat([_db(rng.uniform(-40, -20)), _db(rng.uniform(-10, 0)), _db(rng.uniform(-40, -20))],
                           [n // 4, n // 4, n - n // 2])
        frequency = rng.uniform(100.0, 2000.0)
        parts.append(levels * np.sin(2 * np.pi * frequency * np.arange(n) / sr))
    order = rng.permutation(len(parts))
    shuffled = []
    for index in order:
        shuffled.append(parts[index])
        if rng.random() < 0.15:  # short silences between sounds
            shuffled.append(np.zeros(int(rng.uniform(0.05, 0.4) * sr)))
    return shuffled


def _blips(sr: int) -> tuple[np.ndarray, list[int]]:
    spacing = int(BLIP_SPACING_S * sr)
    pulse = BLIP_LEVEL * np.hanning(6)[1:-1]
    audio = np.zeros(spacing * (BLIP_COUNT + 1))
    starts = [spacing * (i + 1) for i in range(BLIP_COUNT)]
    for start in starts:
        audio[start : start + len(pulse)] = pulse
    return audio, starts


def read_extra_audio(folder: str | Path, sample_rate: int, max_seconds: float = 120.0) -> tuple[np.ndarray, list[str]]:
    """Mono mix of the audio files in ``folder`` (sorted by name), resampled to ``sample_rate``, normalised to
    −1 dBFS peak each, at most ``max_seconds`` in total.  Raises ParameterError for a path that is no folder of
    audio files (a bad option value), AudioFileError for a file in it that cannot be read."""
    from pedalboard.io import AudioFile

    from ...errors import AudioFileError, ParameterError

    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError("--extra-audio must be a folder of audio files", where=folder)
    suffixes = {".wav", ".flac", ".aif", ".aiff", ".mp3", ".ogg"}
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise ParameterError(f"no audio files ({', '.join(sorted(suffixes))}) in this folder", where=folder)
    pieces, names, total = [], [], 0
    for path in files:
        try:
            with AudioFile(str(path)).resampled_to(sample_rate) as stream:
                audio = stream.read(stream.frames).mean(axis=0)
        except Exception as error:  # noqa: BLE001 - pedalboard raises several types; report the file
            raise AudioFileError(f"cannot read: {error}", where=path) from None
        audio = audio[: int(max_seconds * sample_rate) - total]
        peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
        if peak > 0:
            pieces.append(audio / peak * _db(-1.0))
            names.append(path.name)
            total += len(audio)
        if total >= max_seconds * sample_rate:
            break
    return np.concatenate(pieces).astype(np.float64), names


def make_excitation(sample_rate: int = DEFAULT_SAMPLE_RATE, seed: int = 0, extra_audio: str | Path | None = None
                    ) -> Excitation:
    """Build the excitation (deterministic for a given ``sample_rate`` (Hz, 16000–192000) and ``seed``)."""
    if not 16000 <= sample_rate <= 192000:
        from ...errors import ParameterError

        raise ParameterError(f"--sample-rate {sample_rate} Hz is out of range [16000, 192000] Hz")
    sr = int(sample_rate)
    train_rng, validation_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    blips, blip_starts = _blips(sr)
    pieces: list[np.ndarray] = [np.zeros(int(LEAD_IN_S * sr)), blips]
    cursor = sum(len(p) for p in pieces)
    blip_positions = [int(LEAD_IN_S * sr) + s for s in blip_starts]
    train = np.concatenate(_material(train_rng, sr, 1.0))
    extra_files: list[str] = []
    if extra_audio is not None:
        extra, extra_files = read_extra_audio(extra_audio, sr)
        train = np.concatenate([train, np.zeros(int(0.25 * sr)), extra])
    validation = np.concatenate(_material(validation_rng, sr, 0.3))
    regions = {"train": (cursor, cursor + len(train))}
    cursor += len(train)
    regions["validation"] = (cursor, cursor + len(validation))
    cursor += len(validation)
    repeat_n = int(REPEAT_S * sr)
    source_start = regions["train"][0] + (len(train) - repeat_n) // 2
    regions["repeat_source"] = (source_start, source_start + repeat_n)
    gap = int(0.5 * sr)
    regions["repeat"] = (cursor + gap, cursor + gap + repeat_n)
    repeat = train[source_start - regions["train"][0] : source_start - regions["train"][0] + repeat_n]
    pieces += [train, validation, np.zeros(gap), repeat, np.zeros(gap)]
    cursor += 2 * gap + repeat_n
    blip_positions += [cursor + s for s in blip_starts]
    pieces += [blips, np.zeros(int(TAIL_S * sr))]
    audio = np.clip(np.concatenate(pieces), -1.0, 1.0).astype(np.float32)
    description = (f"pedalchain capture excitation v{EXCITATION_VERSION} (seed {seed}, {sr} Hz, "
                   f"{len(audio) / sr:.1f} s: level staircase -60..0 dBFS, sweeps, sine/square/saw tones, plucks, "
                   "drum bursts, gated noise, blips, repeated section"
                   + (f"; plus {len(extra_files)} extra recordings" if extra_files else "") + ")")
    return Excitation(audio, sr, seed, regions, blip_positions, description, extra_files)
