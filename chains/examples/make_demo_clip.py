"""Synthesize the bundled demo clip (deterministic): a 12 s stereo groove of bass, chords, hi-hats and kick.

Run: python chains/examples/make_demo_clip.py  -> chains/examples/demo.flac (44.1 kHz, 16-bit).
Everything in it is generated here, so the clip is ours to license: CC0.
"""

from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100
BPM = 100


def note(freq: float, seconds: float, decay: float, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * freq * k * t) / k**1.3 for k in range(1, harmonics + 1))
    return (tone * np.exp(-t / decay) * np.minimum(1.0, t / 0.005)).astype(np.float64)


def main() -> None:
    rng = np.random.default_rng(20261122)
    beat = 60.0 / BPM
    length = int(12 * SAMPLE_RATE)
    left, right = np.zeros(length), np.zeros(length)

    def place(signal: np.ndarray, start_s: float, gain_l: float, gain_r: float) -> None:
        start = int(start_s * SAMPLE_RATE)
        end = min(length, start + len(signal))
        left[start:end] += gain_l * signal[: end - start]
        right[start:end] += gain_r * signal[: end - start]

    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66), (164.81, 207.65, 246.94)]
    bass = [55.0, 43.65, 49.0, 41.2]
    for bar in range(5):
        for step in range(4):
            t0 = (bar * 4 + step) * beat
            if t0 >= 12:
                break
            chord = chords[(bar * 4 + step) // 4 % 4]
            for freq in chord:
                place(note(freq, beat * 1.5, 0.6), t0, 0.06, 0.05)
            place(note(bass[(bar * 4 + step) // 4 % 4], beat, 0.4, harmonics=3), t0, 0.25, 0.25)
            kick_t = np.arange(int(0.25 * SAMPLE_RATE)) / SAMPLE_RATE
            kick = np.sin(2 * np.pi * (50 + 120 * np.exp(-kick_t / 0.03)) * kick_t) * np.exp(-kick_t / 0.12)
            place(kick, t0, 0.5, 0.5)
            for half in (0.0, 0.5):
                hat_len = int(0.05 * SAMPLE_RATE)
                hat = np.diff(rng.standard_normal(hat_len + 1)) * np.exp(-np.arange(hat_len) / (0.01 * SAMPLE_RATE))
                place(hat, t0 + half * beat, 0.03, 0.05)
    stereo = np.stack([left, right], axis=1)
    stereo *= 0.5 / np.max(np.abs(stereo))
    out = Path(__file__).with_name("demo.flac")
    sf.write(out, stereo.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
