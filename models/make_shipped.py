"""Fit the models shipped in ``models/weights/``, reproducibly (seeded data, seeded torch, one thread).

    python -m pedalchain.models.make_shipped              # rewrites models/weights/*.safetensors
    python -m pedalchain.models.make_shipped --out DIR    # somewhere else (to compare with the shipped ones)

Each target is a pedalboard built-in rendered at 48 kHz on seeded excitation; the error reported in the
file is the ESR (error-to-signal ratio, ``Σ(y − ŷ)² / Σy²``) on held-out audio from another seed that was
not used for fitting.  Takes about 40 s on a 2-core CPU.

* ``lowpass-5k``: a 256-tap FIR fitted by linear least squares to ``LowpassFilter(cutoff_frequency_hz=5000)``.
* ``drive-12db``: an 8-unit LSTM fitted by L-BFGS to ``Distortion(drive_db=12)`` (y = tanh(3.98·x)).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pedalboard
import torch
from numpy.lib.stride_tricks import sliding_window_view

from .fir import FIR
from .lstm import LSTM
from .model_file import ModelInfo, save_model, weights_dir

SAMPLE_RATE = 48000
SEGMENT_S = 0.25
EXCITATION = (
    "seeded excitation in 0.25 s segments, each one of: white noise, a decaying sine (60 Hz-2 kHz) or an "
    "exponential sweep (20-200 Hz up to 2-20 kHz), at a random level from -40 to 0 dBFS"
)


def excitation(seconds: float, seed: int) -> np.ndarray:
    """Mono float32 test signal at 48 kHz: segments of noise, decaying tones and sweeps at random levels."""
    rng = np.random.default_rng(seed)
    length = int(SEGMENT_S * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    segments = []
    for _ in range(int(np.ceil(seconds / SEGMENT_S))):
        kind = rng.integers(0, 3)
        level = 10 ** (rng.uniform(-40.0, 0.0) / 20)
        if kind == 0:
            signal = 0.4 * rng.standard_normal(length)
        elif kind == 1:
            frequency, decay = rng.uniform(60.0, 2000.0), rng.uniform(0.0, 20.0)
            signal = np.sin(2 * np.pi * frequency * t + rng.uniform(0.0, 2 * np.pi)) * np.exp(-decay * t)
        else:
            low, high = rng.uniform(20.0, 200.0), rng.uniform(2000.0, 20000.0)
            rate = np.log(high / low) / SEGMENT_S
            signal = np.sin(2 * np.pi * low * (np.exp(rate * t) - 1) / rate)
        segments.append(level * signal)
    return np.concatenate(segments)[: int(seconds * SAMPLE_RATE)].astype(np.float32)


def esr(predicted: np.ndarray, target: np.ndarray) -> float:
    """Error-to-signal ratio ``Σ(target − predicted)² / Σtarget²`` (float64 sums)."""
    target = target.astype(np.float64)
    return float(np.sum((target - predicted) ** 2) / np.sum(target**2))


def fit_fir(x: np.ndarray, y: np.ndarray, taps: int, rows_per_chunk: int = 16384) -> np.ndarray:
    """Impulse response ``h`` (taps,) minimising ``Σ_n (y[n] − Σ_k h[k] x[n−k])²`` (zero history).

    The normal equations ``(XᵀX) h = Xᵀy`` with ``X[n, k] = x[n − k]`` are accumulated in float64 over
    chunks of rows (so X is never whole in memory) and solved with ``numpy.linalg.lstsq``.
    """
    padded = np.concatenate([np.zeros(taps - 1), x.astype(np.float64)])
    gram, cross = np.zeros((taps, taps)), np.zeros(taps)
    for start in range(0, len(x), rows_per_chunk):
        rows = sliding_window_view(padded[start : start + rows_per_chunk + taps - 1], taps)[:, ::-1]  # x[n-k]
        gram += rows.T @ rows
        cross += rows.T @ y[start : start + rows_per_chunk].astype(np.float64)
    return np.linalg.lstsq(gram, cross, rcond=None)[0]


def _run(model: torch.nn.Module, audio: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(audio)[None])[0].numpy()


def make_lowpass(folder: Path, seed: int = 0, train_s: float = 8.0, holdout_s: float = 4.0) -> ModelInfo:
    """``lowpass-5k``: 256-tap FIR, least squares against ``LowpassFilter(5000)`` at 48 kHz."""
    target = pedalboard.LowpassFilter(cutoff_frequency_hz=5000)
    x = excitation(train_s, seed)
    y = target(x, SAMPLE_RATE)
    model = FIR(taps=256)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(fit_fir(x, y, model.taps)))
    x_hold = excitation(holdout_s, seed + 1000)
    y_hold = target(x_hold, SAMPLE_RATE)
    training = {
        "data": f"{EXCITATION}, rendered through pedalboard {pedalboard.__version__} "
        "LowpassFilter(cutoff_frequency_hz=5000) at 48 kHz",
        "seed": seed,
        "duration_s": train_s,
        "method": "linear least squares (numpy.linalg.lstsq on the normal equations)",
        "holdout": f"{holdout_s:g} s of the same excitation with seed {seed + 1000}",
    }
    metrics = {"esr_holdout": esr(_run(model, x_hold), y_hold), "esr_train": esr(_run(model, x), y)}
    return save_model(
        folder / "lowpass-5k.safetensors", model, sample_rate=SAMPLE_RATE, training=training, metrics=metrics
    )


def make_drive(
    folder: Path, seed: int = 0, segments: int = 128, segment_samples: int = 1024, iterations: int = 300
) -> ModelInfo:
    """``drive-12db``: LSTM (8 units, input skip), L-BFGS on full-batch ESR against ``Distortion(drive_db=12)``.

    The training audio is cut into ``segments`` rows of ``segment_samples``; the first 64 samples of each
    row are left out of the loss (the state is still settling from silence there).
    """
    target = pedalboard.Distortion(drive_db=12)
    torch.manual_seed(seed)
    x = excitation(segments * segment_samples / SAMPLE_RATE, seed).reshape(segments, segment_samples)
    y = np.stack([target(row, SAMPLE_RATE) for row in x])
    inputs, wanted = torch.from_numpy(x), torch.from_numpy(y)[:, 64:]
    model = LSTM(hidden_size=8, skip=True)
    optimizer = torch.optim.LBFGS(
        model.parameters(), lr=1.0, max_iter=iterations, history_size=50, line_search_fn="strong_wolfe",
        tolerance_grad=1e-12, tolerance_change=1e-14,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = ((model(inputs)[:, 64:] - wanted) ** 2).sum() / (wanted**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    model.eval()
    x_hold = excitation(4.0, seed + 1000)
    y_hold = target(x_hold, SAMPLE_RATE)
    duration = segments * segment_samples / SAMPLE_RATE
    training = {
        "data": f"{EXCITATION}, cut into {segments} rows of {segment_samples} samples, rendered through "
        f"pedalboard {pedalboard.__version__} Distortion(drive_db=12) at 48 kHz",
        "seed": seed,
        "duration_s": duration,
        "method": f"L-BFGS (strong Wolfe line search), up to {iterations} iterations, full-batch ESR loss",
        "holdout": f"4 s of the same excitation with seed {seed + 1000}",
    }
    metrics = {"esr_holdout": esr(_run(model, x_hold), y_hold), "esr_train": esr(_run(model, x.reshape(-1)),
                                                                                  y.reshape(-1))}
    return save_model(
        folder / "drive-12db.safetensors", model, sample_rate=SAMPLE_RATE, training=training, metrics=metrics
    )


MAKERS: dict[str, Callable[[Path], ModelInfo]] = {"lowpass-5k": make_lowpass, "drive-12db": make_drive}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=weights_dir(), help="folder to write to (default: shipped)")
    parser.add_argument("--only", choices=sorted(MAKERS), action="append", help="fit only these models")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # reductions in a fixed order: the same bytes on every run
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or MAKERS:
        started = time.perf_counter()
        info = MAKERS[name](args.out)
        print(f"{info.path}: {info.parameter_count} params, ESR {info.metrics['esr_holdout']:.3g} on held-out "
              f"audio, {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
