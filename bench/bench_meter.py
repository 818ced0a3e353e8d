"""Throughput of the streaming loudness meter alone, with OpenBLAS free to use its threads or held to one.

    python bench/bench_meter.py [--minutes 5] [--runs 3] [--no-results]

Feeds bench/data/in_<N>min.wav (decoded once with soundfile, float32, 8192-sample channels-first blocks,
as the file runner does) to ``pedalchain.chains.loudness.LoudnessMeter`` and times ``add`` for the whole
file plus the readings, and its two parts (``_filter.process`` = K-weighting, ``_true_peak.process`` = 4x
oversampled true peak; private attributes, reported as nan if renamed) timed the same way.  Each
configuration runs in a fresh interpreter (the BLAS thread count is fixed at start-up); configurations
alternate; median of ``--runs``.

Replaces the `bench_meter` section of bench/RESULTS.md unless --no-results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_audio  # noqa: E402
from _results import BENCH, DATA, ROOT, load_now, machine, machine_lines, replace_section  # noqa: E402

CHILD = r"""
import json, sys, time
import numpy as np, soundfile as sf
from pedalchain.chains import loudness
path = sys.argv[1]
with sf.SoundFile(path) as f:
    sr, ch = f.samplerate, f.channels
    blocks = [np.ascontiguousarray(b.T) for b in f.blocks(8192, dtype="float32", always_2d=True)]
def run_meter():
    m = loudness.LoudnessMeter(sr, ch)
    for b in blocks:
        m.add(b)
    m.integrated_lufs(); m.true_peak_dbtp()
def part(attr):
    def run():
        m = loudness.LoudnessMeter(sr, ch)
        inner = getattr(m, attr)
        for b in blocks:
            inner.process(np.asarray(b, dtype=np.float64))
    return run
out = {}
for name, fn in (("meter", run_meter), ("iir", part("_filter")), ("true_peak", part("_true_peak"))):
    try:
        t = time.perf_counter(); fn(); out[name] = time.perf_counter() - t
    except AttributeError:  # the meter's internals were renamed: report the total only
        out[name] = float("nan")
print(json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-results", action="store_true")
    args = parser.parse_args()

    info = machine()
    source = make_audio.ensure(args.minutes, DATA / f"in_{args.minutes:g}min.wav", "PCM_16")
    configs = [
        ("default (OpenBLAS picks its thread count)", {}),
        ("OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}),
    ]
    base_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    for i in range(args.runs):
        for name, extra in configs:
            done = subprocess.run([sys.executable, "-c", CHILD, str(source)], cwd=ROOT, env={**base_env, **extra},
                                  capture_output=True, text=True, check=True)
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  run {i + 1} {name}: {results[name][-1]}", flush=True)

    duration = args.minutes * 60.0
    lines = [
        "## bench_meter: `LoudnessMeter` alone",
        "",
        machine_lines(info).rstrip(),
        f"- input: `{source.relative_to(ROOT)}` ({args.minutes:g} min stereo 44.1 kHz), 8192-sample float32 blocks",
        f"- script: `python bench/bench_meter.py --minutes {args.minutes:g} --runs {args.runs}` "
        "(fresh interpreter per configuration and run, alternating; medians)",
        "",
        "| OpenBLAS threads | meter `add` + readings | × real time | K-weighting `_filter.process` | "
        "true peak `_true_peak.process` |",
        "|---|---|---|---|---|",
    ]
    for name, _ in configs:
        med = {key: statistics.median(r[key] for r in results[name]) for key in ("meter", "iir", "true_peak")}
        lines.append(f"| {name} | {med['meter']:.2f} s | {duration / med['meter']:.0f}× | {med['iir']:.2f} s | "
                     f"{med['true_peak']:.2f} s |")
    lines.insert(3, f"- load average when finished: {load_now()} (other work on the machine skews timings)")
    report = "\n".join(lines)
    print()
    print(report)
    if not args.no_results:
        replace_section("bench_meter", report)
        print(f"\nwrote the bench_meter section of {BENCH.relative_to(ROOT) / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
