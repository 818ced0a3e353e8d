"""``restorer: declip``: reconstruct hard-clipped peaks; every unclipped sample passes through bit for bit.

Which samples are clipped: those at a *rail*.  ``threshold: auto`` (the default) finds the rails in
:meth:`Declip.analyze_input` the way ``chain detect`` finds clipping
(:func:`pedalchain.chains.detect.clipping_rails`): the positive rail is the largest sample value, and it counts
as clipping when at least :data:`MIN_RAIL_SAMPLES` samples (and 1e-5 of all samples) sit on it, within a
hundredth of an integer step (1e-6 of the rail in float data), in runs of at least 3 entered or left at speed (a
step of 1e-3 of the rail and 4 integer steps).  A smooth crest that rests on its highest value for a few samples
(a quiet int16 sine, any sine at 192 kHz) is not clipping, nor is a steady tone whose crests keep landing on the
same value.  The same for the negative rail, so one-sided clipping is handled.  Once a rail counts, every sample
on it is repaired.  Peaks clipped so lightly that they touch the rail for only one or two samples are not found:
``threshold: -3`` (dBFS, -60..0) states the rails instead: +-10^(dB/20), and samples with |x| >= that level are
clipped ones.  An input with more than :data:`~pedalchain.chains.detect.CLIP_MAX_SHARE` of its samples on its
rails (a square wave) has nothing between them to rebuild from: ``threshold: auto`` leaves it alone.

How each run of clipped samples (one channel, consecutive samples on one rail, at most :data:`MAX_RUN`) is
reconstructed -- consistent declipping by constrained AR interpolation (Janssen et al. 1986, with the clipping
constraints of Adler et al. 2012):

1. One autoregressive model of order ``order`` (config, 48) per channel and *segment* of ``segment`` samples
   (config, 4096, on a fixed grid) is fitted by least squares (covariance method, forward and backward
   prediction, ridge ``ridge`` relative to the signal power) on the unclipped samples of the segment,
   ``context`` samples (config, 320) before it and MAX_RUN + ``context`` after it.
2. The clipped samples of that window, up to ``context`` samples past the last run being repaired, are the
   values minimising the energy of the AR prediction error (one banded least-squares problem for all of
   them), subject to x >= rail on the positive rail and x <= rail on the negative one, each sample on its
   own rail (active set: samples that fall inside the rails are pinned to it and only the groups of unknowns
   within ``order`` samples of a pinned one solved again).
3. The learned part (``models/weights/restorers/declip.safetensors``, fitted on the clean corpus by
   ``models/restore/fit_declip.py``): the part above the rail is scaled by a gain per run length
   (``excess_gain`` over ``run_edges``), the least-squares fit of the true excess on the estimated one;
   AR interpolation is biased towards low energy, and how much depends on the run length.  The fit keeps these
   gains only when they raise the validation SNR; for the shipped file they did not, so it holds gain 1
   (``excess_gain_used`` in its metadata says which).
4. The excess is limited to ``max_over_db`` (config) above the rail.

Streaming: the runs starting in a segment are repaired once MAX_RUN + ``context`` samples after the segment are
in, from the input alone (never from earlier repairs), so the output does not depend on the block sizes, nor on
the threads the (channel, segment) pieces are shared over (:func:`~pedalchain.effects.restorers.on_threads`);
runs longer than :data:`MAX_RUN` samples are left clipped.  Latency: ``segment`` + MAX_RUN + ``context`` samples
(5440, 123 ms at 44.1 kHz).  Without rails (nothing detected, or ``auto``
never analysed because the stream started with ``reset=False``) the input passes through, delayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...chains.detect import CLIP_MAX_SHARE, ClippingRails, clipping_rails
from ...errors import ParameterError
from ..streaming import DelayLine
from ..units import parse_quantity
from . import Restorer, on_threads, resolve_model_param
from .lapack import solve_banded_spd

ARCHITECTURE = "declip-ar"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "weights" / "restorers" / "declip.safetensors"
MIN_RATE_HZ = 22050.0
MAX_RATE_HZ = 192000.0
MAX_RUN = 1024
"""Longest run of clipped samples reconstructed (samples); longer ones are left as they are."""
MIN_RAIL_SAMPLES = 8
MIN_RAIL_SHARE = 1e-5
THRESHOLD_RANGE_DB = (-60.0, 0.0)
DEFAULT_CONFIG = {"order": 48, "context": 320, "segment": 4096, "ridge": 1e-4, "max_over_db": 9.0}
"""Used when no weights file is given and for keys a weights file lacks.  Order, ridge, segment and the cap were
chosen on the validation split (orders 24-64, segments 2048/4096, caps 6-15 dB at 6 dB over threshold)."""


# -- the reconstruction (pure functions) ---------------------------------------------------------------------------
def fit_ar(x: np.ndarray, known: np.ndarray, order: int, ridge: float) -> np.ndarray | None:
    """AR coefficients a (order,) with x[t] ~ sum_i a[i] x[t-1-i], least squares over the rows of ``x`` (1-D)
    whose ``order`` + 1 samples are all ``known``, forward and backward; None when there are too few rows."""
    if x.shape[0] <= order + 1:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, order + 1)
    unknown_before = np.concatenate([[0], np.cumsum(~known)])
    ok = unknown_before[order + 1:] == unknown_before[:-order - 1]  # no unknown sample in the frame
    rows = frames[ok]
    if rows.shape[0] < order:
        return None
    # forward: x[t] from x[t-1..t-p] (reversed past); backward: x[t-p] from x[t-p+1..t]; both normal equations
    # are parts of the one frame Gram matrix
    frame_gram = rows.T @ rows
    gram = frame_gram[order - 1::-1, order - 1::-1] + frame_gram[1:, 1:]
    rhs = frame_gram[order - 1::-1, order] + frame_gram[1:, 0]
    scale = max(float(np.trace(gram)) / order, 1e-20)
    try:
        return np.linalg.solve(gram + ridge * scale * np.eye(order), rhs)
    except np.linalg.LinAlgError:
        return None


def interpolate(x: np.ndarray, unknown: np.ndarray, lower: np.ndarray, upper: np.ndarray, a: np.ndarray,
                iterations: int = 8) -> np.ndarray:
    """Values of the ``unknown`` samples of ``x`` (1-D window; the unknown ones at least ``len(a)`` samples from
    both ends) that minimise the AR prediction error energy sum_t (x[t] - sum_i a[i] x[t-1-i])^2 subject to
    ``lower`` <= x <= ``upper`` (per sample, +-inf for none; active set: violators are pinned to their bound and
    the rest solved again, at most ``iterations`` times).

    The normal equations are banded: with c = [1, -a], the Gram matrix of the prediction-error operator is the
    Toeplitz matrix of R[d] = sum_i c[i] c[i+d] (|d| <= order) wherever the unknowns lie ``order`` samples inside
    the window, so each solve is one banded Cholesky (LAPACK ``dpbsv``, without the GIL), O(n order^2); the
    known samples' pull on the unknown ones is the window convolved with R."""
    order = a.shape[0]
    c = np.concatenate([[1.0], -a])
    r = np.correlate(c, c, "full")[order:]
    kernel = np.concatenate([r[:0:-1], r])  # symmetric, length 2 order + 1
    # R by the distance between two unknowns: 0 is the diagonal (a hair raised, so that the factorisation
    # survives rounding), order + 1 stands for every distance beyond the band (no interaction)
    by_distance = np.concatenate([[r[0] * (1 + 1e-9)], r[1:], [0.0]])
    values = x.astype(np.float64).copy()
    free = unknown.copy()
    active = unknown.copy()  # the free samples solved in this pass
    for _ in range(iterations):
        index = np.flatnonzero(active)
        if index.size == 0:
            break
        near = slice(index[0] - order, index[-1] + order + 1)  # the known samples that pull on an unknown one
        solution = -np.convolve(np.where(active[near], 0.0, values[near]), kernel, "valid")[index - index[0]]
        padded = np.concatenate([np.full(order, -2 * order - 1), index])  # no unknowns before the first
        # row j: the positions of unknowns j - order .. j, and so R between unknown j and each of them
        window = np.lib.stride_tricks.as_strided(padded, (index.size, order + 1), (padded.strides[0],) * 2)
        bands = np.take(by_distance, index[:, None] - window, mode="clip")
        if not solve_banded_spd(bands, solution):
            break
        values[index] = solution
        lo, hi = lower[index], upper[index]
        violating = (solution < lo) | (solution > hi)
        if not violating.any():
            break
        pinned = index[violating]
        values[pinned] = np.clip(values[pinned], lower[pinned], upper[pinned])
        free[pinned] = False
        # Unknowns over ``order`` samples apart do not interact, so only the groups holding a newly pinned
        # sample need solving again; the others keep their solution.
        group = np.concatenate([[0], np.cumsum(np.diff(index) > order)])
        again = np.zeros(group[-1] + 1, bool)
        again[group[violating]] = True
        active = np.zeros_like(free)
        active[index[again[group]]] = True
        active &= free
    return values[unknown]


def run_bucket(length: int, edges: np.ndarray) -> int:
    """Index of the run-length bucket [edges[k], edges[k+1]) holding ``length``; the last bucket is open."""
    return int(np.clip(np.searchsorted(edges, length, side="right") - 1, 0, len(edges) - 1))


class Reconstructor:
    """Repairs the runs of one channel that start in one segment (see the module docstring, steps 1-4)."""

    def __init__(self, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.order = int(config["order"])
        self.context = int(config["context"])
        self.segment = int(config["segment"])
        self.ridge = float(config["ridge"])
        self.max_over = 10 ** (float(config["max_over_db"]) / 20)
        self.edges = np.asarray(arrays.get("run_edges", np.array([1.0])), np.float64)
        self.gains = np.asarray(arrays.get("excess_gain", np.ones(len(self.edges))), np.float64)

    @property
    def lookahead(self) -> int:
        """Samples of input needed after a segment's end before it can be repaired."""
        return MAX_RUN + self.context

    def estimate(self, window: np.ndarray, flags: np.ndarray, rails: tuple[float, float],
                 solve_end: int | None = None) -> np.ndarray:
        """Constrained AR estimate (float64, same length) of every clipped sample of ``window[:solve_end]`` (1-D)
        more than ``order`` samples from the ends of that part, one AR model fitted on the whole window; other
        samples are returned as given."""
        p = self.order
        x = window.astype(np.float64)
        out = x.copy()
        end = len(x) if solve_end is None else min(len(x), solve_end)
        unknown = flags.copy()
        unknown[:p] = False
        unknown[max(0, end - p):] = False
        if not unknown.any():
            return out
        a = fit_ar(x, ~flags, p, self.ridge)
        if a is None:
            return out
        positive = x > 0
        lower = np.where(unknown & positive, rails[0], -np.inf)
        upper = np.where(unknown & ~positive, rails[1], np.inf)
        out[:end][unknown[:end]] = interpolate(x[:end], unknown[:end], lower[:end], upper[:end], a)
        return out

    def gain_of(self, lengths: np.ndarray) -> np.ndarray:
        """The learned excess gain for runs of ``lengths`` samples."""
        index = np.clip(np.searchsorted(self.edges, lengths, side="right") - 1, 0, len(self.edges) - 1)
        return self.gains[index]

    def repair_segment(self, window: np.ndarray, offset: int, rails: tuple[float, float],
                       flags: np.ndarray | None = None) -> list[tuple[int, np.ndarray]]:
        """Repairs of the runs of ``window`` (1-D input, no repairs in it) that start at window indices
        [offset, offset + segment) and are at most MAX_RUN long: a list of (start index, float32 values).
        The window must reach ``lookahead`` samples past the segment (less only at the end of a buffer)."""
        if flags is None:
            flags = clipped_flags(window, rails)
        starts, ends = runs_of(flags)
        keep = (starts >= offset) & (starts < offset + self.segment) & (ends - starts <= MAX_RUN) \
            & (ends + self.order <= len(window))
        if not keep.any():
            return []
        starts, ends = starts[keep], ends[keep]
        # the clipped samples after the last repaired run matter only through their neighbours: ``context``
        # samples of them are solved with it
        estimate = self.estimate(window, flags, rails, solve_end=int(ends.max()) + self.context)
        lengths = ends - starts
        at = np.repeat(starts - np.cumsum(np.concatenate([[0], lengths[:-1]])), lengths) + np.arange(lengths.sum())
        rail = np.where(window[at] > 0, rails[0], rails[1])
        excess = np.clip((estimate[at] - rail) * np.repeat(self.gain_of(lengths), lengths) / rail,
                         0.0, self.max_over - 1)  # in units of the rail
        values = (rail * (1 + excess)).astype(np.float32)
        ends_in_values = np.cumsum(lengths).tolist()  # plain slices: np.split costs more than the repair of a run
        return [(start, values[end - length:end])
                for start, end, length in zip(starts.tolist(), ends_in_values, lengths.tolist(), strict=True)]


Repair = tuple[int, int, np.ndarray]
"""(channel, absolute index of the first sample, float32 values) of one repaired run."""


def repair_segments(audio: np.ndarray, base: int, starts: Sequence[int], rails: tuple[float | None, float | None],
                    reconstructor: Reconstructor) -> list[Repair]:
    """The repairs of the runs starting in the segments at absolute indices ``starts``, from ``audio`` (channels,
    n; input only, absolute index ``base`` at column 0, holding each segment's ``context`` samples before it and
    ``lookahead`` after it).  The (channel, segment) pairs are repaired on threads: each reads only the input, so
    the result does not depend on how they are shared out."""
    segment, context = reconstructor.segment, reconstructor.context
    solve_rails = (rails[0] if rails[0] is not None else np.inf, rails[1] if rails[1] is not None else -np.inf)
    flags = clipped_flags(audio, rails)
    jobs = []
    for start in starts:
        lo = max(0, start - context - base)
        jobs += [(c, lo, start - base - lo) for c in range(audio.shape[0])
                 if flags[c, start - base:start - base + segment].any()]

    def repair(job: tuple[int, int, int]) -> list[Repair]:
        c, lo, offset = job
        hi = lo + offset + segment + reconstructor.lookahead
        return [(c, base + lo + s, values)
                for s, values in reconstructor.repair_segment(audio[c, lo:hi], offset, solve_rails, flags[c, lo:hi])]

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # the threads are the parallelism; BLAS's would fight them
        return [done for repairs in on_threads(repair, jobs) for done in repairs]


def declip_array(audio: np.ndarray, rails: tuple[float | None, float | None], reconstructor: Reconstructor
                 ) -> np.ndarray:
    """One-shot reference of the streamed repair: ``audio`` (channels, n) with every run repaired, segment by
    segment on the same grid with the zeros a drained stream sees after the end (equal to the streamed output)."""
    if rails == (None, None):
        return np.array(audio, dtype=np.float32, copy=True)
    length = audio.shape[1]
    audio = np.concatenate([np.asarray(audio, np.float32),
                            np.zeros((audio.shape[0], reconstructor.segment + reconstructor.lookahead), np.float32)],
                           axis=1)
    out = audio.copy()
    for c, at, values in repair_segments(audio, 0, range(0, length, reconstructor.segment), rails, reconstructor):
        out[c, at:at + len(values)] = values
    return out[:, :length]


def clipped_flags(audio: np.ndarray, rails: tuple[float | None, float | None]) -> np.ndarray:
    """Boolean mask of the samples of ``audio`` on a rail: x >= positive rail or x <= negative rail (a rail of
    None is not clipped)."""
    flags = np.zeros(audio.shape, bool)
    if rails[0] is not None:
        flags |= audio >= rails[0]
    if rails[1] is not None:
        flags |= audio <= rails[1]
    return flags


def runs_of(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of True in the 1-D mask (ends exclusive)."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def detect_rails(source: Path | np.ndarray) -> tuple[float | None, float | None, ClippingRails]:
    """The rails to repair in a file (read in blocks) or a (channels, n) buffer: ``(positive, negative, found)``,
    each the level from which a sample is at that rail (``x >= positive``, ``x <= negative``), None when fewer than
    :data:`MIN_RAIL_SAMPLES` (and MIN_RAIL_SHARE of all samples) are clipped there as ``chain detect`` counts
    clipping: on the input's extreme, in runs of 3 or more met at speed (a smooth crest resting on its highest
    value is not clipped)."""
    found = clipping_rails(source)
    least = max(MIN_RAIL_SAMPLES, MIN_RAIL_SHARE * found.samples)
    positive, negative = (found.levels[k] if found.clipped[k] >= least else None for k in range(2))
    return positive, negative, found


_WEIGHTS: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}


def load_weights(path: str | Path | None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, config) of a declip weights file (cached); the shipped one when ``path`` is None; without a
    shipped file, no learned gain (1.0) and :data:`DEFAULT_CONFIG`."""
    from ...models.model_file import load_arrays

    if path is None and not DEFAULT_WEIGHTS.exists():
        return {}, dict(DEFAULT_CONFIG)
    key = str(Path(path) if path is not None else DEFAULT_WEIGHTS)
    if key not in _WEIGHTS:
        arrays, info = load_arrays(key, ARCHITECTURE)
        _WEIGHTS[key] = arrays, {**DEFAULT_CONFIG, **info.config}
    arrays, config = _WEIGHTS[key]
    return arrays, dict(config)


# -- the restorer ----------------------------------------------------------------------------------------------------
class Declip(Restorer):
    """Reconstruct clipped peaks (see the module docstring).

    Args:
        threshold: "auto" (find the rails in the whole input) or the clipping level in dBFS, -60..0 (e.g. -3:
            samples with |x| >= 0.708 are clipped).
        model: a declip weights file; None = the shipped ``declip.safetensors``.
    """

    name = "declip"
    min_rate_hz, max_rate_hz = MIN_RATE_HZ, MAX_RATE_HZ

    def __init__(self, threshold: float | str = "auto", model: str | Path | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.model = None if model is None else str(resolve_model_param(model, f"restorer: {self.name}.model",
                                                                        None, ARCHITECTURE))
        self._arrays, self._config = load_weights(self.model)
        self._reconstructor = Reconstructor(self._config, self._arrays)

    @property
    def threshold(self) -> float | str:
        """"auto" or the clipping level in dBFS; setting it (checked as in the constructor) sets the rails."""
        return self._threshold

    @threshold.setter
    def threshold(self, threshold: float | str) -> None:
        if isinstance(threshold, str) and threshold.strip().lower() == "auto":
            self._threshold: float | str = "auto"
            self._rails: tuple[float | None, float | None] = (None, None)  # until an analysis finds them
            return
        value = parse_quantity(threshold, "dB", "threshold", word="auto")  # -3, "-3 dBFS"
        if not THRESHOLD_RANGE_DB[0] <= value <= THRESHOLD_RANGE_DB[1]:
            raise ParameterError(
                f"threshold: {value:g} dBFS is out of range [{THRESHOLD_RANGE_DB[0]:g}, {THRESHOLD_RANGE_DB[1]:g}] "
                "dBFS (or 'auto')", where="restorer: declip.threshold")
        self._threshold = value
        level = 10 ** (value / 20)
        self._rails = (level * (1 - 1e-6), -level * (1 - 1e-6))

    def __repr__(self) -> str:
        return f"Declip(threshold={self.threshold!r})"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str | None = None,
                    base_dir: str | Path | None = None) -> Declip:
        unknown = set(params) - {"threshold", "model"}
        if unknown:
            raise ParameterError(f"declip takes threshold and model, not {', '.join(sorted(unknown))}", where=where)
        model = params.get("model")
        try:
            if model is not None:
                model = resolve_model_param(model, "model", base_dir, ARCHITECTURE)
            return cls(params.get("threshold", "auto"), model)
        except ParameterError as error:
            raise ParameterError(error.message, where=where or error.where) from None

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.threshold != "auto":
            out["threshold"] = self.threshold
        if self.model is not None:
            out["model"] = self.model
        return out

    @property
    def analyses_input(self) -> bool:
        return self.threshold == "auto"

    @property
    def rails(self) -> tuple[float | None, float | None]:
        """(positive rail, negative rail) in use; None where that side is not clipped."""
        return self._rails

    def analyze_input(self, source: Path | np.ndarray, sample_rate: float) -> list[str]:
        if self.threshold != "auto":
            return []
        positive, negative, found = detect_rails(source)
        share = (found.clipped[0] * (positive is not None)
                 + found.clipped[1] * (negative is not None)) / max(1, found.samples)
        crowded = share > CLIP_MAX_SHARE  # nothing between the rails to rebuild from
        self._rails = (None, None) if crowded else (positive, negative)
        self._reconfigured()
        if positive is None and negative is None:
            return ["declip: no clipping found (no runs of 3 samples at the peaks, met at speed): passing through; "
                    "'threshold: DB' states the clipping level"]
        if crowded:
            return [f"declip: {100 * share:.3g}% of samples at the rails (a square or pulse wave?): nothing between "
                    "them to rebuild from, passing through"]
        sides = [f"{found.peaks[k]:+.4f} ({found.clipped[k]} samples)"
                 for k, rail in enumerate((positive, negative)) if rail is not None]
        return [f"declip: clipping at {' and '.join(sides)}, {100 * share:.2g}% of samples: reconstructing"]

    # -- Processor -----------------------------------------------------------------------------------------------
    def _prepare(self, sample_rate: float, num_channels: int) -> int:
        self.check_rate(sample_rate)
        self._channels = num_channels
        return self._reconstructor.segment + self._reconstructor.lookahead

    def _reset_state(self) -> None:
        self._held = np.zeros((self._channels, 0), np.float32)  # input from absolute index _base on
        self._fixed = np.zeros((self._channels, 0), np.float32)  # the same with the repairs written in
        self._base = 0
        self._end = 0  # absolute index one past the last input sample
        self._next = 0  # absolute start of the next segment to repair
        self._delay = DelayLine(self._channels, self._latency)

    def _process_whole(self, audio: np.ndarray, sample_rate: float, buffer_size: int) -> np.ndarray:
        if self._rails == (None, None):
            return audio.copy()
        return declip_array(audio, self._rails, self._reconstructor)

    def _process_block(self, audio: np.ndarray, sample_rate: float) -> np.ndarray:
        if self._rails == (None, None):
            return self._delay.process(audio)
        count = audio.shape[1]
        self._held = np.concatenate([self._held, audio], axis=1)
        self._fixed = np.concatenate([self._fixed, audio], axis=1)
        self._end += count
        recon = self._reconstructor
        segment, context = recon.segment, recon.context
        ready = range(self._next, self._end - segment - recon.lookahead + 1, segment)
        if ready:  # most small blocks complete no segment
            for c, at, values in repair_segments(self._held, self._base, ready, self._rails, recon):
                self._fixed[c, at - self._base:at - self._base + len(values)] = values
            self._next += segment * len(ready)
        first = self._end - count - self._latency  # absolute index of this block's first output sample
        out = np.zeros((self._channels, count), np.float32)
        start = max(first, 0)
        if start < first + count:
            out[:, start - first:] = self._fixed[:, start - self._base:first + count - self._base]
        keep_from = max(self._base, min(max(0, first + count), self._next - context))
        if keep_from > self._base:
            self._held = self._held[:, keep_from - self._base:]
            self._fixed = self._fixed[:, keep_from - self._base:]
            self._base = keep_from
        return out
