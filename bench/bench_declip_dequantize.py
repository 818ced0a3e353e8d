"""Benchmark of ``restorer: declip`` and ``restorer: dequantize`` on real recordings not used in training.

Recordings: Debian's sonic-pi-samples (CC0, 44.1 kHz) that no model saw -- the samples the corpus builder
rejected as band-limited (never in the corpus) plus the sonic-pi files of the shipped weights' *test* split --
longer than 1.5 s, not silent and not already clipped; each is cut to its first 10 s.  Damage from
``models/restore/damage.py`` (seeded): ``clip:6`` (and 3, 12), ``hold:3/4/6`` (phase drawn), ``bits:8``
(dither drawn).  Metrics from ``chains/compare.compare_arrays`` (SNR, SI-SDR, LSD; see the README "Metrics"),
means over the files.  Baselines: passthrough (the damaged input); for declip, linear and cubic-spline
interpolation across each clipped run; for hold, linear interpolation and the windowed-sinc interpolator
between the true samples, and what ``restorer: auto`` runs (dequantize, then bandwidth extension above the
band the repair keeps).  Speed: one-shot ``process`` (analysis included) under a 1-thread BLAS limit, as the
file runner runs it, audio seconds per wall second (each file's shortest of 3 runs); declip repairs its
(channel, segment) pieces on ``restorers.restorer_threads()`` threads (2; ``PEDALCHAIN_RESTORER_THREADS=1``: one),
dequantize runs on one.

Writes the ``declip-dequantize`` section of bench/RESULTS.md, bench/declip_spectrogram.png and
bench/dequantize_spectrogram.png, unless ``--no-results`` (print only).
Run: ``.venv/bin/python bench/bench_declip_dequantize.py [--no-results]`` (about 3–5 minutes on the shared 2-core
machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import (  # noqa: E402
    BENCH,
    load_now,
    machine,
    machine_lines,
    one_restorer_thread,
    replace_section,
    yes_no,
)
from pedalchain.chains.compare import compare_arrays, spectrogram_png  # noqa: E402
from pedalchain.effects.restorers import THREADS_ENV, restorer_threads  # noqa: E402
from pedalchain.effects.restorers import declip as dc  # noqa: E402
from pedalchain.effects.restorers import dequantize as dq  # noqa: E402
from pedalchain.effects.restorers.auto import AutoRestore  # noqa: E402
from pedalchain.models.model_file import read_model_info  # noqa: E402
from pedalchain.models.restore.damage import Bits, Clip, Hold  # noqa: E402
from pedalchain.models.restore.data import SONIC_PI_DIR, read_clip  # noqa: E402
from pedalchain.models.restore.fit_declip import has_flat_peaks  # noqa: E402

SR = 44100
AUTO_ROW = "restorer: auto (dequantize, then bandwidth above fs/2N when that is >= 4 kHz)"
DECLIP_THREADS = f"segments on {restorer_threads()} thread{'s' if restorer_threads() > 1 else ''}, BLAS on one"
TIMED_RUNS = 3
ONE_THREAD_TOO_DB = 12.0
"""The declip case (dB over threshold, the slowest) also timed on one thread."""
MAX_S = 10.0
MIN_S = 1.5


def recordings() -> list[Path]:
    corpus = sorted((Path.home() / ".cache" / "pedalchain" / "corpus").glob("v1-seed0-midi20-synth5-44100"))
    rejected: list[str] = []
    if corpus:
        rejected = list(json.loads((corpus[0] / "manifest.json").read_text())["rejected_sonic_pi"])
    test = read_model_info(dc.DEFAULT_WEIGHTS).training["test"]
    names = sorted(set(rejected) | {n for n in test if (SONIC_PI_DIR / n).exists()})
    out = []
    for name in names:
        audio = read_clip(SONIC_PI_DIR / name, SR)
        if audio.shape[1] >= MIN_S * SR and np.abs(audio).max() > 1e-3 and not has_flat_peaks(audio):
            out.append(SONIC_PI_DIR / name)
    return out


def interpolate_runs(damaged: np.ndarray, flags: np.ndarray, kind: str) -> np.ndarray:
    """Baseline: the flagged samples replaced by linear or cubic-spline interpolation through 4 (spline) or
    1 (linear) unflagged neighbours either side of each run."""
    from scipy.interpolate import CubicSpline

    out = damaged.astype(np.float64).copy()
    for c in range(damaged.shape[0]):
        starts, ends = dc.runs_of(flags[c])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            reach = 4 if kind == "spline" else 1
            left = [i for i in range(s - reach, s) if i >= 0]
            right = [i for i in range(e, e + reach) if i < damaged.shape[1]]
            known = left + right
            if len(known) < 2 or (kind == "spline" and len(known) < 4):
                continue
            x = np.array(known, float)
            y = out[c, known]
            if kind == "spline":
                out[c, s:e] = CubicSpline(x, y)(np.arange(s, e))
            else:
                out[c, s:e] = np.interp(np.arange(s, e), x, y)
    return out.astype(np.float32)


def metrics(clean: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    r = compare_arrays(clean, candidate, SR)
    return {"snr_db": r["snr_db"], "si_sdr_db": r["si_sdr_db"], "lsd": r["lsd"]}


def mean_rows(rows: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {name: {k: float(np.mean([r[k] for r in values])) for k in values[0]} for name, values in rows.items()}


def table(results: dict[str, dict[str, float]], speed: float | None, threads: str = "one thread") -> str:
    lines = ["| method | SNR dB | SI-SDR dB | LSD |", "|---|---:|---:|---:|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['snr_db']:.2f} | {row['si_sdr_db']:.2f} | {row['lsd']:.3f} |")
    if speed is not None:
        lines.append(f"\nrestorer speed: **{speed:.1f}x real time** ({threads}, analysis included, each file's "
                     f"best of {TIMED_RUNS})")
    return "\n".join(lines)


def timed(restorer, audio: np.ndarray) -> tuple[np.ndarray, float]:
    """The restorer's one-shot output and its shortest wall time of :data:`TIMED_RUNS` (the machine is shared: the
    shortest run is the least disturbed one)."""
    from threadpoolctl import threadpool_limits

    walls = []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            out = restorer.process(audio, SR)
            walls.append(time.perf_counter() - started)
    return out, min(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-results", action="store_true",
                        help="print the section only: bench/RESULTS.md and the two PNGs stay as they are")
    figures = not parser.parse_args().no_results
    info = machine()
    files = recordings()
    clips = [read_clip(p, SR)[:, : int(MAX_S * SR)] for p in files]
    total_s = sum(c.shape[1] for c in clips) / SR
    rng = np.random.default_rng(2024)
    sections = []
    summary = {}
    example = next((p for p in files if p.name.startswith("loop")), files[0])  # the file both spectrograms show
    for over_db in (6.0, 3.0, 12.0):
        rows: dict[str, list[dict[str, float]]] = {}
        seconds = one_thread_seconds = 0.0
        for path, clean in zip(files, clips, strict=True):
            damaged = Clip(over_db).apply(clean, SR, rng)
            restorer = dc.Declip()
            repaired, used = timed(restorer, damaged)
            seconds += used
            if over_db == ONE_THREAD_TOO_DB:
                with one_restorer_thread():
                    one_thread_seconds += timed(dc.Declip(), damaged)[1]
            flags = dc.clipped_flags(damaged, restorer.rails)
            for name, out in (("passthrough (clipped)", damaged), ("linear interpolation",
                              interpolate_runs(damaged, flags, "linear")),
                              ("cubic spline", interpolate_runs(damaged, flags, "spline")), ("declip", repaired)):
                rows.setdefault(name, []).append(metrics(clean, out))
            if figures and over_db == 6.0 and path == example:
                spectrogram_png(BENCH / "declip_spectrogram.png",
                                {"clean": clean, f"clipped ({over_db:g} dB over)": damaged, "declipped": repaired},
                                SR, title=f"{path.name}: declip at {over_db:g} dB over threshold")
        results = mean_rows(rows)
        speed = total_s / seconds
        gain = results["declip"]["snr_db"] - results["passthrough (clipped)"]["snr_db"]
        summary[f"clip:{over_db:g}"] = {"snr_gain_db": gain, "speed_x": speed}
        one_thread = (f" (on one thread, `{THREADS_ENV}=1`: {total_s / one_thread_seconds:.1f}x)"
                      if one_thread_seconds else "")
        sections.append(f"#### declip, `clip:{over_db:g}` ({over_db:g} dB over threshold)\n\n"
                        f"{table(results, speed, DECLIP_THREADS)}{one_thread}\n\n"
                        f"SNR gain over the clipped input: **{gain:.2f} dB**")
    for factor in (3, 4, 6):
        rows = {}
        seconds = 0.0
        for path, clean in zip(files, clips, strict=True):
            damage = Hold(factor)
            damaged = damage.apply(clean, SR, rng)
            phase = int(damage.variant.split()[-1])
            restorer = dq.Dequantize()
            repaired, used = timed(restorer, damaged)
            seconds += used
            targets = np.arange(clean.shape[1])
            linear = np.stack([np.interp(targets, np.arange(phase, clean.shape[1], factor), ch[phase::factor])
                               for ch in damaged]).astype(np.float32)
            sinc = dq.hold_gather(damaged, 0, targets, factor, phase, dq.sinc_interpolator(factor)).astype(np.float32)
            auto = AutoRestore().process(damaged, SR)
            for name, out in (("passthrough (staircase)", damaged), ("linear interpolation", linear),
                              ("windowed sinc", sinc), ("dequantize", repaired), (AUTO_ROW, auto)):
                rows.setdefault(name, []).append(metrics(clean, out))
            if figures and factor == 4 and path == example:
                spectrogram_png(BENCH / "dequantize_spectrogram.png",
                                {"clean": clean, f"held by {factor} (staircase)": damaged, "dequantized": repaired,
                                 "restorer: auto": auto},
                                SR, title=f"{path.name}: hold by {factor}")
        results = mean_rows(rows)
        speed = total_s / seconds
        summary[f"hold:{factor}"] = {"snr_gain_db": results["dequantize"]["snr_db"]
                                     - results["passthrough (staircase)"]["snr_db"], "speed_x": speed}
        sections.append(f"#### dequantize, `hold:{factor}` (phase drawn)\n\n{table(results, speed)}")
    rows = {}
    seconds = 0.0
    for clean in clips:
        damaged = Bits(8).apply(clean, SR, rng)
        restorer = dq.Dequantize()
        repaired, used = timed(restorer, damaged)
        seconds += used
        for name, out in (("passthrough (8 bits)", damaged), ("dequantize", repaired)):
            rows.setdefault(name, []).append(metrics(clean, out))
    results = mean_rows(rows)
    summary["bits:8"] = {"snr_gain_db": results["dequantize"]["snr_db"] - results["passthrough (8 bits)"]["snr_db"],
                         "speed_x": total_s / seconds}
    sections.append(f"#### dequantize, `bits:8` (TPDF dither drawn)\n\n{table(results, total_s / seconds)}")

    goal_snr = summary["clip:6"]["snr_gain_db"] >= 6.0
    goal_speed = min(v["speed_x"] for v in summary.values()) >= 30.0
    body = (
        "### Declip and dequantize (bench/bench_declip_dequantize.py)\n\n" + machine_lines(info)
        + f"- load average when finished: {load_now()} (other jobs on the 2 cores make the speeds lower bounds)\n"
        + f"- recordings ({len(files)}, {total_s:.1f} s, first {MAX_S:g} s each; none used in training): "
        + ", ".join(p.name for p in files) + "\n"
        + f"- goal \"declip at 6 dB over threshold gains >= 6 dB SNR\": {yes_no(goal_snr)} "
        + f"({summary['clip:6']['snr_gain_db']:.2f} dB)\n"
        + f"- goal \">= 30x real time\": {yes_no(goal_speed)} (slowest case "
        + f"{min(v['speed_x'] for v in summary.values()):.1f}x; the 2-core machine, declip's {DECLIP_THREADS})\n"
        + "- spectrograms: `bench/declip_spectrogram.png` (clip:6), `bench/dequantize_spectrogram.png` (hold:4)\n\n"
        + "\n\n".join(sections)
    )
    if figures:
        replace_section("declip-dequantize", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
