"""The capture trainer: fit model families cheapest first within one budget of work, keep the best.

``train_emulator(pair, family="auto", ...)`` fits FIR → Wiener–Hammerstein → grey-box compressor → LSTM →
WaveNet (or one named family) on the pair's train region, measures plain ESR on its validation region, and stops
at the first family that reaches ``target_esr``.  Progress goes through a callback (the CLI draws the bar);
Ctrl-C (KeyboardInterrupt) stops training and returns the best model so far.  This module imports torch.

The budget is counted on a :class:`WorkClock`, not on the wall clock: every family charges the samples it runs
through its model, at the rates measured on a reference machine, so one command with one seed fits the same
model on a fast machine, a slow one or a busy one (the slow one takes longer to get there).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..base import StreamingModel
from .families import GreyBoxCompressor, WienerHammerstein, envelope_follow
from .losses import CaptureLoss
from .pairing import Pair

FAMILIES = ("fir", "wiener-hammerstein", "compressor", "lstm", "wavenet")
"""Family names, cheapest first (the order ``auto`` tries them in)."""

AUTO_SHARE = {"fir": 0.05, "wiener-hammerstein": 0.3, "compressor": 0.3, "lstm": 0.5, "wavenet": 1.0}
"""Under ``auto``, the fraction of the *remaining* budget each family may use (unused time passes on)."""

MAX_TAPS_OUT = 512
"""Longest Wiener–Hammerstein output filter (samples): 10.7 ms at 48 kHz, the −50 dB decay of a resonant filter
near 1 kHz."""

ALS_ITERATIONS = 6
"""Rounds of alternating least squares in :func:`fit_hammerstein`."""

NOT_A_COMPRESSOR_LOSS = 0.5
"""The compressor family stops after its grid when no grid point brings the training loss below this."""

REFERENCE_SAMPLES_PER_S = {
    "fir": 2.5e6,  # the least-squares fit, per sample of the train region
    "hammerstein": 6.5e5,  # alternating least squares, per sample of a drawn row and round
    "wiener-hammerstein": 5.0e5,  # an L-BFGS evaluation (forward and backward), per sample of its rows
    "compressor-grid:level": 2.0e6,  # a grid point (attack, release; every threshold), per sample of the grid rows
    "compressor-grid:gain": 5.0e6,
    "compressor": 2.4e6,  # an L-BFGS evaluation, per sample of its rows
    "lstm": 1.0e6,  # an Adam step, per sample of its batch
    "wavenet": 8.5e5,
    "validation:fir": 3.5e6,  # a validation check, per sample of the validation audio (with its warm-up)
    "validation:wiener-hammerstein": 1.8e6,
    "validation:compressor": 4.4e6,
    "validation:lstm": 2.0e6,
    "validation:wavenet": 2.8e6,
}
"""What a second of the budget buys: samples per second of each part of the training on the reference machine
(one thread of a 2-core AMD EPYC server, CPU torch 2.13, the other core busy), measured by
``bench/calibrate_capture.py`` (idle, the same machine did 5-25 % more)."""

Progress = Callable[[dict[str, Any]], None]
"""Called with {"family", "step", "elapsed_s", "budget_s", "train_loss", "validation_esr", "best_esr"}; the
seconds are the :class:`WorkClock`'s."""


class WorkClock:
    """The trainer's clock: seconds of work on the reference machine (:data:`REFERENCE_SAMPLES_PER_S`), charged
    by the families after each piece of work.  Deadlines are set on it so that the result does not depend on the
    machine's speed or load."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def charge(self, work: str, samples: int) -> None:
        """Account for ``work`` (a key of :data:`REFERENCE_SAMPLES_PER_S`) done on ``samples`` samples."""
        self.seconds += samples / REFERENCE_SAMPLES_PER_S[work]


class _OutOfTime(Exception):
    """Raised inside an optimiser closure when the family's deadline (on the work clock) has passed."""


@dataclass
class FamilyResult:
    """What one family reached: ``validation_esr`` (plain ESR on the validation region), the work clock's seconds
    at its end, its curve."""

    family: str
    model: StreamingModel | None
    validation_esr: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        parameters = sum(p.numel() for p in self.model.parameters()) if self.model is not None else 0
        return {"family": self.family, "validation_esr": self.validation_esr, "seconds": round(self.seconds, 2),
                "parameters": parameters, "note": self.note,
                "architecture": self.model.architecture if self.model is not None else None,
                "config": self.model.config() if self.model is not None else None}


@dataclass
class TrainResult:
    """The chosen model, every family's result, and whether the target was reached / the run interrupted;
    ``seconds`` are the work clock's."""

    model: StreamingModel
    family: str
    validation_esr: float
    families: list[FamilyResult]
    target_esr: float
    reached: bool
    interrupted: bool
    seconds: float
    device: str


class _Tracker:
    """Keeps the best state (by validation ESR) and the curve of one family; reports progress."""

    def __init__(self, family: str, model: StreamingModel, evaluate: Callable[[StreamingModel], float],
                 validation_samples: int, deadline: float, budget_s: float, clock: WorkClock,
                 progress: Progress | None, target: float) -> None:
        self.family, self.model, self.evaluate = family, model, evaluate
        self.validation_samples = validation_samples
        self.deadline, self.budget_s, self.clock, self.progress, self.target = (deadline, budget_s, clock,
                                                                                progress, target)
        self.best_esr, self.best_state = math.inf, None
        self.history: list[dict[str, float]] = []
        self.step = 0

    def out_of_time(self) -> bool:
        return self.clock.seconds >= self.deadline

    def charge(self, samples: int) -> None:
        """Account for a training step of this family on ``samples`` samples."""
        self.clock.charge(self.family, samples)

    def checkpoint(self, train_loss: float) -> float:
        """Measure validation ESR, keep the state if best, report; returns the ESR."""
        esr = self.evaluate(self.model)
        self.clock.charge(f"validation:{self.family}", self.validation_samples)
        if esr < self.best_esr or self.best_state is None:
            self.best_esr, self.best_state = esr, copy.deepcopy(self.model.state_dict())
        elapsed = self.clock.seconds
        self.history.append({"elapsed_s": elapsed, "train_loss": float(train_loss), "validation_esr": esr})
        if self.progress is not None:
            self.progress({"family": self.family, "step": self.step, "elapsed_s": elapsed,
                           "budget_s": self.budget_s, "train_loss": float(train_loss), "validation_esr": esr,
                           "best_esr": self.best_esr})
        return esr

    def reached(self) -> bool:
        return self.best_esr <= self.target

    def plateaued(self, checks: int = 4, relative: float = 0.02) -> bool:
        """The best ESR improved by less than ``relative`` over the last ``checks`` checkpoints."""
        if len(self.history) <= checks:
            return False
        before = min(h["validation_esr"] for h in self.history[:-checks])
        return self.best_esr > before * (1.0 - relative)

    def result(self, note: str = "") -> FamilyResult:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return FamilyResult(self.family, self.model if self.best_state is not None else None, self.best_esr,
                            self.clock.seconds, self.history, note)


# -- data helpers ------------------------------------------------------------------------------------------------
def plain_esr(predicted: np.ndarray, target: np.ndarray) -> float:
    """``Σ(y − ŷ)² / Σy²`` in float64 (1.0 for a silent target predicted as silence is avoided by ε)."""
    target = target.astype(np.float64)
    return float(np.sum((target - predicted.astype(np.float64)) ** 2) / (np.sum(target**2) + 1e-30))


def rows(pair: Pair, region: tuple[int, int], length: int, warmup: int, count: int | None = None,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``region`` into rows: inputs (B, warmup + length) with preceding audio as warm-up, targets (B, length).

    ``count`` rows are picked at random (seeded) when given and fewer than available.
    """
    start, end = region
    first = max(start, warmup)
    starts = np.arange(first, end - length + 1, length)
    if not len(starts):
        need = (length + warmup) / pair.sample_rate
        raise ValueError(f"the pair's train region ({(end - start) / pair.sample_rate:.2f} s) is shorter than one "
                         f"training row of this model family ({need:.2f} s with its warm-up): record a longer pair "
                         "(the built-in excitation is about 2 minutes)")
    if count is not None and count < len(starts):
        starts = np.sort(np.random.default_rng(seed).choice(starts, count, replace=False))
    x = np.stack([pair.dry[s - warmup : s + length] for s in starts])
    y = np.stack([pair.wet[s : s + length] for s in starts])
    return x, y


def _predict(model: StreamingModel, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Whole-buffer output for mono ``x`` on the model's own device (the compressor always trains on the CPU);
    a recurrent model on a GPU runs on a CPU copy (one long sequential stream is slow on a GPU)."""
    device = next(model.parameters()).device
    if device.type != "cpu" and model.architecture == "lstm":
        model, device = copy.deepcopy(model).cpu(), torch.device("cpu")
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device))[0].cpu().numpy()


def validation_predictor(pair: Pair, device: torch.device, warmup_s: float = 1.0
                         ) -> tuple[Callable[[StreamingModel], np.ndarray], np.ndarray]:
    """``(predict(model) -> validation output, validation target)``; the model gets ``warmup_s`` of context."""
    start, end = pair.validation
    context = min(start, int(warmup_s * pair.sample_rate))
    x = pair.dry[start - context : end]

    def predict(model: StreamingModel) -> np.ndarray:
        return _predict(model, x, device)[context:]

    return predict, pair.wet[start:end]


def fir_correlations(x: np.ndarray, y: np.ndarray, taps: int, warmup: int = 0, chunk: int = 32
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(autocorrelation, cross-correlation)`` (taps,) each, the normal equations of :func:`fit_fir_impulse`:
    sums over rows (taken ``chunk`` at a time, so memory stays bounded), which callers can add up further."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    size = 1 << int(np.ceil(np.log2(x.shape[1] + taps)))
    auto_spectrum = cross_spectrum = 0.0
    for first in range(0, len(x), chunk):
        x64 = x[first:first + chunk].astype(np.float64)
        span, target = np.zeros_like(x64), np.zeros_like(x64)
        span[:, warmup:], target[:, warmup:] = x64[:, warmup:], y[first:first + chunk]
        conj_x = np.conj(np.fft.rfft(x64, size))
        auto_spectrum = auto_spectrum + (np.fft.rfft(span, size) * conj_x).sum(axis=0)
        cross_spectrum = cross_spectrum + (np.fft.rfft(target, size) * conj_x).sum(axis=0)
    return np.fft.irfft(auto_spectrum, size)[:taps], np.fft.irfft(cross_spectrum, size)[:taps]


def fit_fir_impulse(x: np.ndarray, y: np.ndarray, taps: int, warmup: int = 0) -> np.ndarray:
    """Least-squares impulse response ``h`` (taps,) minimising ``Σ_rows Σ_n (y[n] − Σ_k h[k]·x[warmup + n − k])²``.

    ``x`` is one signal (n,) or rows (B, warmup + n) whose first ``warmup`` samples are history before the targets
    ``y`` ((n,) or (B, n)); history before a row's start counts as zeros.  The normal equations ``R h = r`` use
    the autocorrelation of x over the target span (taken as Toeplitz, via FFT) and the cross-correlation ``r``
    (:func:`fir_correlations`); solved by :func:`solve_fir`.
    """
    return solve_fir(*fir_correlations(x, y, taps, warmup))


def solve_fir(auto: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """``R h = r`` with R the Toeplitz matrix of ``auto``: ``scipy.linalg.solve_toeplitz`` (Levinson, O(taps²))
    plus a tiny ridge for silent-band stability."""
    from scipy.linalg import solve_toeplitz

    auto = auto.copy()
    auto[0] *= 1.0 + 1e-9
    return solve_toeplitz(auto, cross)


def impulse_length(h: np.ndarray, floor_db: float = -50.0, step: int = 64) -> int:
    """Taps of ``h`` that hold all but ``floor_db`` of its energy, rounded up to a multiple of ``step``."""
    energy = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    if energy[0] <= 0:
        return step
    tail = np.flatnonzero(energy > energy[0] * 10 ** (floor_db / 10))
    return int(math.ceil((tail[-1] + 1) / step) * step)


def _filter_rows(features: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Causal FIR ``h`` along axis 1 of ``features`` (B, T, ...), zero history before each row (via FFT)."""
    length = features.shape[1]
    size = 1 << int(np.ceil(np.log2(length + len(h))))
    spectrum = np.fft.rfft(features, size, axis=1) * np.fft.rfft(h, size).reshape((1, -1) + (1,) * (features.ndim - 2))
    return np.fft.irfft(spectrum, size, axis=1)[:, :length]


def fit_hammerstein(x: np.ndarray, y: np.ndarray, warmup: int, taps: int, h0: np.ndarray,
                    basis: Callable[[np.ndarray], np.ndarray], iterations: int = ALS_ITERATIONS, chunk: int = 24
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Best ``y ≈ h ∗ (basis(x) @ c)`` by alternating least squares: ``(h, c)``, h (taps,) scaled to 0 dB peak gain.

    ``x`` (B, warmup + n) are input rows, ``y`` (B, n) their targets after ``warmup`` samples of history,
    ``basis`` maps rows to the waveshaper's basis functions (rows, T, K), ``h0`` is the starting filter.  With h
    fixed the weights c are a linear least-squares fit on the basis functions filtered by h; with the waveshaper
    fixed, h is a least-squares FIR.  Neither step raises the squared error, so a device that is mostly a static
    curve before a long filter (a ladder filter driven into its input stage) ends near its best Hammerstein fit,
    where gradient descent from a short small-signal filter stalls far from it.  Rows are taken ``chunk`` at a
    time: the normal equations are sums over rows, so every row of the region can take part.
    """
    h = np.zeros(taps)
    h[:min(taps, len(h0))] = h0[:taps]
    c: np.ndarray | None = None
    for _ in range(iterations):
        if c is not None:
            auto, cross = np.zeros(taps), np.zeros(taps)
            for first in range(0, len(x), chunk):
                a, r = fir_correlations(basis(x[first:first + chunk]) @ c, y[first:first + chunk], taps, warmup)
                auto, cross = auto + a, cross + r
            h = solve_fir(auto, cross)
        gram, moment = 0.0, 0.0
        for first in range(0, len(x), chunk):
            features = basis(x[first:first + chunk])
            regressors = _filter_rows(features, h)[:, warmup:].reshape(-1, features.shape[-1])
            gram = gram + regressors.T @ regressors
            moment = moment + regressors.T @ y[first:first + chunk].reshape(-1).astype(np.float64)
        c = np.linalg.solve(gram + 1e-9 * np.trace(gram) / len(gram) * np.eye(len(gram)), moment)
    peak = float(np.max(np.abs(np.fft.rfft(h, 4096)))) or 1.0
    return h / peak, c * peak


# -- families ----------------------------------------------------------------------------------------------------
@dataclass
class _Context:
    pair: Pair
    device: torch.device
    seed: int
    target: float
    progress: Progress | None
    budget_s: float
    clock: WorkClock = field(default_factory=WorkClock)
    predict_cache: dict[str, Any] = field(default_factory=dict)
    tracker: _Tracker | None = None

    @property
    def validation_samples(self) -> int:
        start, end = self.pair.validation
        return end - start + min(start, int(self.pair.sample_rate))  # with its warm-up (validation_predictor)

    def reserve_s(self, family: str) -> float:
        """Work kept back from ``family``'s deadline: its last validation check runs after the deadline."""
        return 1.0 + 2.0 * self.validation_samples / REFERENCE_SAMPLES_PER_S[f"validation:{family}"]

    def track(self, family: str, model: StreamingModel, deadline: float) -> _Tracker:
        """A new tracker for ``family``, remembered so an interrupt can still take its best state."""
        self.tracker = _Tracker(family, model, self.evaluator(), self.validation_samples, deadline, self.budget_s,
                                self.clock, self.progress, self.target)
        return self.tracker

    def evaluator(self) -> Callable[[StreamingModel], float]:
        if "predict" not in self.predict_cache:
            self.predict_cache["predict"] = validation_predictor(self.pair, self.device)
        predict, target = self.predict_cache["predict"]
        return lambda model: plain_esr(predict(model), target)


def _lbfgs_loop(model: StreamingModel, parameters: list[torch.Tensor], loss_fn: Callable[[], torch.Tensor],
                samples: int, tracker: _Tracker, iterations_per_check: int = 20) -> None:
    """L-BFGS (strong Wolfe) in rounds of ``iterations_per_check``, a checkpoint after each, until out of time,
    target reached, plateau, or the optimiser converged.  Each evaluation of ``loss_fn`` runs ``samples``
    samples through the model, forward and backward."""
    optimizer = torch.optim.LBFGS(parameters, lr=1.0, max_iter=iterations_per_check, history_size=50,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)
    last = [math.inf]

    def closure() -> torch.Tensor:
        if tracker.out_of_time():
            raise _OutOfTime
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        tracker.charge(samples)
        last[0] = float(loss.detach())
        return loss

    previous = math.inf
    while not tracker.out_of_time():
        snapshot = copy.deepcopy(model.state_dict())
        try:
            optimizer.step(closure)
        except _OutOfTime:
            pass
        if not all(torch.isfinite(p).all() for p in parameters) or not math.isfinite(last[0]):
            model.load_state_dict(snapshot)  # diverged: keep the last good state
            break
        tracker.step += iterations_per_check
        tracker.checkpoint(last[0])
        if tracker.reached() or tracker.plateaued() or abs(previous - last[0]) <= 1e-12 * max(1.0, abs(last[0])):
            break
        previous = last[0]


def fit_fir(ctx: _Context, deadline: float, taps: int = 512) -> FamilyResult:
    """Linear FIR by least squares on the whole train region (instant)."""
    from ..fir import FIR

    model = FIR(taps=taps).to(ctx.device)
    tracker = ctx.track("fir", model, deadline)
    start, end = ctx.pair.train
    h = fit_fir_impulse(ctx.pair.dry[start:end], ctx.pair.wet[start:end], taps)
    tracker.charge(end - start)
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(h).float())
    tracker.step = 1
    tracker.checkpoint(float("nan"))
    return tracker.result("least squares, scipy.linalg.solve_toeplitz")


def fit_wiener_hammerstein(ctx: _Context, deadline: float, taps_in: int = 32, hidden: int = 24,
                           row_count: int = 48, row_length: int = 8192, fit_rows: int = 600) -> FamilyResult:
    """FIR → waveshaper → FIR.  The output filter is as long as the device's small-signal impulse response
    (a least-squares fit on quiet rows, where the device is nearly linear: taps holding all but −50 dB of its
    energy, 64 … :data:`MAX_TAPS_OUT`).  Initialisation: the best Hammerstein fit (input filter a unit impulse)
    by alternating least squares from that filter on up to ``fit_rows`` rows (every row of the excitation's train
    region; a seeded draw from a longer recording; fewer where they would take over half the family's time)
    (:func:`fit_hammerstein`).  Then L-BFGS on all parameters
    over ``row_count`` of them."""
    torch.manual_seed(ctx.seed)
    history = taps_in + MAX_TAPS_OUT - 1
    x, y = rows(ctx.pair, ctx.pair.train, row_length, history, count=None, seed=ctx.seed)
    rms = np.sqrt(np.mean(x[:, history:].astype(np.float64) ** 2, axis=1))
    quiet = (rms > 1e-4) & (rms < 0.03)
    order = np.random.default_rng(ctx.seed).permutation(len(x))[:row_count]
    small_signal = fit_fir_impulse(x[quiet] if quiet.sum() >= 4 else x[order], y[quiet] if quiet.sum() >= 4
                                   else y[order], MAX_TAPS_OUT, history)
    taps_out = min(max(impulse_length(small_signal), 64), MAX_TAPS_OUT)
    model = WienerHammerstein(taps_in, taps_out, hidden)
    warmup = model.receptive_field
    x = x[:, history - warmup:]

    def basis(rows_in: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            u = torch.from_numpy(rows_in)
            return torch.cat([u.unsqueeze(-1), model.basis(u)], dim=-1).double().numpy()

    # at most half of the family's time for the alternating least squares, which cannot stop halfway
    affordable = 0.5 * (deadline - ctx.clock.seconds) * REFERENCE_SAMPLES_PER_S["hammerstein"] / (
        ALS_ITERATIONS * x.shape[1])
    drawn = np.sort(np.random.default_rng(ctx.seed).permutation(len(x))[:max(4, min(fit_rows, int(affordable)))])
    h, c = fit_hammerstein(x[drawn], y[drawn], warmup, taps_out, small_signal, basis)
    inputs = torch.from_numpy(x[order])
    # the alternating least squares: two passes over the drawn rows per iteration, each about a forward pass
    ctx.clock.charge("hammerstein", ALS_ITERATIONS * x[drawn].size)
    with torch.no_grad():
        model.h_out.copy_(torch.from_numpy(h).float())
        model.gain.fill_(float(c[0]))
        model.weights.copy_(torch.from_numpy(c[1:]).float())
    model = model.to(ctx.device)
    tracker = ctx.track("wiener-hammerstein", model, deadline)
    tracker.checkpoint(float("nan"))
    inputs, targets = inputs.to(ctx.device), torch.from_numpy(y[order]).to(ctx.device)
    loss = CaptureLoss()
    _lbfgs_loop(model, list(model.parameters()), lambda: loss(model(inputs)[:, warmup:], targets), inputs.numel(),
                tracker)
    return tracker.result(f"output filter {taps_out} taps; Hammerstein fit by alternating least squares, then "
                          f"L-BFGS on {len(order)} rows of {row_length} samples")


def fit_compressor(ctx: _Context, deadline: float, row_length_s: float = 2.0, warmup_s: float = 0.25,
                   row_count: int = 10) -> FamilyResult:
    """Grey-box compressor: a coarse grid over time constants and threshold for each structure (peak or RMS
    detector, level or gain smoothing), then L-BFGS from each structure's best grid point; the best is kept.

    For level smoothing the envelope does not depend on threshold or ratio, so it is computed once per
    (attack, release) and every threshold is scored on it.
    """
    sr = ctx.pair.sample_rate
    warmup = int(warmup_s * sr)
    x, y = rows(ctx.pair, ctx.pair.train, int(row_length_s * sr), warmup, count=row_count, seed=ctx.seed)
    inputs, targets = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    y0 = torch.zeros(len(x), dtype=torch.float64)
    loss = CaptureLoss()
    thresholds = tuple(float(t) for t in range(-60, 1, 5))
    grid = slice(0, 4)
    grid_inputs, grid_targets, grid_y0 = inputs[grid], targets[grid], y0[grid]
    variants: list[tuple[float, GreyBoxCompressor]] = []
    for detector, smoothing in (("peak", "level"), ("rms", "level"), ("peak", "gain")):
        model = GreyBoxCompressor(detector, smoothing, sample_rate=sr)
        best: tuple[float, GreyBoxCompressor | None] = (math.inf, None)
        for attack in (0.3, 1.0, 3.0, 10.0):
            for release in (3.0, 10.0, 30.0, 100.0, 300.0):
                if ctx.clock.seconds >= deadline:
                    break
                with torch.no_grad():
                    model.set_parameters(-20.0, 4.0, attack, release)
                    if smoothing == "level":
                        a, r = model._coefficients()
                        level_db = model._level_db(envelope_follow(model._detect(grid_inputs), a, r, grid_y0))
                        for threshold in thresholds:
                            model.set_parameters(threshold, 4.0, attack, release)
                            gain = torch.pow(10.0, model._curve(level_db) / 20.0)
                            value = float(loss((grid_inputs * gain)[:, warmup:], grid_targets))
                            if value < best[0]:
                                best = (value, copy.deepcopy(model))
                    else:
                        if variants:
                            threshold = min(variants, key=lambda v: v[0])[1].parameters_readable()["threshold_db"]
                            model.set_parameters(threshold, 4.0, attack, release)
                        value = float(loss(model.forward_rows(grid_inputs, grid_y0)[:, warmup:], grid_targets))
                        if value < best[0]:
                            best = (value, copy.deepcopy(model))
                ctx.clock.charge(f"compressor-grid:{smoothing}", grid_inputs.numel())
        if best[1] is not None:
            variants.append((best[0], best[1]))
    variants.sort(key=lambda v: v[0])
    if variants and variants[0][0] >= NOT_A_COMPRESSOR_LOSS:
        model = variants[0][1]
        tracker = ctx.track("compressor", model, deadline)
        tracker.checkpoint(variants[0][0])
        return tracker.result(f"skipped: the best grid point leaves loss {variants[0][0]:.2g} "
                              f"(≥ {NOT_A_COMPRESSOR_LOSS:g}): the device does not behave like a compressor")
    results = []
    for index, (value, model) in enumerate(variants):
        remaining = deadline - ctx.clock.seconds
        if remaining <= 0 and results:
            break
        tracker = ctx.track("compressor", model, ctx.clock.seconds + max(remaining / (len(variants) - index), 1.0))
        tracker.checkpoint(value)
        _lbfgs_loop(model, list(model.parameters()),
                    lambda model=model: loss(model.forward_rows(inputs, y0)[:, warmup:], targets), inputs.numel(),
                    tracker, iterations_per_check=10)
        result = tracker.result()
        result.note = f"{model.detector} detector, {model.smoothing} smoothing; " + ", ".join(
            f"{k} {v:.3g}" for k, v in model.parameters_readable().items())
        results.append(result)
        if result.validation_esr <= ctx.target:
            break
    if not results:
        model = GreyBoxCompressor(sample_rate=sr)
        tracker = ctx.track("compressor", model, deadline)
        tracker.checkpoint(float("nan"))
        return tracker.result("out of time before the grid finished")
    chosen = min(results, key=lambda r: r.validation_esr)
    chosen.seconds = ctx.clock.seconds
    chosen.history = [h for r in results for h in r.history]
    return chosen


def _adam_loop(model: StreamingModel, inputs: torch.Tensor, targets: torch.Tensor, warmup: int, tracker: _Tracker,
               batch: int, learning_rate: float, check_every_s: float = 15.0) -> None:
    """Adam on random batches of rows until out of time, with a checkpoint every ``check_every_s`` of work; stops
    early at the target or on a plateau."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = CaptureLoss()
    generator = torch.Generator().manual_seed(0)
    last_check, losses = tracker.clock.seconds, []
    while not tracker.out_of_time():
        index = torch.randint(0, len(inputs), (batch,), generator=generator)
        optimizer.zero_grad()
        loss = loss_fn(model(inputs[index])[:, warmup:], targets[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tracker.charge(batch * inputs.shape[1])
        tracker.step += 1
        losses.append(float(loss.detach()))
        if tracker.clock.seconds - last_check >= check_every_s:
            tracker.checkpoint(float(np.mean(losses)))
            losses, last_check = [], tracker.clock.seconds
            if tracker.reached() or tracker.plateaued(checks=6):
                return
    if losses:
        tracker.checkpoint(float(np.mean(losses)))


def fit_lstm(ctx: _Context, deadline: float, hidden_size: int = 16) -> FamilyResult:
    """LSTM (input skip) with Adam on rows of 2048 samples after 512 samples of warm-up."""
    from ..lstm import LSTM

    torch.manual_seed(ctx.seed)
    model = LSTM(hidden_size=hidden_size, skip=True).to(ctx.device)
    tracker = ctx.track("lstm", model, deadline)
    x, y = rows(ctx.pair, ctx.pair.train, 2048, 512)
    inputs, targets = torch.from_numpy(x).to(ctx.device), torch.from_numpy(y).to(ctx.device)
    with torch.backends.cudnn.flags(enabled=False):  # cuDNN's LSTM refuses long single-stream sequences
        _adam_loop(model, inputs, targets, 512, tracker, batch=8, learning_rate=5e-3)
    return tracker.result(f"Adam, hidden {hidden_size}")


def fit_wavenet(ctx: _Context, deadline: float, size: str = "nano") -> FamilyResult:
    """NAM's A1 WaveNet of ``size`` with Adam on rows of 4096 samples after a receptive field of warm-up."""
    from ..wavenet import WaveNet

    torch.manual_seed(ctx.seed)
    model = WaveNet.nam_preset(size).to(ctx.device)
    tracker = ctx.track("wavenet", model, deadline)
    warmup = model.receptive_field - 1
    x, y = rows(ctx.pair, ctx.pair.train, 4096, warmup)
    inputs, targets = torch.from_numpy(x).to(ctx.device), torch.from_numpy(y).to(ctx.device)
    _adam_loop(model, inputs, targets, warmup, tracker, batch=8, learning_rate=4e-3)
    return tracker.result(f"Adam, NAM WaveNet '{size}'")


FITTERS: dict[str, Callable[..., FamilyResult]] = {
    "fir": fit_fir, "wiener-hammerstein": fit_wiener_hammerstein, "compressor": fit_compressor, "lstm": fit_lstm,
    "wavenet": fit_wavenet,
}


def pick_device(name: str = "auto") -> torch.device:
    """"auto": CUDA when available, else CPU; or "cpu" / "cuda"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_emulator(pair: Pair, family: str = "auto", target_esr: float = 1e-3, budget_s: float = 300.0,
                   seed: int = 0, progress: Progress | None = None, device: str = "auto",
                   clock: WorkClock | None = None) -> TrainResult:
    """Fit ``family`` (or every family cheapest first for "auto") within ``budget_s`` seconds of work on the
    reference machine (:class:`WorkClock`).

    ``auto`` stops at the first family whose validation ESR (plain, no pre-emphasis) is ≤ ``target_esr`` and
    otherwise keeps the lowest.  KeyboardInterrupt stops training; the best model so far is returned with
    ``interrupted=True`` (a KeyboardInterrupt before any model exists propagates).
    """
    if family != "auto" and family not in FITTERS:
        raise ValueError(f"unknown model family {family!r}; choose auto or one of {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    ctx = _Context(pair, pick_device(device), seed, target_esr, progress, budget_s, clock or WorkClock())
    order = FAMILIES if family == "auto" else (family,)
    results: list[FamilyResult] = []
    interrupted = False
    for name in order:
        remaining = budget_s - ctx.clock.seconds - ctx.reserve_s(name)
        if remaining <= 0 and results:
            results.append(FamilyResult(name, None, math.inf, ctx.clock.seconds, note="not tried: out of time"))
            continue
        share = 1.0 if family != "auto" or name == order[-1] else AUTO_SHARE[name]
        deadline = ctx.clock.seconds + max(remaining * share, 1.0)
        try:
            result = FITTERS[name](ctx, deadline)
        except (RuntimeError, ValueError, np.linalg.LinAlgError) as error:  # one family failing is not fatal
            if family != "auto":
                raise
            results.append(FamilyResult(name, None, math.inf, ctx.clock.seconds, note=f"failed: {error}"))
            continue
        except KeyboardInterrupt:
            interrupted = True
            if ctx.tracker is not None and ctx.tracker.best_state is not None and ctx.tracker.family == name:
                results.append(ctx.tracker.result("interrupted (Ctrl-C): best state so far"))
            if not any(r.model is not None for r in results):
                raise
            break
        results.append(result)
        if result.validation_esr <= target_esr:
            break
    fitted = [r for r in results if r.model is not None]
    if not fitted:
        raise RuntimeError("no model could be fitted in the time given")
    best = min(fitted, key=lambda r: r.validation_esr)
    return TrainResult(best.model, best.family, best.validation_esr, results, target_esr,
                       best.validation_esr <= target_esr, interrupted, ctx.clock.seconds, str(ctx.device))
