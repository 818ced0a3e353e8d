"""Training of the ``declip`` restorer's learned part (``chain train restorer --damage clip:DB``).

The reconstruction itself (constrained AR interpolation, :mod:`pedalchain.effects.restorers.declip`) has no
weights; what is learned is the *excess gain* per run length: AR interpolation under-estimates how far a peak
went over the rail, by an amount that depends on the run length.  :func:`fit` clips every training clip (the
damage asked for, plus 3, 6, 9 and 12 dB over threshold), reconstructs it with gain 1, and fits per run-length
bucket (:data:`RUN_EDGES`) the least-squares gain g minimising sum (g e_hat - e)^2 over the clipped samples,
e_hat the estimated and e the true excess over the rail (clean minus rail), shrunk towards 1 where a bucket
holds few samples.  The fitted gains are kept only when they raise the mean validation SNR; otherwise the file
ships gain 1 and says so (``excess_gain_used``): on the corpus they did not help, so the shipped declip is in
effect model-free (AR order, ridge, segment and cap were chosen on the validation split).  numpy only.
``python -m pedalchain.models.restore.fit_declip -o FILE`` builds the
shipped weights from the corpus with validation and test metrics in the metadata.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...effects.restorers import declip as dc

RUN_EDGES = np.array([1, 2, 3, 5, 9, 17, 33, 65, 129, 257], np.float64)
"""Run-length buckets [edges[k], edges[k+1]) in samples; the last is open."""
OVER_DB = (3.0, 6.0, 9.0, 12.0)
MAX_CLIP_S = 8.0
CASES_PER_SECOND = 4.0
"""(clip, level over threshold) pairs clipped and reconstructed per second of the budget: what one idle core does
with 8-second clips (0.25 s each)."""
PRIOR_SAMPLES = 200.0
"""Shrinkage: a bucket's gain is (sum e e_hat + PRIOR sum-weight) / (sum e_hat^2 + PRIOR weight), i.e. as if it
had PRIOR_SAMPLES more samples agreeing with gain 1."""


def has_flat_peaks(audio: np.ndarray) -> bool:
    """Whether a clean clip (float, (channels, n)) may be clipped already: at least MIN_RAIL_SAMPLES (and
    MIN_RAIL_SHARE of its samples) lie at its highest or at its lowest value (within 1e-6 of it).  Looser than
    detection on purpose (a single-sample peak repeated counts; a steady tone's crests count): a clip whose
    "clean" peaks are flat would score a repair against a flat truth, so training and the benchmark leave out
    anything doubtful."""
    least = max(dc.MIN_RAIL_SAMPLES, dc.MIN_RAIL_SHARE * audio.size)
    top, bottom = float(audio.max()), float(audio.min())
    return bool((top > 0 and np.count_nonzero(audio >= top - 1e-6 * top) >= least)
                or (bottom < 0 and np.count_nonzero(audio <= bottom - 1e-6 * bottom) >= least))


def _clips(paths: Sequence[Any], sample_rate: float, skipped: list[str] | None = None) -> list[np.ndarray]:
    """The first MAX_CLIP_S seconds of each file; silent files and files that may be clipped already
    (:func:`has_flat_peaks`) are left out and named in ``skipped``."""
    from .data import read_clip

    out = []
    for path in paths:
        audio = np.atleast_2d(read_clip(Path(path), int(sample_rate)))[:, : int(MAX_CLIP_S * sample_rate)]
        if np.abs(audio).max() > 0 and not has_flat_peaks(audio):
            out.append(audio)
        elif skipped is not None:
            skipped.append(Path(path).name)
    return out


def _rails(clean: np.ndarray, over_db: float) -> tuple[float, float, np.ndarray]:
    level = float(np.abs(clean).max()) * 10 ** (-over_db / 20)
    damaged = np.clip(clean, -np.float32(level), np.float32(level))
    return level * (1 - 1e-6), -level * (1 - 1e-6), damaged


def collect(clips: list[np.ndarray], config: dict[str, Any], over: Sequence[float], max_cases: int
            ) -> dict[str, np.ndarray]:
    """Per clipped sample: run length, estimated excess (gain 1) and true excess, in units of the rail; from the
    first ``max_cases`` (clip, level over threshold) pairs."""
    recon = dc.Reconstructor(config, {"run_edges": RUN_EDGES, "excess_gain": np.ones(len(RUN_EDGES))})
    lengths, estimates, truths = [], [], []
    cases = [(clip, over_db) for clip in clips for over_db in over][:max_cases]
    for clip, over_db in cases:
        positive, negative, damaged = _rails(clip, over_db)
        repaired = dc.declip_array(damaged, (positive, negative), recon)
        for c in range(clip.shape[0]):
            flags = dc.clipped_flags(damaged[c], (positive, negative))
            starts, ends = dc.runs_of(flags)
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                if repaired[c, s] == damaged[c, s] and e - s > dc.MAX_RUN:
                    continue
                rail = positive if damaged[c, s] > 0 else negative
                lengths.append(np.full(e - s, e - s))
                estimates.append((repaired[c, s:e] - rail) / rail)
                truths.append((clip[c, s:e] - rail) / rail)
    if not lengths:
        return {"length": np.zeros(0), "estimate": np.zeros(0), "truth": np.zeros(0)}
    return {"length": np.concatenate(lengths), "estimate": np.concatenate(estimates).astype(np.float64),
            "truth": np.concatenate(truths).astype(np.float64)}


def fit_gains(data: dict[str, np.ndarray]) -> np.ndarray:
    """Least-squares excess gain per :data:`RUN_EDGES` bucket (shrunk towards 1, clipped to 0.5..3)."""
    bucket = np.clip(np.searchsorted(RUN_EDGES, data["length"], side="right") - 1, 0, len(RUN_EDGES) - 1)
    gains = np.ones(len(RUN_EDGES))
    for k in range(len(RUN_EDGES)):
        e_hat, e = data["estimate"][bucket == k], data["truth"][bucket == k]
        if e_hat.size == 0:
            continue
        weight = PRIOR_SAMPLES * float(np.mean(e_hat ** 2))
        gains[k] = np.clip((float(e_hat @ e) + weight) / (float(e_hat @ e_hat) + weight), 0.5, 3.0)
    return gains


def snr_table(clips: list[np.ndarray], config: dict[str, Any], gains: np.ndarray, over: Sequence[float]
              ) -> dict[str, dict[str, float]]:
    """Mean SNR (dB) of the clipped and the repaired clips per dB over threshold (for metadata and selection)."""
    recon = dc.Reconstructor(config, {"run_edges": RUN_EDGES, "excess_gain": gains})
    table: dict[str, dict[str, float]] = {}
    for over_db in over:
        before, after = [], []
        for clip in clips:
            positive, negative, damaged = _rails(clip, over_db)
            repaired = dc.declip_array(damaged, (positive, negative), recon)
            power = float(np.sum(clip.astype(np.float64) ** 2))
            before.append(10 * np.log10(power / max(float(np.sum((clip - damaged).astype(np.float64) ** 2)), 1e-20)))
            after.append(10 * np.log10(power / max(float(np.sum((clip - repaired).astype(np.float64) ** 2)), 1e-20)))
        table[f"{over_db:g}dB"] = {"clipped_snr_db": round(float(np.mean(before)), 3),
                                   "declipped_snr_db": round(float(np.mean(after)), 3)}
    return table


def fit(train_clips: Sequence[Any], val_clips: Sequence[Any], sample_rate: float, damage: Any, seed: int,
        budget_s: float) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]]:
    """Fit the excess gains: returns (arrays, config, training_extra) for ``save_arrays`` with architecture
    :data:`pedalchain.effects.restorers.declip.ARCHITECTURE`.  ``budget_s`` bounds the collection: clips are
    taken in a seeded order, :data:`CASES_PER_SECOND` of it (counted, not timed: the same seed gives the same
    data however busy the machine is)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_clips))
    skipped: list[str] = []
    train = _clips([train_clips[i] for i in order], sample_rate, skipped)
    val = _clips(list(val_clips), sample_rate, skipped)
    over = sorted({*OVER_DB, *([float(damage.over_db)] if getattr(damage, "over_db", None) else [])})
    config = dict(dc.DEFAULT_CONFIG)
    data = collect(train, config, over, int(0.7 * budget_s * CASES_PER_SECOND))
    fitted = fit_gains(data)
    with_fitted = snr_table(val, config, fitted, over)
    with_ones = snr_table(val, config, np.ones(len(RUN_EDGES)), over)

    def mean_snr(table: dict[str, dict[str, float]]) -> float:
        return float(np.mean([row["declipped_snr_db"] for row in table.values()]))

    # keep the fitted gains only when they help on the validation clips; otherwise the honest model is gain 1
    use_fitted = mean_snr(with_fitted) > mean_snr(with_ones)
    gains = fitted if use_fitted else np.ones(len(RUN_EDGES))
    arrays = {"run_edges": RUN_EDGES, "excess_gain": gains}
    extra = {"over_threshold_db": over, "left_out_already_clipped_or_silent": sorted(skipped),
             "clipped_samples": int(data["length"].size), "fitted_excess_gain": [round(float(g), 4) for g in fitted],
             "excess_gain_used": "fitted" if use_fitted else "1 (the fitted gains lowered the validation SNR)",
             "validation_fitted_gain": with_fitted, "validation_gain_1": with_ones,
             "fit_seconds": round(time.perf_counter() - started, 1)}
    return arrays, config, extra


def main(argv: list[str] | None = None) -> int:
    """Build the shipped weights: corpus, split by file (seed 0), fit, test metrics in the metadata."""
    import argparse

    from ..model_file import save_arrays
    from .data import clean_corpus, split_by_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=dc.DEFAULT_WEIGHTS)
    parser.add_argument("--budget", type=float, default=180.0,
                        help=f"budget in seconds: {CASES_PER_SECOND:g} (clip, level) cases per second of it are "
                        "collected, counted rather than timed (default 180)")
    args = parser.parse_args(argv)
    files = clean_corpus(Path.home() / ".cache" / "pedalchain" / "corpus")
    train, val, test = split_by_file(files, 0, (0.7, 0.15, 0.15))
    arrays, config, extra = fit(train, val, 44100, None, 0, args.budget)
    test_skipped: list[str] = []
    test_table = snr_table(_clips(test, 44100, test_skipped), config, arrays["excess_gain"], OVER_DB)
    extra["test_left_out_already_clipped_or_silent"] = sorted(test_skipped)
    training = {"data": [Path(p).name for p in train], "validation": [Path(p).name for p in val],
                "test": [Path(p).name for p in test], "source": "pedalchain clean corpus (models/restore/data.py)",
                "seed": 0, "duration_s": None, "damage": "clip:3|6|9|12", **extra}
    latency = config["segment"] + dc.MAX_RUN + config["context"]
    info = save_arrays(args.output, arrays, architecture=dc.ARCHITECTURE, config=config, sample_rate=44100,
                       training=training, metrics={"test": test_table}, latency=latency)
    print(info.describe())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
