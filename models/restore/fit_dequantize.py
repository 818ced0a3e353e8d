"""Training of the ``dequantize`` restorer's filters (``chain train restorer --damage hold:N|bits:N``).

Two fits on clean audio (numpy only, no torch, about a minute of CPU):

- hold: for every N in 2 .. :data:`LEARNED_HOLDS` and every in-between position j = 1 .. N-1, the polyphase
  interpolator h_{N,j} (2 K taps, K = :data:`~pedalchain.effects.restorers.dequantize.HALF_TAPS`) minimising
  sum (x[mN + j] - sum_i h[i] x[(m + i) N])^2 over the training clips (a Wiener interpolator: it learns how
  little music there is above the new Nyquist), each channel scaled to unit RMS, with a ridge towards the
  Kaiser sinc.  Row j = 0 stays the identity.  It is kept only where it beats the sinc on the validation clips.
- bits: for each depth in :data:`BIT_LEVELS`, the over-subtraction ``alpha`` of the known quantisation noise
  (from :data:`ALPHAS`) with the best mean SNR on training clips quantised to it (half with TPDF dither, half
  without: the restorer cannot tell them apart).

``python -m pedalchain.models.restore.fit_dequantize -o FILE`` builds the shipped weights from the corpus, with
test-split SNR of the result against the sinc interpolator and passthrough in the metadata.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...effects.restorers import dequantize as dq
from .fit_bandwidth import snr_db

LEARNED_HOLDS = 8
BIT_LEVELS = (4, 6, 8, 10, 12)
MAX_CLIP_S = 6.0
EVAL_S = 3.0
"""Validation and test SNRs are measured on the first 3 s of each clip."""
MAX_ROWS = 400_000
ALPHAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""Candidate over-subtraction factors of the bit-depth repair."""
HOLD_RIDGE = 1e-3
"""Ridge weight of the hold fit (towards the sinc), relative to the mean diagonal of the Gram matrix."""


def _clips(paths: Sequence[Any], sample_rate: float) -> list[np.ndarray]:
    from .data import read_clip

    return [np.atleast_2d(read_clip(Path(p), int(sample_rate)))[:, : int(MAX_CLIP_S * sample_rate)].astype(np.float64)
            for p in paths]


def fit_hold(clips: list[np.ndarray], factor: int, rng: np.random.Generator) -> np.ndarray:
    """(factor, 2K) least-squares polyphase interpolators for hold ``factor`` (row 0 the identity).

    Each channel is scaled to unit RMS first, so loud bass-heavy clips do not set the filter for all music, and
    the ridge pulls towards the Kaiser sinc rather than towards zero: with little data the fit stays the sinc.
    """
    k = dq.HALF_TAPS
    taps = np.arange(-k + 1, k + 1)
    features: list[list[np.ndarray]] = [[] for _ in range(factor)]
    targets: list[list[np.ndarray]] = [[] for _ in range(factor)]
    for clip in clips:
        for channel in clip:
            rms = float(np.sqrt(np.mean(channel ** 2)))
            if rms < 1e-6:
                continue
            channel = channel / rms
            m = np.arange(k, (len(channel) - 1) // factor - k)
            cap = MAX_ROWS // max(1, len(clips) * len(clip))
            if m.size > cap:
                m = np.sort(rng.choice(m, cap, replace=False))
            if m.size == 0:
                continue
            rows = channel[(m[:, None] + taps[None, :]) * factor]
            for j in range(1, factor):
                features[j].append(rows)
                targets[j].append(channel[m * factor + j])
    filters = dq.sinc_interpolator(factor)
    for j in range(1, factor):
        if not features[j]:
            continue
        a, b = np.concatenate(features[j]), np.concatenate(targets[j])
        if len(b) > MAX_ROWS:
            pick = rng.choice(len(b), MAX_ROWS, replace=False)
            a, b = a[pick], b[pick]
        gram = a.T @ a
        ridge = HOLD_RIDGE * np.trace(gram) / len(gram)
        filters[j] = np.linalg.solve(gram + ridge * np.eye(len(gram)), a.T @ b + ridge * filters[j])
    return filters


def fit_bits_alpha(clips: list[np.ndarray], bits: int, sample_rate: float, seed: int) -> tuple[float, dict]:
    """The over-subtraction ``alpha`` (from :data:`ALPHAS`) with the best mean SNR on ``clips`` quantised to
    ``bits`` (every other clip with TPDF dither); returns it and the mean SNR gain (dB) of each candidate."""
    from .damage import Bits

    rng = np.random.default_rng(seed)
    pairs = []
    for index, clip in enumerate(clips):
        clip = clip[:, : int(EVAL_S * sample_rate)]
        pairs.append((clip, Bits(bits, dither=bool(index % 2)).apply(clip.astype(np.float32), int(sample_rate), rng)))
    gains = {}
    for alpha in ALPHAS:
        gains[alpha] = float(np.mean([snr_db(clean, dq.requantize_buffer(damaged, sample_rate, bits, alpha))
                                      - snr_db(clean, damaged) for clean, damaged in pairs]))
    return max(gains, key=gains.get), {f"{alpha:g}": round(gain, 3) for alpha, gain in gains.items()}


def hold_snr(clips: list[np.ndarray], factor: int, filters: np.ndarray, sample_rate: float) -> float:
    """Mean SNR (dB) over ``clips`` of hold-``factor`` damage (phase 0) repaired with ``filters``."""
    from .damage import Hold

    rng = np.random.default_rng(0)
    scores = []
    for clip in clips:
        damaged = Hold(factor, phase=0).apply(clip.astype(np.float32), int(sample_rate), rng)
        scores.append(snr_db(clip, dq.hold_gather(damaged, 0, np.arange(damaged.shape[1]), factor, 0, filters)))
    return float(np.mean(scores))


def evaluate(clips: list[np.ndarray], arrays: dict[str, np.ndarray], sample_rate: float, seed: int
             ) -> dict[str, dict[str, float]]:
    """Mean SNR (dB) on the first EVAL_S seconds of ``clips`` per damage: passthrough, sinc interpolation
    (hold) and the restorer's filters."""
    from .damage import Bits, Hold

    rng = np.random.default_rng(seed)
    clips = [clip[:, : int(EVAL_S * sample_rate)] for clip in clips]
    table: dict[str, dict[str, float]] = {}
    for factor in (2, 3, 4, 6, 8):
        passthrough = [snr_db(clip, Hold(factor, phase=0).apply(clip.astype(np.float32), int(sample_rate), rng))
                       for clip in clips]
        table[f"hold:{factor}"] = {
            "passthrough": round(float(np.mean(passthrough)), 3),
            "sinc": round(hold_snr(clips, factor, dq.sinc_interpolator(factor), sample_rate), 3),
            "dequantize": round(hold_snr(clips, factor, arrays[f"hold{factor}"], sample_rate), 3)}
    for bits in (6, 8, 10):
        rows: dict[str, list[float]] = {"passthrough": [], "dequantize": []}
        alpha = float(arrays["bits_alpha"][list(BIT_LEVELS).index(bits)])
        for index, clip in enumerate(clips):
            damaged = Bits(bits, dither=bool(index % 2)).apply(clip.astype(np.float32), int(sample_rate), rng)
            out = dq.requantize_buffer(damaged, sample_rate, bits, alpha)
            rows["passthrough"].append(snr_db(clip, damaged))
            rows["dequantize"].append(snr_db(clip, out))
        table[f"bits:{bits}"] = {k: round(float(np.mean(v)), 3) for k, v in rows.items()}
    return table


def fit(train_clips: Sequence[Any], val_clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
        budget_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit every hold interpolator (N = 2 .. 8) and bit-depth smoother (closed form; ``damage`` only selects
    nothing: one file serves all holds and depths).  Returns (arrays, config, training_extra) for ``save_arrays``
    with architecture :data:`pedalchain.effects.restorers.dequantize.ARCHITECTURE`."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    train = _clips(train_clips, sample_rate)
    val = [clip[:, : int(EVAL_S * sample_rate)] for clip in _clips(val_clips, sample_rate)]
    arrays: dict[str, np.ndarray] = {}
    chosen: dict[str, str] = {}
    for factor in range(2, LEARNED_HOLDS + 1):
        learned, sinc = fit_hold(train, factor, rng), dq.sinc_interpolator(factor)
        # a Wiener interpolator is tuned to the training spectrum: keep it only where it generalises
        keep = not val or hold_snr(val, factor, learned, sample_rate) >= hold_snr(val, factor, sinc, sample_rate)
        arrays[f"hold{factor}"] = learned if keep else sinc
        chosen[f"hold{factor}"] = "learned" if keep else "sinc (learned was worse on validation)"
    arrays["bits_levels"] = np.array(BIT_LEVELS, np.float64)
    alphas, alpha_gains = [], {}
    for bits in BIT_LEVELS:
        alpha, alpha_gains[f"bits:{bits}"] = fit_bits_alpha(train, bits, sample_rate, seed + bits)
        alphas.append(alpha)
    arrays["bits_alpha"] = np.array(alphas, np.float64)
    config = {"half_taps": dq.HALF_TAPS, "learned_holds": LEARNED_HOLDS}
    extra = {"validation": evaluate(_clips(val_clips, sample_rate), arrays, sample_rate, seed + 1),
             "hold_filters": chosen,
             "bits_alpha_train_gain_db": alpha_gains,
             "fit_seconds": round(time.perf_counter() - started, 1),
             "damage": getattr(damage, "spec", None)}
    return arrays, config, extra


def main(argv: list[str] | None = None) -> int:
    """Build the shipped weights: corpus, split by file (seed 0), fit, test metrics in the metadata."""
    import argparse

    from ..model_file import save_arrays
    from .data import clean_corpus, split_by_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=dq.DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    files = clean_corpus(Path.home() / ".cache" / "pedalchain" / "corpus")
    train, val, test = split_by_file(files, 0, (0.7, 0.15, 0.15))
    arrays, config, extra = fit(train, val, 44100, None, 0, 300.0)
    test_table = evaluate(_clips(test, 44100), arrays, 44100, 7)
    training = {"data": [Path(p).name for p in train], "validation": [Path(p).name for p in val],
                "test": [Path(p).name for p in test], "source": "pedalchain clean corpus (models/restore/data.py)",
                "seed": 0, "duration_s": round(sum(c.shape[1] for c in _clips(train, 44100)) / 44100, 1),
                "damage": "hold:2..8 (phase 0), bits:4|6|8|10|12 (half dithered)", **extra}
    info = save_arrays(args.output, arrays, architecture=dq.ARCHITECTURE, config=config, sample_rate=44100,
                       training=training, metrics={"test": test_table})
    print(info.describe())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
