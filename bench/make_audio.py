"""Deterministic, music-like stereo test material for the benchmarks.

    python bench/make_audio.py --minutes 5 --out bench/data/in_5min.wav [--subtype PCM_16|PCM_24|FLOAT]
                               [--seed 0] [--sample-rate 44100]

The signal is cut into 2-second "bars" (120 bpm, 4 beats).  Bar ``k`` is rendered from its own generator
``numpy.random.default_rng([seed, k])``, so the file does not depend on how it is written and the same
arguments always give the same samples.  Each bar is one of:

* a silence gap (about 4 % of bars; digital zeros, so gating and silence paths get exercised);
* a "song" bar: a three-note chord of harmonic tones (decaying envelope, panned), a bass note, a
  kick-like low noise burst on beats 1 and 3, hi-hat-like short white-noise bursts on eighth notes,
  and occasional louder bars (so the compressor and limiter have work to do).

Only one bar (88,200 frames at 44.1 kHz) is held in memory at a time; a 60-minute file is written in
1,800 blocks.  Peaks stay below 0 dBFS.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

BAR_SECONDS = 2.0
BEATS_PER_BAR = 4
SILENCE_PROBABILITY = 0.04
SCALE = np.array([0, 2, 3, 5, 7, 8, 10])  # natural minor, semitones above the root
ROOT_HZ = 110.0  # A2


def _note_hz(degree: int, octave: int) -> float:
    semitones = SCALE[degree % len(SCALE)] + 12 * (octave + degree // len(SCALE))
    return ROOT_HZ * 2.0 ** (semitones / 12.0)


def _envelope(n: int, sample_rate: int, attack_s: float, decay_s: float) -> np.ndarray:
    t = np.arange(n) / sample_rate
    env = np.exp(-t / decay_s)
    attack = max(1, int(attack_s * sample_rate))
    env[:attack] *= np.linspace(0.0, 1.0, attack, endpoint=False)
    return env


def _tone(freq: float, n: int, sample_rate: int, harmonics: int, phase: float) -> np.ndarray:
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for h in range(1, harmonics + 1):
        if freq * h >= 0.45 * sample_rate:
            break
        out += np.sin(2 * np.pi * freq * h * t + phase * h) / h
    return out


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan, position in [-1, 1] -> (2, n)."""
    angle = (position + 1.0) * np.pi / 4.0
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)])


def render_bar(k: int, seed: int, sample_rate: int) -> np.ndarray:
    """Bar ``k`` as a (2, n) float64 array; depends only on (k, seed, sample_rate)."""
    rng = np.random.default_rng([seed, k])
    n = int(round(BAR_SECONDS * sample_rate))
    out = np.zeros((2, n))
    if rng.random() < SILENCE_PROBABILITY:
        return out
    beat = n // BEATS_PER_BAR
    loud = 2.0 if rng.random() < 0.15 else 1.0

    # chord: three notes, each held for half a bar (two chords per bar)
    for half in range(2):
        start, length = half * (n // 2), n // 2
        root = int(rng.integers(0, 7))
        for i, degree in enumerate((root, root + 2, root + 4)):
            freq = _note_hz(degree, 1) * (1.0 + rng.normal(0, 0.002))
            tone = _tone(freq, length, sample_rate, harmonics=6, phase=rng.uniform(0, 2 * np.pi))
            tone *= _envelope(length, sample_rate, 0.01, rng.uniform(0.25, 0.8)) * 0.07 * loud
            out[:, start:start + length] += _pan(tone, (i - 1) * 0.6)
        bass = _tone(_note_hz(root, -1), length, sample_rate, harmonics=3, phase=0.0)
        out[:, start:start + length] += _pan(bass * _envelope(length, sample_rate, 0.005, 0.4) * 0.15 * loud, 0.0)

    # kick-ish: low-passed noise burst with a pitch-drop sine, beats 1 and 3
    for b in (0, 2):
        length = min(int(0.25 * sample_rate), n - b * beat)
        t = np.arange(length) / sample_rate
        body = np.sin(2 * np.pi * (55.0 * t + 60.0 * (1 - np.exp(-t * 30.0)) / 30.0))
        noise = np.convolve(rng.standard_normal(length), np.ones(8) / 8.0, mode="same")
        kick = (body + 0.3 * noise) * np.exp(-t * 12.0) * 0.35 * loud
        out[:, b * beat:b * beat + length] += _pan(kick, 0.0)

    # hi-hat-ish: short white-noise bursts on eighth notes, random level and slight pan
    eighth = beat // 2
    for e in range(2 * BEATS_PER_BAR):
        if rng.random() < 0.2:
            continue
        length = int(0.04 * sample_rate)
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.008 * sample_rate))
        burst *= rng.uniform(0.02, 0.08) * loud
        out[:, e * eighth:e * eighth + length] += _pan(burst, rng.uniform(-0.5, 0.5))

    # the odd noise swell (a "crash"), now and then
    if rng.random() < 0.1:
        length = n // 2
        swell = rng.standard_normal((2, length)) * np.exp(-np.arange(length) / (0.3 * sample_rate)) * 0.06 * loud
        out[:, :length] += swell

    np.clip(out, -0.98, 0.98, out=out)
    return out


def write(minutes: float, out: Path, subtype: str = "PCM_16", seed: int = 0, sample_rate: int = 44100) -> Path:
    """Write ``minutes`` of material to ``out`` (WAV; RF64 automatically beyond 4 GB is not needed here)."""
    total = int(round(minutes * 60.0 * sample_rate))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    written, k = 0, 0
    with sf.SoundFile(str(partial), "w", samplerate=sample_rate, channels=2, format="WAV", subtype=subtype) as f:
        while written < total:
            bar = render_bar(k, seed, sample_rate)
            take = min(bar.shape[1], total - written)
            f.write(bar[:, :take].T.astype(np.float32))
            written += take
            k += 1
    partial.replace(out)
    return out


def ensure(minutes: float, out: Path, subtype: str = "PCM_16", seed: int = 0, sample_rate: int = 44100) -> Path:
    """Generate ``out`` unless a file with the expected length, rate and subtype is already there."""
    if out.exists():
        try:
            info = sf.info(str(out))
            if (info.frames == int(round(minutes * 60.0 * sample_rate)) and info.samplerate == sample_rate
                    and info.channels == 2 and info.subtype == subtype):
                return out
        except RuntimeError:
            pass
    print(f"generating {minutes:g} min of test audio -> {out}", file=sys.stderr, flush=True)
    return write(minutes, out, subtype, seed, sample_rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--subtype", choices=["PCM_16", "PCM_24", "FLOAT"], default="PCM_16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    write(args.minutes, args.out, args.subtype, args.seed, args.sample_rate)
    info = sf.info(str(args.out))
    print(f"{args.out}: {info.frames / info.samplerate / 60:.2f} min, {info.samplerate} Hz, "
          f"{info.channels} ch, {info.subtype}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
